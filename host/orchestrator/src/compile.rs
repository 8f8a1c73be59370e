//! Compiles candidate strategy source into a component: the host writes the
//! crate (manifest, lock file, `src/lib.rs`) under `build/<id>/`, builds it
//! offline for wasm32 with the guest toolchain of `deploy/guest-env.sh`, in a
//! shared target directory so warm builds reuse the SDK, and kills the cargo
//! process group when the time cap passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where and how candidates are built.
#[derive(Debug, Clone)]
pub struct CompileConfig {
    /// The repository root: holds `deploy/guest-env.sh`, `strategies/sdk` and `Cargo.lock`.
    pub repo_root: PathBuf,
    /// Candidate crates go to `<build_root>/<id>/`.
    pub build_root: PathBuf,
    /// Shared by every candidate, so the SDK is compiled once.
    pub target_dir: PathBuf,
    pub timeout: Duration,
    pub max_wasm_bytes: u64,
    /// Extra dependencies allowed besides the SDK: (crate name, version requirement).
    pub allowed_deps: Vec<(String, String)>,
}

/// Why a candidate did not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("candidate id {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_'")]
    BadId(String),
    #[error("dependency {0:?} is not on the allow-list")]
    DependencyNotAllowed(String),
    #[error("the guest toolchain is missing: {0}")]
    NoToolchain(String),
    #[error("cargo failed ({status}):\n{output}")]
    Failed { status: String, output: String },
    #[error("compile took longer than {secs} s and was killed:\n{output}")]
    TimedOut { secs: u64, output: String },
    #[error("component is {size} bytes, more than the {max} allowed")]
    TooLarge { size: u64, max: u64 },
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub wasm: Vec<u8>,
    pub crate_dir: PathBuf,
    pub elapsed: Duration,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CompileError + '_ {
    move |source| CompileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The manifest the host writes for candidate `id`.
pub fn manifest(cfg: &CompileConfig, id: &str, deps: &[&str]) -> Result<String, CompileError> {
    let sdk = cfg.repo_root.join("strategies/sdk");
    let sdk = std::fs::canonicalize(&sdk).map_err(io(&sdk))?;
    let mut extra = String::new();
    for d in deps {
        let (_, req) = cfg
            .allowed_deps
            .iter()
            .find(|(n, _)| n == d)
            .ok_or_else(|| CompileError::DependencyNotAllowed(d.to_string()))?;
        extra.push_str(&format!(
            "{d} = {{ version = {req:?}, default-features = false }}\n"
        ));
    }
    Ok(format!(
        r#"# Written by the host's orchestrator; candidates cannot change it.
[package]
name = "candidate-{id}"
version = "0.1.0"
edition = "2021"
publish = false
build = false
autobins = false
autoexamples = false
autotests = false
autobenches = false

[lib]
path = "src/lib.rs"
crate-type = ["cdylib"]
proc-macro = false

[dependencies]
guest-sdk = {{ path = {sdk:?} }}
{extra}
[workspace]

[profile.release]
opt-level = 3
panic = "abort"
lto = false
codegen-units = 16
debug = false
strip = true
incremental = false
"#,
        sdk = sdk.display().to_string()
    ))
}

/// The component file cargo writes for candidate `id`.
fn artifact(cfg: &CompileConfig, id: &str) -> PathBuf {
    cfg.target_dir
        .join("wasm32-unknown-unknown/release")
        .join(format!("candidate_{}.wasm", id.replace('-', "_")))
}

/// Writes the crate for `source` and builds it. `source` must already have
/// passed [`super::source_check::check`].
pub fn compile(cfg: &CompileConfig, id: &str, source: &str) -> Result<Compiled, CompileError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(CompileError::BadId(id.to_string()));
    }
    let root = std::path::absolute(&cfg.repo_root).map_err(io(&cfg.repo_root))?;
    let env_script = root.join("deploy/guest-env.sh");
    if !env_script.exists() {
        return Err(CompileError::NoToolchain(format!(
            "{} is missing",
            env_script.display()
        )));
    }
    let build_root = std::path::absolute(&cfg.build_root).map_err(io(&cfg.build_root))?;
    let dir = build_root.join(id);
    let src_dir = dir.join("src");
    std::fs::create_dir_all(&src_dir).map_err(io(&src_dir))?;
    std::fs::create_dir_all(&cfg.target_dir).map_err(io(&cfg.target_dir))?;
    let files = [
        (dir.join("Cargo.toml"), manifest(cfg, id, &[])?),
        (src_dir.join("lib.rs"), source.to_string()),
    ];
    for (p, text) in &files {
        std::fs::write(p, text).map_err(io(p))?;
    }
    // The lock file: the workspace's own, so the candidate resolves offline to
    // exactly the versions the SDK was tested with (cargo prunes the rest).
    let lock = root.join("Cargo.lock");
    let lock_to = dir.join("Cargo.lock");
    std::fs::copy(&lock, &lock_to).map_err(io(&lock))?;
    let out = artifact(cfg, id);
    let _ = std::fs::remove_file(&out);

    let log_path = dir.join("build.log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let log2 = log.try_clone().map_err(io(&log_path))?;
    let target_dir = std::path::absolute(&cfg.target_dir).map_err(io(&cfg.target_dir))?;
    let started = Instant::now();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"set -e; source "$1"; exec "$CARGO" build --offline --release --quiet --target "$GUEST_TARGET" --manifest-path "$2""#)
        .arg("guest-env")
        .arg(&env_script)
        .arg(dir.join("Cargo.toml"))
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CompileError::NoToolchain(format!("bash: {e}")))?;
    let status = loop {
        match child.try_wait().map_err(io(&dir))? {
            Some(s) => break s,
            None if started.elapsed() >= cfg.timeout => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(CompileError::TimedOut {
                    secs: cfg.timeout.as_secs(),
                    output: read_log(&log_path),
                });
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    if !status.success() {
        return Err(CompileError::Failed {
            status: status.to_string(),
            output: read_log(&log_path),
        });
    }
    let size = std::fs::metadata(&out).map_err(io(&out))?.len();
    if size > cfg.max_wasm_bytes {
        return Err(CompileError::TooLarge {
            size,
            max: cfg.max_wasm_bytes,
        });
    }
    let wasm = std::fs::read(&out).map_err(io(&out))?;
    Ok(Compiled {
        wasm,
        crate_dir: dir,
        elapsed: started.elapsed(),
    })
}

/// Kills the whole process group of cargo (rustc, linkers, build scripts).
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The compiler output, clipped to its last 8 KiB.
fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let max = 8 * 1024;
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CompileConfig {
        CompileConfig {
            repo_root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
            build_root: PathBuf::from("/nonexistent"),
            target_dir: PathBuf::from("/nonexistent"),
            timeout: Duration::from_secs(1),
            max_wasm_bytes: 1,
            allowed_deps: vec![("libm".into(), "0.2".into())],
        }
    }

    #[test]
    fn manifest_pins_sdk_and_allow_list_and_has_no_build_script() {
        let m = manifest(&cfg(), "abc", &["libm"]).unwrap();
        assert!(m.contains("build = false"));
        assert!(m.contains("name = \"candidate-abc\""));
        assert!(m.contains("strategies/sdk"));
        assert!(m.contains("libm = { version = \"0.2\""));
        assert!(m.contains("[workspace]"));
        assert!(
            matches!(manifest(&cfg(), "abc", &["reqwest"]), Err(CompileError::DependencyNotAllowed(d)) if d == "reqwest")
        );
    }

    #[test]
    fn bad_ids_are_refused_before_any_file_is_written() {
        for id in ["", "../x", "A", "a b", &"x".repeat(65)] {
            assert!(
                matches!(compile(&cfg(), id, ""), Err(CompileError::BadId(_))),
                "{id:?}"
            );
        }
    }
}
