//! A real `host run` process for the API, bot and dashboard tests: its own
//! data directory, settings, a free loopback port for the API, killed on drop.
//! Its stdout (where `host run` prints the dashboard URL with the token) and
//! stderr (the log) go to files in its directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct RunningHost {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub api: String,
    /// `HOST_API_TOKEN` when the test set one.
    env_token: Option<String>,
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Starts `host run --replay data/sample/BTCUSD-1h.csv --speed SPEED` with
/// `extra_settings` appended to settings.toml and `env` set.
pub fn start(speed: &str, extra_settings: &str, env: &[(&str, &str)]) -> RunningHost {
    start_replay(
        &repo_root().join("data/sample/BTCUSD-1h.csv"),
        speed,
        extra_settings,
        env,
    )
}

/// As [`start`], replaying `replay` instead of the whole sample.
pub fn start_replay(
    replay: &Path,
    speed: &str,
    extra_settings: &str,
    env: &[(&str, &str)],
) -> RunningHost {
    start_seeded(replay, speed, extra_settings, env, &|_| {})
}

/// As [`start_replay`], with `seed` run on the host's directory first (its
/// data directory is `DIR/data`, its archive `DIR/archive`), e.g. to put
/// rows in the database the host then opens.
pub fn start_seeded(
    replay: &Path,
    speed: &str,
    extra_settings: &str,
    env: &[(&str, &str)],
    seed: &dyn Fn(&Path),
) -> RunningHost {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    let wasm = crate::common::guest_path("sma-crossover");
    assert!(
        wasm.exists(),
        "{}: run deploy/build-guests.sh first",
        wasm.display()
    );
    let settings = format!(
        "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = \"{}\"\n{extra_settings}\n",
        wasm.display()
    );
    std::fs::write(dir.path().join("settings.toml"), settings).unwrap();
    let port = free_port();
    let mut c = Command::new(env!("CARGO_BIN_EXE_host"));
    c.args(["run", "--replay"])
        .arg(replay)
        .args(["--speed", speed, "--api-addr", &format!("127.0.0.1:{port}")])
        .env("HOST_DATA_DIR", dir.path().join("data"))
        .env("HOST_ARCHIVE_DIR", dir.path().join("archive"))
        .env("HOST_CONFIG", dir.path().join("settings.toml"))
        .env("HOST_LOG", "info,host_telegram=debug")
        .env_remove("HOST_API_TOKEN")
        .env_remove("TELEGRAM_BOT_TOKEN")
        .env_remove("HOST_API_ADDR")
        .current_dir(dir.path())
        .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().unwrap();
    let env_token = env
        .iter()
        .find(|(k, _)| *k == "HOST_API_TOKEN")
        .map(|(_, v)| v.to_string());
    let h = RunningHost {
        dir,
        child,
        api: format!("http://127.0.0.1:{port}"),
        env_token,
    };
    h.wait_for_health();
    h
}

impl RunningHost {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// The API token: the one the test set, else the one the host generated.
    pub fn token(&self) -> String {
        if let Some(t) = &self.env_token {
            return t.clone();
        }
        let t = std::fs::read_to_string(self.dir.path().join("data/api.token"))
            .expect("the host keeps its generated token in data/api.token");
        t.trim().to_string()
    }

    /// The `dashboard: URL` line `host run` printed to its stdout.
    pub fn dashboard_url(&self) -> String {
        eventually(10, "the dashboard URL on stdout", || {
            self.stdout()
                .lines()
                .find_map(|l| l.strip_prefix("dashboard: ").map(str::to_string))
        })
    }

    fn wait_for_health(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = self.api.trim_start_matches("http://").to_string();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let req = format!("GET /api/v1/health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                let _ = s.write_all(req.as_bytes());
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.contains("\"ok\"") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the API never came up:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `host ARGS` against this host (its data directory and settings).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_host"))
            .args(args)
            .env("HOST_DATA_DIR", self.dir.path().join("data"))
            .env("HOST_ARCHIVE_DIR", self.dir.path().join("archive"))
            .env("HOST_CONFIG", self.dir.path().join("settings.toml"))
            .env("HOST_LOG", "warn")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// `host status --json` against this host (through the control socket).
    pub fn status_json(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["status", "--json"])
            .env("HOST_DATA_DIR", self.dir.path().join("data"))
            .env("HOST_ARCHIVE_DIR", self.dir.path().join("archive"))
            .env("HOST_CONFIG", self.dir.path().join("settings.toml"))
            .env("HOST_LOG", "warn")
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

/// Polls `f` until it returns Some, failing after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
