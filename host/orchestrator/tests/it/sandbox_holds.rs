//! The build sandbox holds on its own: every source of `hostile/compile/`
//! goes straight to `compile::compile`, with the source check bypassed and a
//! canary secret both in a file of the host's data directory and in this
//! process's environment (`KRAKEN_API_SECRET`). Each build must fail or
//! build as the source's `// sandbox:` line says, and neither canary may
//! appear in a component, a compiler output, or anything left in the build
//! or target directories. Plus the build's resource limits (CPU time, file
//! size, memory) and the refusal to build where bubblewrap is missing.
//!
//! The canary variable is set once, before any build, by the one test that
//! needs it; no other test of this binary reads the environment.

use host_orchestrator::compile::{
    self, CompileConfig, CompileError, CompileSettings, SandboxMode, SandboxProblem,
};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Shared with the host's orchestrator tests: warm after the first build.
fn candidates_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("orchestrator-candidates")
}

/// A value that cannot be in any file by chance.
fn canary(what: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("CANARY-{what}-{:016x}", h.finish())
}

fn config(build_root: &Path) -> CompileConfig {
    CompileConfig {
        repo_root: root(),
        build_root: build_root.to_path_buf(),
        target_dir: candidates_target(),
        timeout: Duration::from_secs(600),
        max_wasm_bytes: 64 << 20,
        allowed_deps: Vec::new(),
        sandbox: CompileSettings::default(),
    }
}

const GOOD: &str = "use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};
#[derive(Default)]
pub struct S;
impl Strategy for S {
    fn initialize(&mut self, _i: &Init) -> Result<(), String> { Ok(()) }
    fn analyze(&mut self, _n: i64, _p: &Portfolio, _m: &dyn MarketView) -> Vec<Signal> { Vec::new() }
}
guest_sdk::export_strategy!(S);
";

/// What bubblewrap's build does with a corpus source.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Fails,
    Builds,
    Any,
}

/// One source of `hostile/compile/`, placeholders replaced.
struct Entry {
    name: String,
    expect: Expect,
    source: String,
}

fn corpus(data_dir: &Path, canary_file: &Path) -> Vec<Entry> {
    let dir = root().join("hostile/compile");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let expect = match text.lines().nth(1) {
                Some("// sandbox: fails") => Expect::Fails,
                Some("// sandbox: builds") => Expect::Builds,
                Some("// sandbox: any") => Expect::Any,
                other => panic!("{}: second line {other:?}", p.display()),
            };
            Entry {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                expect,
                source: text
                    .replace("@CANARY_FILE@", &canary_file.display().to_string())
                    .replace("@DATA_DIR@", &data_dir.display().to_string())
                    .replace("@CANARY_VAR@", "KRAKEN_API_SECRET"),
            }
        })
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file under `dir` whose bytes contain one of `needles`.
fn files_containing(dir: &Path, needles: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if needles.iter().any(|n| contains(&bytes, n)) {
                    found.push(p);
                }
            }
        }
    }
    found
}

#[test]
fn the_build_sandbox_holds_without_the_source_check() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file_canary = canary("FILE");
    let var_canary = canary("VAR");
    let canary_file = data.join("canary-secret.txt");
    std::fs::write(&canary_file, &file_canary).unwrap();
    std::fs::write(
        data.join("host.db"),
        format!("SQLite format 3\0{file_canary}"),
    )
    .unwrap();
    // the host's secret, as the trading host has it in its environment
    std::env::set_var("KRAKEN_API_SECRET", &var_canary);
    let build_root = data.join("orchestrator/build");
    let cfg = config(&build_root);
    // the sandbox works here: a plain strategy builds in it
    let good = compile::compile(&cfg, "hostile-control", GOOD).unwrap();
    assert_eq!(good.sandbox, SandboxMode::Bwrap);
    assert!(good.wasm.starts_with(b"\0asm"));

    let needles = [file_canary.as_str(), var_canary.as_str()];
    let mut outcomes = Vec::new();
    for e in corpus(&data, &canary_file) {
        let id = format!("hostile-{}", e.name);
        let (built, text) = match compile::compile(&cfg, &id, &e.source) {
            Ok(c) => (true, c.wasm),
            Err(err @ CompileError::Failed { .. }) => (false, err.to_string().into_bytes()),
            Err(other) => panic!("{}: {other}", e.name),
        };
        for n in needles {
            assert!(
                !contains(&text, n),
                "{}: the canary leaked into the {}",
                e.name,
                if built {
                    "component"
                } else {
                    "compiler output"
                }
            );
        }
        match e.expect {
            Expect::Fails => assert!(!built, "{} built", e.name),
            Expect::Builds => assert!(
                built,
                "{} did not build: {}",
                e.name,
                String::from_utf8_lossy(&text)
            ),
            Expect::Any => {}
        }
        if e.name == "10-proc-self-environ" {
            // it read the compiler's environment: the allow-list, inside the sandbox
            assert!(
                contains(&text, "CARGO_HOME=/tmp/cargo-home"),
                "{}",
                String::from_utf8_lossy(&text)
            );
            assert!(!contains(&text, "KRAKEN_API_SECRET"));
        }
        outcomes.push((e.name, built));
    }
    assert!(outcomes.len() >= 17, "{outcomes:?}");
    // the build directories are gone, and nothing in the target directory holds a canary
    assert_eq!(std::fs::read_dir(&build_root).unwrap().count(), 0);
    assert_eq!(
        files_containing(&candidates_target(), &needles),
        Vec::<PathBuf>::new()
    );
    let mut left = files_containing(dir.path(), &needles);
    left.sort();
    assert_eq!(left, vec![canary_file, data.join("host.db")]);
}

/// Builds `source` with `settings`, after a plain build with the defaults
/// (so the SDK is warm and only the candidate meets the limit).
fn limited(
    name: &str,
    source: &str,
    settings: CompileSettings,
) -> (Result<compile::Compiled, CompileError>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    compile::compile(&cfg, &format!("{name}-warm"), GOOD).unwrap();
    cfg.sandbox = settings;
    cfg.timeout = Duration::from_secs(240);
    let t = Instant::now();
    let r = compile::compile(&cfg, name, source);
    (r, t.elapsed())
}

#[test]
fn a_compiler_spinning_in_const_eval_is_stopped_by_the_cpu_limit() {
    let src = format!("#![allow(long_running_const_eval)]\nconst fn spin() -> u64 {{ let mut i = 0u64; while i < u64::MAX {{ i = i.wrapping_add(1) | 1; }} i }}\npub const X: u64 = spin();\n{GOOD}");
    let (r, took) = limited(
        "limit-cpu",
        &src,
        CompileSettings {
            cpu_secs: 5,
            ..CompileSettings::default()
        },
    );
    assert!(matches!(r, Err(CompileError::Failed { .. })), "{r:?}");
    assert!(took < Duration::from_secs(120), "{took:?}");
}

#[test]
fn a_build_writing_a_huge_file_is_stopped_by_the_file_size_limit() {
    let src = format!("pub static BIG: [u8; 24 << 20] = [7; 24 << 20];\n#[no_mangle]\npub fn big(i: usize) -> u8 {{ BIG[i % BIG.len()] }}\n{GOOD}");
    let (r, _) = limited(
        "limit-fsize",
        &src,
        CompileSettings {
            max_file_mb: 8,
            ..CompileSettings::default()
        },
    );
    assert!(matches!(r, Err(CompileError::Failed { .. })), "{r:?}");
}

#[test]
fn a_compiler_allocating_gigabytes_is_stopped_by_the_memory_limit() {
    let src = format!("pub static HUGE: [u64; 1 << 27] = [1; 1 << 27];\n#[no_mangle]\npub fn huge(i: usize) -> u64 {{ HUGE[i % HUGE.len()] }}\n{GOOD}");
    let (r, took) = limited(
        "limit-memory",
        &src,
        CompileSettings {
            memory_mb: 1024,
            // (the 1 GiB data segment alone would meet the default file-size limit)
            max_file_mb: 4096,
            ..CompileSettings::default()
        },
    );
    assert!(matches!(r, Err(CompileError::Failed { .. })), "{r:?}");
    assert!(took < Duration::from_secs(120), "{took:?}");
}

#[test]
fn without_a_working_bwrap_compiling_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.sandbox.bwrap_path = Some(dir.path().join("no-such-bwrap"));
    let r = compile::compile(&cfg, "no-bwrap", GOOD);
    assert!(
        matches!(&r, Err(CompileError::SandboxUnavailable(SandboxProblem::NotFound(p))) if *p == dir.path().join("no-such-bwrap")),
        "{r:?}"
    );
    // a bwrap that cannot start a sandbox (here: one that always fails)
    cfg.sandbox.bwrap_path = Some(PathBuf::from("/bin/false"));
    let r = compile::compile(&cfg, "broken-bwrap", GOOD);
    assert!(
        matches!(
            &r,
            Err(CompileError::SandboxUnavailable(
                SandboxProblem::DoesNotRun { .. }
            ))
        ),
        "{r:?}"
    );
    // nothing was built and nothing is left
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
