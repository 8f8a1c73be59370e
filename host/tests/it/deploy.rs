//! Hot-swap and deploy, driven through the real `host` binary as a user would:
//! a swap under a stream of scans, a refused deploy, rollback, offline deploy,
//! and the restart fallback from archive file to database copy.

use crate::common;

use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let settings = format!(
            "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = \"{}\"\n",
            guest_path("sma-crossover").display()
        );
        std::fs::write(dir.path().join("settings.toml"), settings).unwrap();
        write_csv(
            &dir.path().join("btc.csv"),
            &shared_candles("BTCUSD-1h.csv", 50_000, 3_000),
        );
        Host { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_host"));
        c.args(args)
            .env("HOST_DATA_DIR", self.path("data"))
            .env("HOST_ARCHIVE_DIR", self.path("archive"))
            .env("HOST_CONFIG", self.path("settings.toml"))
            .env("HOST_LOG", "warn")
            .current_dir(self.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn spawn_replay(&self, speed: &str) -> Child {
        self.cmd(&[
            "run",
            "--replay",
            self.path("btc.csv").to_str().unwrap(),
            "--speed",
            speed,
            "--exit-at-end",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    }

    fn live_scans(&self) -> Option<i64> {
        let r = host_control::socket::request(
            &self.path("data/host.sock"),
            &host_control::socket::Request::Status,
        )
        .ok()??;
        match r {
            host_control::socket::Reply::Status(s) => Some(s.scan_seq),
            _ => None,
        }
    }

    /// Waits (bounded) until the running host has done `n` scans.
    fn wait_scans(&self, n: i64) -> i64 {
        let start = Instant::now();
        loop {
            if let Some(s) = self.live_scans().filter(|&s| s >= n) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "host never reached {n} scans"
            );
            std::thread::yield_now();
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("data/host.db")).unwrap()
    }

    fn scans(&self) -> Vec<(i64, i64)> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT seq, strategy_version FROM scan_results ORDER BY seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn state_scans(db: &rusqlite::Connection) -> f64 {
    let state: Vec<u8> = db
        .query_row(
            "SELECT state FROM strategy_state ORDER BY rowid DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let text = String::from_utf8(state).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("scans="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn deploy_swaps_between_two_scans_and_carries_state() {
    let h = Host::new();
    let mut child = h.spawn_replay("360000");
    let before = h.wait_scans(200);
    let out = h.run(&["deploy", guest_path("counter").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deployed v2 (was v1)"),
        "{}",
        text(&out)
    );
    let status = child.wait().unwrap();
    assert!(status.success());

    let scans = h.scans();
    let total = scans.len() as i64;
    assert!(total > before, "scans continued after the deploy");
    // no scan missed or run twice: sequence numbers are exactly 1..=total
    assert!(scans
        .iter()
        .enumerate()
        .all(|(i, (seq, _))| *seq == i as i64 + 1));
    // exactly one switch, from v1 to v2, at the scan the deploy reported
    let switch: Vec<_> = scans.windows(2).filter(|w| w[0].1 != w[1].1).collect();
    assert_eq!(switch.len(), 1, "{switch:?}");
    assert_eq!((switch[0][0].1, switch[0][1].1), (1, 2));
    let first_v2 = switch[0][1].0;
    let reported: i64 = text(&out)
        .split("serving from scan ")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(first_v2, reported);
    // the state carried over: the counter continued the old strategy's count
    assert_eq!(state_scans(&h.db()), total as f64);
    // the old version is archived, the new one active, both on disk
    assert!(h.path("archive/strategy_v001/strategy.wasm").exists());
    assert!(h.path("archive/strategy_v002/meta.json").exists());
    let modules = text(&h.run(&["modules"]));
    assert!(
        modules.contains("archived") && modules.contains("active"),
        "{modules}"
    );
}

#[test]
fn refused_deploy_leaves_the_running_strategy() {
    let h = Host::new();
    let mut child = h.spawn_replay("360000");
    h.wait_scans(50);
    for bad in ["bad-init", "bad-old-contract", "bad-fs-import"] {
        let out = h.run(&["deploy", guest_path(bad).to_str().unwrap()]);
        assert!(!out.status.success(), "{bad} was accepted: {}", text(&out));
        assert!(text(&out).contains("deploy refused"), "{}", text(&out));
    }
    let garbage = h.path("garbage.wasm");
    std::fs::write(&garbage, b"not wasm").unwrap();
    assert!(!h
        .run(&["deploy", garbage.to_str().unwrap()])
        .status
        .success());
    let after = h.wait_scans(100);
    assert!(after >= 100, "the old strategy kept scanning");
    child.wait().unwrap();
    assert!(
        h.scans().iter().all(|(_, v)| *v == 1),
        "only v1 ever scanned"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&h.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["strategy"]["version"], 1);
}

fn replay_to_end(h: &Host) -> Output {
    h.cmd(&[
        "run",
        "--replay",
        h.path("btc.csv").to_str().unwrap(),
        "--exit-at-end",
    ])
    .output()
    .unwrap()
}

#[test]
fn restart_falls_back_from_file_to_database_then_paused() {
    let h = Host::new();
    assert!(replay_to_end(&h).status.success());
    std::fs::remove_file(h.path("archive/strategy_v001/strategy.wasm")).unwrap();
    let out = replay_to_end(&h);
    assert!(out.status.success(), "{}", text(&out));
    let db = h.db();
    let fallback: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'strategy_fallback'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fallback, 1);
    // the second run scanned with v1 again, continuing the sequence
    let scans = h.scans();
    assert_eq!(scans.len() as i64, scans.last().unwrap().0);
    assert!(scans.iter().all(|(_, v)| *v == 1));
    // with the database copy damaged too, the host starts paused
    db.execute(
        "UPDATE strategy_versions SET wasm = x'00' WHERE version = 1",
        [],
    )
    .unwrap();
    let n_before = scans.len();
    let out = replay_to_end(&h);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(h.scans().len(), n_before, "a paused host does not scan");
    let paused: i64 = h
        .db()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'strategy_paused'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(paused, 1);
}

#[test]
fn offline_deploy_and_rollback_are_used_by_the_next_start() {
    let h = Host::new();
    assert!(replay_to_end(&h).status.success());
    let out = h.run(&["deploy", guest_path("counter").to_str().unwrap()]);
    assert!(
        out.status.success() && text(&out).contains("next start uses it"),
        "{}",
        text(&out)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&h.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["strategy"]["version"], 2);
    let out = h.run(&["rollback"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("rolled back to v1"), "{}", text(&out));
    let status: serde_json::Value =
        serde_json::from_slice(&h.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["strategy"]["version"], 1);
    assert!(replay_to_end(&h).status.success());
    assert_eq!(h.scans().last().unwrap().1, 1);
    // nothing left to roll back to
    let out = h.run(&["rollback"]);
    assert!(!out.status.success());
    let audit = h.run(&["audit", "verify"]);
    assert!(audit.status.success(), "{}", text(&audit));
}
