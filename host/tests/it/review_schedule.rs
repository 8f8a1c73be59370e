//! The scheduler side of the orchestrator, through the real binary: `host run
//! --orchestrate` turns `host review` into a tuning trigger, starts one cycle
//! on its own thread while the host keeps serving, and the cycle ends in a
//! recorded run (deployed or rejected with its reason).

use crate::common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn candidates_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("orchestrator-candidates")
}

#[test]
fn host_review_starts_one_cycle_from_the_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = root().join("data/sample/BTCUSD-1h.csv");
    std::fs::write(
        d.join("settings.toml"),
        format!(
            "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = \"{}\"\n[orchestrator]\nproposer = \"offline\"\nwindow_start = \"00:30\"\nwindow_end = \"00:31\"\n\
             data = [\"{}\"]\ntarget_dir = \"{}\"\nstrategy_document = \"{}\"\nmarket_analysis = \"{}\"\n\
             trade_performance = \"{}\"\n",
            guest_path("sma-crossover").display(),
            sample.display(),
            candidates_target().display(),
            d.join("strategy_document.md").display(),
            guest_path("market-analysis").display(),
            guest_path("trade-performance").display(),
        ),
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_host"));
        c.args(args)
            .env("HOST_DATA_DIR", d.join("data"))
            .env("HOST_ARCHIVE_DIR", d.join("archive"))
            .env("HOST_CONFIG", d.join("settings.toml"))
            .env("HOST_LOG", "warn")
            .env_remove("ANTHROPIC_API_KEY")
            .current_dir(root());
        c
    };
    let mut host = cmd(&[
        "run",
        "--replay",
        sample.to_str().unwrap(),
        "--speed",
        "max",
        "--api-addr",
        "off",
        "--orchestrate",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let socket = d.join("data/host.sock");
    let deadline = Instant::now() + Duration::from_secs(120);
    // the replay runs to its end (its hourly closes never fall in the 00:30-00:31 nightly window)
    loop {
        if let Ok(Some(host_control::socket::Reply::Status(s))) =
            host_control::socket::request(&socket, &host_control::socket::Request::Status)
        {
            if s.scan_seq == 3_000 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the replay did not finish");
        std::thread::yield_now();
    }
    let out = cmd(&["review", "--reason", "test"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(d.join("data/host.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap_or(0) };
    let deadline = Instant::now() + Duration::from_secs(900);
    while count("SELECT COUNT(*) FROM orchestrator_runs WHERE trigger = 'manual'") == 0 {
        assert!(Instant::now() < deadline, "no manual review ran");
        std::thread::sleep(Duration::from_millis(200)); // polling another process's database
    }
    assert!(
        count(
            "SELECT COUNT(*) FROM events WHERE kind = 'review_started' AND detail LIKE '%Manual%'"
        ) >= 1
    );
    let _ = host_control::socket::request(&socket, &host_control::socket::Request::Shutdown);
    let _ = host.wait();
}

/// Regression: `host review` on a host started without `--orchestrate`
/// answered "review requested" and nothing ever ran.
#[test]
fn host_review_on_a_host_without_the_orchestrator_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = root().join("data/sample/BTCUSD-1h.csv");
    std::fs::write(
        d.join("settings.toml"),
        format!(
            "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = \"{}\"\n",
            guest_path("sma-crossover").display(),
        ),
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_host"));
        c.args(args)
            .env("HOST_DATA_DIR", d.join("data"))
            .env("HOST_ARCHIVE_DIR", d.join("archive"))
            .env("HOST_CONFIG", d.join("settings.toml"))
            .env("HOST_LOG", "warn")
            .current_dir(root());
        c
    };
    let mut host = cmd(&[
        "run",
        "--replay",
        sample.to_str().unwrap(),
        "--speed",
        "max",
        "--api-addr",
        "off",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let socket = d.join("data/host.sock");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !matches!(
        host_control::socket::request(&socket, &host_control::socket::Request::Status),
        Ok(Some(host_control::socket::Reply::Status(_)))
    ) {
        assert!(Instant::now() < deadline, "the host did not come up");
        std::thread::yield_now();
    }
    let out = cmd(&["review", "--reason", "test"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // the typed refusal reaches the socket's clients (the API and the bot map the same one)
    let typed = host_control::socket::request(
        &socket,
        &host_control::socket::Request::Review {
            by: Some("test".into()),
            reason: "again".into(),
        },
    );
    let _ = host_control::socket::request(&socket, &host_control::socket::Request::Shutdown);
    let _ = host.wait();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("without the orchestrator"), "{stderr}");
    assert!(
        matches!(
            typed,
            Ok(Some(host_control::socket::Reply::Refused(
                host_control::socket::Refusal::NotOrchestrating
            )))
        ),
        "{typed:?}"
    );
    let db = rusqlite::Connection::open(d.join("data/host.db")).unwrap();
    let recorded: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'tuning_trigger'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 0, "no review is recorded that nobody would run");
}
