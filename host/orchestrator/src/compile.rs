//! Compiles candidate strategy source into a component: the host writes the
//! crate (manifest, lock file, `src/lib.rs`) under `build/<id>/`, builds it
//! offline for wasm32 with the guest toolchain of `deploy/guest-env.sh`, in a
//! shared target directory so warm builds reuse the SDK, and kills the build
//! when the time cap passes.
//!
//! The source is model-written, so the build is confined whatever the source
//! check let through (`[orchestrator.compile]`, [`CompileSettings`]):
//! - cargo runs with a cleared environment: an allow-list of PATH, HOME (the
//!   crate's directory), CARGO_HOME, CARGO_TARGET_DIR, the compiler and the
//!   wasm32 linker settings, never the host's exchange, Anthropic, API or bot
//!   secrets;
//! - under bubblewrap (`sandbox = "bwrap"`, the default) with every namespace
//!   unshared (no network), a file system of only the toolchain, the cargo
//!   registry, the SDK and the contract (read-only), the candidate's crate
//!   (read-only but for its lock file) and the shared target directory, a
//!   private size-capped /tmp, no /sys, a fresh /proc;
//! - under RLIMIT_AS, RLIMIT_CPU and RLIMIT_FSIZE, set on every process of it;
//! - and the crate directory and the candidate's outputs are removed after
//!   the build, whatever its outcome.
//!
//! Where bubblewrap is missing or does not work, compiling is refused
//! ([`CompileError::SandboxUnavailable`]) unless the user opted out with
//! `sandbox = "none"`, which is warned at every build.

pub use crate::settings::{CompileSettings, SandboxMode};

use std::ffi::OsString;
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
    /// `[orchestrator.compile]`: the sandbox and the limits of each build.
    pub sandbox: CompileSettings,
}

/// Why the build sandbox cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SandboxProblem {
    #[error("no bwrap binary at {0} (install the Debian package `bubblewrap`: deploy/install-toolchain.sh)")]
    NotFound(PathBuf),
    #[error("{bwrap} could not be started: {source}")]
    Spawn {
        bwrap: PathBuf,
        source: std::io::Error,
    },
    #[error("{bwrap} does not work here ({status}): {output}")]
    DoesNotRun {
        bwrap: PathBuf,
        status: String,
        output: String,
    },
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
    #[error(
        "refusing to compile model-written code without the build sandbox: {0}; \
             set [orchestrator.compile] sandbox = \"none\" only on a machine that holds no secrets"
    )]
    SandboxUnavailable(#[source] SandboxProblem),
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
    /// Where the crate was built; removed once the build is over.
    pub crate_dir: PathBuf,
    pub elapsed: Duration,
    /// How the build was confined.
    pub sandbox: SandboxMode,
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

/// The guest toolchain as `deploy/guest-env.sh` defines it, resolved to
/// absolute paths on the host (outside the sandbox) so the build needs
/// neither the rustup proxies nor the repository's toolchain file.
#[derive(Debug, Clone)]
struct Toolchain {
    sysroot: PathBuf,
    cargo: PathBuf,
    rustc: PathBuf,
    linker: PathBuf,
    rustflags: Option<String>,
    target: String,
    /// The host's cargo home: its registry holds the SDK's dependencies.
    cargo_home: PathBuf,
}

/// Variables the toolchain resolution (host-owned commands only) may see.
const RESOLVE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "RUSTUP_AUTO_INSTALL",
];

fn resolve_toolchain(root: &Path) -> Result<Toolchain, CompileError> {
    let env_script = root.join("deploy/guest-env.sh");
    if !env_script.exists() {
        return Err(CompileError::NoToolchain(format!(
            "{} is missing",
            env_script.display()
        )));
    }
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"set -e; source "$1"; cd "$2"; sysroot=$("${RUSTC:-rustc}" --print sysroot); cargo=$(command -v "$CARGO"); printf '%s\n' "$sysroot" "$cargo" "$CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER" "$GUEST_TARGET" "${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS-}""#)
        .arg("guest-env")
        .arg(&env_script)
        .arg(root)
        .env_clear()
        .envs(RESOLVE_ENV.iter().filter_map(|k| Some((k, std::env::var_os(k)?))))
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| CompileError::NoToolchain(format!("bash: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    if !out.status.success() || lines.len() < 4 {
        return Err(CompileError::NoToolchain(format!(
            "{} ({}): {}",
            env_script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let sysroot = PathBuf::from(lines[0]);
    let rustc = sysroot.join("bin/rustc");
    // the toolchain's own cargo, not a rustup proxy
    let cargo = Some(sysroot.join("bin/cargo"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(lines[1]));
    let linker = PathBuf::from(lines[2]);
    for p in [&rustc, &cargo, &linker] {
        if !p.is_absolute() || !p.is_file() {
            return Err(CompileError::NoToolchain(format!(
                "{} is not an installed program (deploy/install-toolchain.sh)",
                p.display()
            )));
        }
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or_else(|| CompileError::NoToolchain("neither CARGO_HOME nor HOME is set".into()))?;
    Ok(Toolchain {
        sysroot,
        cargo,
        rustc,
        linker,
        target: lines[3].to_string(),
        rustflags: lines
            .get(4)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string()),
        cargo_home,
    })
}

/// The bubblewrap binary: the configured one, else /usr/bin/bwrap, else
/// `bwrap` on PATH.
fn find_bwrap(s: &CompileSettings) -> Result<PathBuf, SandboxProblem> {
    if let Some(p) = &s.bwrap_path {
        return if p.is_file() {
            Ok(p.clone())
        } else {
            Err(SandboxProblem::NotFound(p.clone()))
        };
    }
    let default = PathBuf::from("/usr/bin/bwrap");
    if default.is_file() {
        return Ok(default);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
        .ok_or(SandboxProblem::NotFound(default))
}

/// Where the sandbox's cargo home is: on the private /tmp, with the host's
/// registry bound read-only into it.
const SANDBOX_CARGO_HOME: &str = "/tmp/cargo-home";

/// The paths a sandboxed build sees.
struct Mounts<'a> {
    tool: &'a Toolchain,
    root: &'a Path,
    crate_dir: &'a Path,
    target_dir: &'a Path,
    tmp_bytes: u64,
}

/// bubblewrap's arguments (up to `--`): every namespace unshared, the
/// system's programs and libraries, the toolchain, the registry, the SDK,
/// the contract and the workspace manifest (which the SDK's manifest
/// inherits from) read-only; the crate (its lock file writable) and the
/// target directory; a private /tmp; nothing else of the host.
fn bwrap_args(m: &Mounts<'_>) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |xs: &[&std::ffi::OsStr]| a.extend(xs.iter().map(|x| x.to_os_string()));
    push(&[
        "--unshare-all".as_ref(),
        "--die-with-parent".as_ref(),
        "--new-session".as_ref(),
        "--ro-bind".as_ref(),
        "/usr".as_ref(),
        "/usr".as_ref(),
    ]);
    // /bin, /lib, ... as the host has them: merged-/usr symlinks or directories
    for d in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        let p = Path::new(d);
        match std::fs::read_link(p) {
            Ok(to) => push(&["--symlink".as_ref(), to.as_os_str(), d.as_ref()]),
            Err(_) if p.is_dir() => push(&["--ro-bind".as_ref(), d.as_ref(), d.as_ref()]),
            Err(_) => {}
        }
    }
    // the dynamic linker's cache, and the alternatives `cc` resolves through
    // (the dependencies' build scripts are linked for the host)
    push(&[
        "--ro-bind-try".as_ref(),
        "/etc/ld.so.cache".as_ref(),
        "/etc/ld.so.cache".as_ref(),
        "--ro-bind-try".as_ref(),
        "/etc/alternatives".as_ref(),
        "/etc/alternatives".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
    ]);
    let tmp = m.tmp_bytes.to_string();
    push(&[
        "--size".as_ref(),
        tmp.as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    let t = m.tool;
    let mut ro: Vec<PathBuf> = vec![t.sysroot.clone(), t.cargo.clone(), t.linker.clone()];
    ro.retain(|p| !p.starts_with("/usr"));
    ro.extend([
        m.root.join("strategies/sdk"),
        m.root.join("wit"),
        m.root.join("Cargo.toml"),
    ]);
    for p in &ro {
        push(&["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()]);
    }
    let home = Path::new(SANDBOX_CARGO_HOME);
    for sub in ["registry/index", "registry/cache", "registry/src", "git"] {
        let from = t.cargo_home.join(sub);
        let to = home.join(sub);
        push(&["--ro-bind-try".as_ref(), from.as_os_str(), to.as_os_str()]);
    }
    let toml = m.crate_dir.join("Cargo.toml");
    let src = m.crate_dir.join("src");
    push(&[
        "--bind".as_ref(),
        m.target_dir.as_os_str(),
        m.target_dir.as_os_str(),
        "--bind".as_ref(),
        m.crate_dir.as_os_str(),
        m.crate_dir.as_os_str(),
        "--ro-bind".as_ref(),
        toml.as_os_str(),
        toml.as_os_str(),
        "--ro-bind".as_ref(),
        src.as_os_str(),
        src.as_os_str(),
        "--chdir".as_ref(),
        m.crate_dir.as_os_str(),
    ]);
    a
}

/// The whole environment of a build (nothing of the host's is inherited).
fn build_env(
    tool: &Toolchain,
    crate_dir: &Path,
    target_dir: &Path,
    cargo_home: &Path,
) -> Vec<(&'static str, OsString)> {
    let mut path = OsString::from(tool.sysroot.join("bin"));
    path.push(":/usr/bin:/bin");
    let mut env: Vec<(&'static str, OsString)> = vec![
        ("PATH", path),
        ("HOME", crate_dir.into()),
        ("TMPDIR", "/tmp".into()),
        ("CARGO_HOME", cargo_home.into()),
        ("CARGO_TARGET_DIR", target_dir.into()),
        ("CARGO_TERM_COLOR", "never".into()),
        ("CARGO_INCREMENTAL", "0".into()),
        ("RUSTC", tool.rustc.clone().into()),
        (
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
            tool.linker.clone().into(),
        ),
    ];
    if let Some(f) = &tool.rustflags {
        env.push(("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", f.into()));
    }
    env
}

/// Sets the build's resource limits on the child before it runs bwrap
/// (inherited by bwrap, cargo, every rustc and linker).
fn limit(cmd: &mut Command, s: &CompileSettings) {
    use rustix::process::{setrlimit, Resource, Rlimit};
    use std::os::unix::process::CommandExt;
    let mib = 1024 * 1024;
    let limits = [
        (Resource::As, s.memory_mb.saturating_mul(mib)),
        (Resource::Cpu, s.cpu_secs),
        (Resource::Fsize, s.max_file_mb.saturating_mul(mib)),
    ];
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes setrlimit system calls (async-signal-safe, no allocation, no
    // locks) on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for (r, v) in limits {
                setrlimit(
                    r,
                    Rlimit {
                        current: Some(v),
                        maximum: Some(v),
                    },
                )?;
            }
            Ok(())
        });
    }
}

/// Checks that bubblewrap starts a sandbox here and that the toolchain runs
/// inside it (user namespaces may be disabled, a container may forbid
/// mounts): `rustc --version` under the same mounts as the build.
fn probe(
    bwrap: &Path,
    m: &Mounts<'_>,
    env: &[(&'static str, OsString)],
) -> Result<(), SandboxProblem> {
    let out = Command::new(bwrap)
        .args(bwrap_args(m))
        .arg("--")
        .arg(&m.tool.rustc)
        .arg("--version")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SandboxProblem::Spawn {
            bwrap: bwrap.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
    output.truncate(output.floor_char_boundary(1024));
    Err(SandboxProblem::DoesNotRun {
        bwrap: bwrap.to_path_buf(),
        status: out.status.to_string(),
        output,
    })
}

/// Removes what a build of `id` left: its crate directory, its log and its
/// outputs in the shared target directory (the SDK's stay, for the next build).
fn clean(cfg: &CompileConfig, dir: &Path, id: &str) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(dir.with_extension("log"));
    let release = cfg.target_dir.join("wasm32-unknown-unknown/release");
    let stem = format!("candidate_{}", id.replace('-', "_"));
    let fingerprint = format!("candidate-{id}-");
    let ours = |sub: &str, name: &str| match sub {
        // `candidate-<id>-<16 hex digits>`
        ".fingerprint" => name
            .strip_prefix(&fingerprint)
            .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        _ => {
            name == stem
                || name
                    .strip_prefix(&stem)
                    .is_some_and(|r| r.starts_with('.') || r.starts_with('-'))
        }
    };
    for sub in ["", "deps", ".fingerprint"] {
        let Ok(entries) = std::fs::read_dir(release.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            if !ours(sub, &e.file_name().to_string_lossy()) {
                continue;
            }
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// Writes the crate for `source` and builds it. `source` should already have
/// passed [`super::source_check::check`]; the build is confined either way.
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
    let tool = resolve_toolchain(&root)?;
    let bwrap = match cfg.sandbox.sandbox {
        SandboxMode::Bwrap => {
            Some(find_bwrap(&cfg.sandbox).map_err(CompileError::SandboxUnavailable)?)
        }
        SandboxMode::None => {
            tracing::warn!(
                candidate = id,
                "compiling model-written code WITHOUT the build sandbox ([orchestrator.compile] sandbox = \"none\"): \
                 it sees this machine's files; only the environment is cleared and the limits apply"
            );
            None
        }
    };
    let build_root = std::path::absolute(&cfg.build_root).map_err(io(&cfg.build_root))?;
    let dir = build_root.join(id);
    let result = build(cfg, &tool, bwrap.as_deref(), &root, &dir, id, source);
    clean(cfg, &dir, id);
    result
}

#[allow(clippy::too_many_arguments)]
fn build(
    cfg: &CompileConfig,
    tool: &Toolchain,
    bwrap: Option<&Path>,
    root: &Path,
    dir: &Path,
    id: &str,
    source: &str,
) -> Result<Compiled, CompileError> {
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

    // the log stays outside the sandbox's view: cargo writes to its descriptor
    let log_path = dir.with_extension("log");
    let log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    let log2 = log.try_clone().map_err(io(&log_path))?;
    let target_dir = std::path::absolute(&cfg.target_dir).map_err(io(&cfg.target_dir))?;
    let cargo_home = match bwrap {
        Some(_) => PathBuf::from(SANDBOX_CARGO_HOME),
        None => tool.cargo_home.clone(),
    };
    let env = build_env(tool, dir, &target_dir, &cargo_home);
    let manifest_path = dir.join("Cargo.toml");
    let cargo_args: [&std::ffi::OsStr; 8] = [
        "build".as_ref(),
        "--offline".as_ref(),
        "--release".as_ref(),
        "--quiet".as_ref(),
        "--target".as_ref(),
        tool.target.as_ref(),
        "--manifest-path".as_ref(),
        manifest_path.as_os_str(),
    ];
    let mut cmd = match bwrap {
        Some(bwrap) => {
            let mounts = Mounts {
                tool,
                root,
                crate_dir: dir,
                target_dir: &target_dir,
                tmp_bytes: cfg.sandbox.tmp_mb.saturating_mul(1024 * 1024),
            };
            probe(bwrap, &mounts, &env).map_err(CompileError::SandboxUnavailable)?;
            let mut c = Command::new(bwrap);
            c.args(bwrap_args(&mounts)).arg("--").arg(&tool.cargo);
            c
        }
        None => Command::new(&tool.cargo),
    };
    cmd.args(cargo_args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    limit(&mut cmd, &cfg.sandbox);
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let started = Instant::now();
    let max_out = cfg.sandbox.max_output_bytes;
    let mut child = cmd
        .spawn()
        .map_err(|e| CompileError::NoToolchain(format!("{}: {e}", tool.cargo.display())))?;
    let status = loop {
        match child.try_wait().map_err(io(dir))? {
            Some(s) => break s,
            None if started.elapsed() >= cfg.timeout => {
                kill_group(child.id());
                let _ = child.wait();
                let output = read_log(&log_path, max_out);
                let _ = std::fs::remove_file(&log_path);
                return Err(CompileError::TimedOut {
                    secs: cfg.timeout.as_secs(),
                    output,
                });
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let output = read_log(&log_path, max_out);
    let _ = std::fs::remove_file(&log_path);
    if !status.success() {
        return Err(CompileError::Failed {
            status: status.to_string(),
            output,
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
        crate_dir: dir.to_path_buf(),
        elapsed: started.elapsed(),
        sandbox: if bwrap.is_some() {
            SandboxMode::Bwrap
        } else {
            SandboxMode::None
        },
    })
}

/// Kills the whole process group of the build (bwrap, and with it
/// everything inside the sandbox; or cargo, rustc and linkers).
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The compiler output, clipped to its last `max` bytes.
fn read_log(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    if text.len() <= max {
        return text.into_owned();
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
            sandbox: CompileSettings::default(),
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

    fn tool() -> Toolchain {
        Toolchain {
            sysroot: "/opt/rust".into(),
            cargo: "/opt/rust/bin/cargo".into(),
            rustc: "/opt/rust/bin/rustc".into(),
            linker: "/usr/local/bin/wasm-component-ld".into(),
            rustflags: None,
            target: "wasm32-unknown-unknown".into(),
            cargo_home: "/home/trader/.cargo".into(),
        }
    }

    #[test]
    fn the_sandbox_binds_only_the_toolchain_registry_sdk_and_build_dirs() {
        let t = tool();
        let m = Mounts {
            tool: &t,
            root: Path::new("/srv/host"),
            crate_dir: Path::new("/srv/host/data/orchestrator/build/c1"),
            target_dir: Path::new("/srv/host/data/orchestrator/target"),
            tmp_bytes: 1 << 20,
        };
        let args: Vec<String> = bwrap_args(&m)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(args.starts_with(&[
            "--unshare-all".into(),
            "--die-with-parent".into(),
            "--new-session".into()
        ]));
        assert!(!args.iter().any(|a| a == "--share-net" || a == "--cap-add"));
        // (kind, source) of every bind
        let mut binds = Vec::new();
        let mut i = 0;
        while i < args.len() {
            if ["--bind", "--ro-bind", "--ro-bind-try"].contains(&args[i].as_str()) {
                binds.push((args[i].clone(), args[i + 1].clone()));
                i += 3;
            } else {
                i += 1;
            }
        }
        let writable: Vec<&str> = binds
            .iter()
            .filter(|(k, _)| k == "--bind")
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(
            writable,
            [
                "/srv/host/data/orchestrator/target",
                "/srv/host/data/orchestrator/build/c1"
            ]
        );
        let allowed = [
            "/usr",
            "/etc/ld.so.cache",
            "/etc/alternatives",
            "/opt/rust",
            "/opt/rust/bin/cargo",
            "/usr/local/bin/wasm-component-ld",
            "/srv/host/strategies/sdk",
            "/srv/host/wit",
            "/srv/host/Cargo.toml",
            "/home/trader/.cargo/registry/index",
            "/home/trader/.cargo/registry/cache",
            "/home/trader/.cargo/registry/src",
            "/home/trader/.cargo/git",
            "/srv/host/data/orchestrator/target",
            "/srv/host/data/orchestrator/build/c1",
            "/srv/host/data/orchestrator/build/c1/Cargo.toml",
            "/srv/host/data/orchestrator/build/c1/src",
            // merged-/usr hosts have symlinks here instead
            "/bin",
            "/sbin",
            "/lib",
            "/lib32",
            "/lib64",
            "/libx32",
        ];
        for (_, src) in &binds {
            assert!(
                allowed.contains(&src.as_str()),
                "{src} is bound into the sandbox"
            );
        }
        // the crate's manifest and source are read-only over the writable crate dir
        let pos = |k: &str, p: &str| binds.iter().position(|b| b.0 == k && b.1 == p).unwrap();
        assert!(
            pos("--ro-bind", "/srv/host/data/orchestrator/build/c1/src")
                > pos("--bind", "/srv/host/data/orchestrator/build/c1")
        );
        // the host's cargo home is never bound whole (its config or credentials)
        assert!(!binds
            .iter()
            .any(|(_, s)| s == "/home/trader/.cargo" || s == "/home/trader"));
    }

    #[test]
    fn the_build_environment_is_an_allow_list() {
        let env = build_env(
            &tool(),
            Path::new("/b/c1"),
            Path::new("/t"),
            Path::new(SANDBOX_CARGO_HOME),
        );
        let keys: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "PATH",
                "HOME",
                "TMPDIR",
                "CARGO_HOME",
                "CARGO_TARGET_DIR",
                "CARGO_TERM_COLOR",
                "CARGO_INCREMENTAL",
                "RUSTC",
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER"
            ]
        );
        assert_eq!(env[1].1, "/b/c1");
    }
}
