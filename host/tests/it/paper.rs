//! Paper trading through the real `host` binary: a replay trades and `host
//! status` shows it; a run cut in two, or crashed (abort at failpoints, and
//! SIGKILL) at any point of an order's life and restarted, ends with exactly
//! the fills, trades and cash of an uninterrupted run — nothing lost, nothing
//! twice.

use crate::common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BARS: usize = 2_000;

/// (time, symbol, action, qty, price, fee, client order id)
type FillRow = (i64, String, String, String, String, String, Option<String>);

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let settings = format!(
            "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = \"{}\"\nparams = [[\"fast\", \"5\"], [\"slow\", \"20\"]]\n",
            guest_path("sma-crossover").display()
        );
        std::fs::write(dir.path().join("settings.toml"), settings).unwrap();
        // loose halts so the strategy keeps trading through the whole slice
        std::fs::write(dir.path().join("risk.toml"), LOOSE_RISK_LIMITS).unwrap();
        let candles = shared_candles("BTCUSD-1h.csv", 60_000, BARS);
        write_csv(&dir.path().join("btc.csv"), &candles);
        write_csv(&dir.path().join("btc-half.csv"), &candles[..BARS / 2]);
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
            .env("HOST_RISK_LIMITS", self.path("risk.toml"))
            .env("HOST_LOG", "error")
            .env_remove("HOST_FAILPOINT")
            .current_dir(self.dir.path());
        c
    }

    fn replay(&self, file: &str) -> Command {
        let mut c = self.cmd(&[
            "run",
            "--replay",
            self.path(file).to_str().unwrap(),
            "--speed",
            "max",
            "--exit-at-end",
        ]);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    fn run_to_end(&self, file: &str) {
        let out = self.replay(file).output().unwrap();
        assert!(
            out.status.success(),
            "host run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn crash_at(&self, point: &str) {
        let out: Output = self
            .replay("btc.csv")
            .env("HOST_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the failpoint {point} was never reached"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("failpoint"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn status(&self) -> serde_json::Value {
        let out = self.cmd(&["status", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("data/host.db")).unwrap()
    }

    /// Every fill as (time, symbol, action, qty, price, fee, client order id).
    fn fills(&self) -> Vec<FillRow> {
        let c = self.db();
        let mut s = c
            .prepare("SELECT ts, symbol, action, qty, price, fee, client_order_id FROM fills ORDER BY id")
            .unwrap();
        s.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn trades(&self) -> Vec<(String, String, String, i64)> {
        let c = self.db();
        let mut s = c
            .prepare("SELECT symbol, qty, pnl, closed_at FROM trades ORDER BY id")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn account(&self) -> serde_json::Value {
        let mut a = self.status()["account"].clone();
        assert!(a.is_object(), "no account in status");
        a["running"] = serde_json::Value::Null;
        a
    }
}

#[test]
fn a_replay_trades_on_paper_and_status_shows_it() {
    let h = Host::new();
    h.run_to_end("btc.csv");
    let s = h.status();
    let a = &s["account"];
    let trades = h.trades();
    assert!(
        trades.len() >= 5,
        "the strategy should trade on this slice, got {} trades",
        trades.len()
    );
    assert_eq!(a["closed_trades"].as_u64().unwrap() as usize, trades.len());
    assert_eq!(s["scans"].as_i64().unwrap(), BARS as i64);
    // every closed trade has a buy and a sell fill; an open position its buy
    let fills = h.fills();
    let open = a["positions"].as_array().unwrap().len();
    assert_eq!(fills.len(), 2 * trades.len() + open);
    // cash from first principles: capital + realized P&L - cost of what is held
    let dec = |v: &serde_json::Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    let realized: rust_decimal::Decimal = trades
        .iter()
        .map(|t| t.2.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(dec(&a["realized_pnl"]), realized.round_dp(2));
    if open == 0 {
        assert_eq!(
            dec(&a["cash"]),
            (dec(&a["starting_capital"]) + realized).round_dp(2)
        );
    }
    // the event log holds the orders, fills and risk decisions, hash-chained
    let c = h.db();
    let n = |kind: &str| -> i64 {
        c.query_row("SELECT COUNT(*) FROM events WHERE kind = ?1", [kind], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(n("fill") as usize, fills.len());
    assert!(n("risk_decision") >= fills.len() as i64);
    assert_eq!(n("position_closed") as usize, trades.len());
    let out = h.cmd(&["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // text status names the account
    let text = String::from_utf8(h.cmd(&["status"]).output().unwrap().stdout).unwrap();
    assert!(
        text.contains("account:") && text.contains("paper mode"),
        "{text}"
    );
}

#[test]
fn a_run_cut_in_two_ends_like_one_run() {
    let once = Host::new();
    once.run_to_end("btc.csv");
    let twice = Host::new();
    twice.run_to_end("btc-half.csv");
    let half = twice.fills().len();
    twice.run_to_end("btc.csv");
    assert!(
        half > 0 && half < once.fills().len(),
        "the cut should fall between fills"
    );
    assert_eq!(twice.fills(), once.fills());
    assert_eq!(twice.trades(), once.trades());
    assert_eq!(twice.account(), once.account());
}

#[test]
fn crashes_at_any_point_of_an_order_life_lose_and_duplicate_nothing() {
    let reference = Host::new();
    reference.run_to_end("btc.csv");
    let h = Host::new();
    // each point aborts the process (no flush, no destructors) mid-replay; hits
    // count from the restart, which resumes after the last committed bar
    for point in [
        "order.before_record:2", // decided, not recorded
        "fill.before_commit:3",  // filled in memory, not in the database
        "bar.before_commit:600", // a bar's work done, not committed
        "bar.after_commit:300",  // committed, strategy state saved
        "fill.before_commit:10",
    ] {
        h.crash_at(point);
        let reopened = h.status();
        assert!(
            reopened["account"].is_object(),
            "{point}: the account should survive"
        );
    }
    h.run_to_end("btc.csv");
    assert_eq!(h.fills(), reference.fills());
    assert_eq!(h.trades(), reference.trades());
    assert_eq!(h.account(), reference.account());
    let out = h.cmd(&["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigkill_mid_replay_then_restart_matches_an_uninterrupted_run() {
    let reference = Host::new();
    reference.run_to_end("btc.csv");
    let h = Host::new();
    for at in [400i64, 1100, 1700] {
        let mut child = h.replay("btc.csv").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let seen: i64 = rusqlite::Connection::open(h.path("data/host.db"))
                .ok()
                .and_then(|c| {
                    c.query_row("SELECT COUNT(*) FROM candles", [], |r| r.get(0))
                        .ok()
                })
                .unwrap_or(0);
            if seen >= at || child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replay did not reach bar {at}"
            );
            std::thread::yield_now();
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    h.run_to_end("btc.csv");
    assert_eq!(h.fills(), reference.fills());
    assert_eq!(h.trades(), reference.trades());
    assert_eq!(h.account(), reference.account());
}

/// The running host's status through its control socket (None until it listens).
fn live_status(h: &Host) -> Option<serde_json::Value> {
    match host_control::socket::request(
        &h.path("data/host.sock"),
        &host_control::socket::Request::Status,
    )
    .ok()??
    {
        host_control::socket::Reply::Status(s) => {
            Some(serde_json::to_value(*s).expect("status serialises"))
        }
        _ => None,
    }
}

fn wait_for(h: &Host, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = live_status(h) {
            if f(&s) {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn halt_kill_and_resume_from_the_cli_act_on_the_running_host() {
    let h = Host::new();
    // slow enough to act between bars (an hour bar every ~10 ms), ends on its own
    let mut child = h
        .cmd(&[
            "run",
            "--replay",
            h.path("btc.csv").to_str().unwrap(),
            "--speed",
            "360000",
            "--exit-at-end",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&h, "a position", |s| {
        !s["positions"].as_array().unwrap().is_empty()
    });
    let ok = |args: &[&str]| {
        let out = h.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(ok(&["halt"]).contains("halted"));
    let s = wait_for(&h, "the halt", |s| s["halt"].is_string());
    assert_eq!(s["halt"], "halted by hand");
    // kill needs a confirmation
    let refused = h.cmd(&["kill"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(ok(&["kill", "--yes"]).contains("KILLED"));
    let s = wait_for(&h, "positions closed by the kill switch", |s| {
        s["killed"] == true && s["positions"].as_array().unwrap().is_empty()
    });
    assert_eq!(s["open_orders"], 0);
    assert!(ok(&["resume"]).contains("resumed"));
    wait_for(&h, "the resume", |s| {
        s["killed"] == false && s["halt"].is_null()
    });
    let _ = child.kill();
    let _ = child.wait();
    let c = h.db();
    let kill_closes: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM trades WHERE close_reason = 'kill'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        kill_closes >= 1,
        "the kill switch should have closed the position"
    );
    for kind in ["halt", "kill", "resume"] {
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM events WHERE kind = ?1", [kind], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1, "{kind} event");
    }
}

/// Issue 14: the scan loop that blocked on the feed also served every
/// command, so a host on a feed that waits (a replay at `--speed 1`, a quiet
/// market) answered `host status` with "not running" after 10 s. The feed
/// now runs on its own thread: a host whose next bar is an hour away answers
/// status and halt at once.
#[test]
fn a_host_whose_feed_is_silent_still_answers_status_and_halt() {
    let h = Host::new();
    // real time: the second bar is an hour (capped at a minute) after the first
    let mut child = h
        .cmd(&[
            "run",
            "--replay",
            h.path("btc.csv").to_str().unwrap(),
            "--speed",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&h, "the first bar", |s| s["clock"].as_i64() > Some(0));
    let mut waits = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let s = live_status(&h).expect("a host waiting for its feed answers status");
        waits.push(t.elapsed());
        assert!(s["halt"].is_null());
    }
    let out = h.cmd(&["halt"]).output().unwrap();
    assert!(
        out.status.success(),
        "halt while the feed is silent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = live_status(&h).expect("status after the halt");
    assert_eq!(s["halt"], "halted by hand");
    eprintln!("status answered in {waits:?} while the feed was silent");
    let _ = child.kill();
    let _ = child.wait();
    // the feed really was silent: one bar seen in all that time
    let bars: i64 = h
        .db()
        .query_row("SELECT COUNT(*) FROM candles", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bars, 1, "the test needs a feed that stays silent");
}

/// Issue 18: two hosts on one data directory both traded (the socket check
/// was racy). Started together, exactly one runs; the other refuses with a
/// message naming the lock, and the survivor's run is whole.
#[test]
fn two_hosts_started_together_on_one_data_dir_one_refuses() {
    let h = Host::new();
    let spawn = || {
        h.cmd(&[
            "run",
            "--replay",
            h.path("btc.csv").to_str().unwrap(),
            "--speed",
            "max",
            "--exit-at-end",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let ok: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    let refused: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(
        (ok.len(), refused.len()),
        (1, 1),
        "{:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
            .collect::<Vec<_>>()
    );
    let why = String::from_utf8_lossy(&refused[0].stderr);
    assert!(
        why.contains("one host per data directory") && why.contains("host.lock"),
        "{why}"
    );
    // the survivor traded the whole replay exactly as a lone run does
    let lone = Host::new();
    lone.run_to_end("btc.csv");
    assert_eq!(h.fills(), lone.fills());
    assert!(!h.fills().is_empty());
}

/// Issue 18: when `BEGIN IMMEDIATE` failed (another process held the write
/// lock past the 5 s busy timeout) the bar ran in autocommit, half-durable.
/// Another connection holds the write lock for 6 s mid-run, then the host
/// is crashed at `bar.before_commit`: after a restart the run ends exactly
/// like an uninterrupted one.
#[test]
fn a_write_lock_held_for_six_seconds_during_a_bar_then_a_crash_lose_nothing() {
    let reference = Host::new();
    reference.run_to_end("btc.csv");
    let h = Host::new();
    // an hour bar every ~10 ms: the lock lands mid-run
    let child = h
        .cmd(&[
            "run",
            "--replay",
            h.path("btc.csv").to_str().unwrap(),
            "--speed",
            "360000",
            "--exit-at-end",
        ])
        .env("HOST_FAILPOINT", "bar.before_commit:1200")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&h, "a position", |s| {
        !s["positions"].as_array().unwrap().is_empty()
    });
    let blocker = h.db();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let held_at: i64 = blocker
        .query_row("SELECT COUNT(*) FROM candles", [], |r| r.get(0))
        .unwrap();
    std::thread::sleep(Duration::from_secs(6));
    blocker.execute_batch("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("failpoint"),
        "the crash at bar.before_commit never came: {stderr}"
    );
    assert!(held_at < 1_200, "the lock came too late ({held_at} bars)");
    // nothing was lost while the lock was held
    let c = h.db();
    let candles: i64 = c
        .query_row("SELECT COUNT(*) FROM candles", [], |r| r.get(0))
        .unwrap();
    assert!(candles > held_at, "{candles} candles after the lock");
    h.run_to_end("btc.csv");
    assert_eq!(h.fills(), reference.fills());
    assert_eq!(h.trades(), reference.trades());
    assert_eq!(h.account(), reference.account());
}

/// Issue 14: paper trading of several symbols replays one file per symbol and
/// runs the scan of a close once every symbol's bar of that close is in (the
/// backtest's order), so a paper run and a backtest of the same files make
/// the same trades; with one bar late, the scan waits for it.
#[test]
fn a_two_symbol_replay_trades_exactly_like_the_backtest_of_the_same_files() {
    let h = Host::new();
    let settings = format!(
        "symbols = [\"BTCUSD\", \"ETHUSD\"]\n[strategy]\ndefault = \"{}\"\nparams = [[\"fast\", \"5\"], [\"slow\", \"20\"]]\n",
        guest_path("sma-crossover").display()
    );
    std::fs::write(h.path("settings.toml"), settings).unwrap();
    let rows = 800;
    let btc = shared_candles("BTCUSD-1h.csv", 60_000, rows);
    let eth = shared_candles("ETHUSD-1h.csv", 0, 60_000 + rows);
    let eth: Vec<_> = eth
        .into_iter()
        .filter(|c| c.ts >= btc[0].ts && c.ts <= btc[rows - 1].ts)
        .collect();
    assert!(eth.len() > rows / 2, "the two files must overlap");
    write_csv(&h.path("BTCUSD-1h.csv"), &btc);
    write_csv(&h.path("ETHUSD-1h.csv"), &eth);
    let out = h
        .cmd(&[
            "run",
            "--replay",
            h.path("BTCUSD-1h.csv").to_str().unwrap(),
            "--replay",
            h.path("ETHUSD-1h.csv").to_str().unwrap(),
            "--speed",
            "max",
            "--exit-at-end",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = h.db();
    let mut s = c
        .prepare(
            "SELECT symbol, qty, entry_price, exit_price, opened_at, closed_at FROM trades ORDER BY closed_at, symbol",
        )
        .unwrap();
    let paper: Vec<String> = s
        .query_map([], |r| {
            Ok(format!(
                "{},{},{},{},{},{}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let bt = h
        .cmd(&[
            "backtest",
            "--strategy",
            guest_path("sma-crossover").to_str().unwrap(),
            "--data",
            h.path("BTCUSD-1h.csv").to_str().unwrap(),
            "--data",
            h.path("ETHUSD-1h.csv").to_str().unwrap(),
            "--param",
            "fast=5",
            "--param",
            "slow=20",
            "--out",
            h.path("bt").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        bt.status.success(),
        "{}",
        String::from_utf8_lossy(&bt.stderr)
    );
    let csv = std::fs::read_to_string(h.path("bt/trades.csv")).unwrap();
    let mut backtest: Vec<(i64, String, String)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let row = format!("{},{},{},{},{},{}", f[0], f[2], f[3], f[4], f[9], f[10]);
            (f[10].parse().unwrap(), f[0].to_string(), row)
        })
        .collect();
    backtest.sort();
    let backtest: Vec<String> = backtest.into_iter().map(|t| t.2).collect();
    let symbols: std::collections::BTreeSet<&str> =
        paper.iter().filter_map(|t| t.split(',').next()).collect();
    assert_eq!(symbols.len(), 2, "both symbols trade: {paper:?}");
    assert_eq!(paper, backtest, "paper and backtest made different trades");
    // every close scanned once, in order
    let (scans, distinct, ordered): (i64, i64, i64) = c
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT ts), (SELECT COUNT(*) FROM scan_results a JOIN scan_results b ON b.seq = a.seq + 1 WHERE b.ts <= a.ts) FROM scan_results",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(scans, distinct, "a close scanned twice");
    assert_eq!(ordered, 0, "scans out of order");
}

/// Seed 003's nightly data job runs in every mode, inside the orchestration
/// window: a paper replay of 45 days of 5m candles ends with the 5m tier
/// pruned to its 30-day retention (counted from the replay's clock, cut at a
/// day boundary) while every hour of the whole run is kept at 1h.
#[test]
fn the_nightly_tiering_job_prunes_and_keeps_the_hours_in_a_paper_replay() {
    let h = Host::new();
    let days = 45;
    let candles = shared_candles("BTCUSDT-5m.csv", 0, days * 288);
    write_csv(&h.path("BTCUSD-5m.csv"), &candles);
    h.run_to_end("BTCUSD-5m.csv");
    let c = rusqlite::Connection::open(h.path("data/host.db")).unwrap();
    let q = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    let clock = candles.last().unwrap().ts + 300;
    let oldest_5m = q("SELECT MIN(ts) FROM candles WHERE interval = '5m'");
    assert!(
        oldest_5m >= (clock - 31 * 86_400).div_euclid(86_400) * 86_400,
        "5m candles older than the retention are left: oldest {oldest_5m}, clock {clock}"
    );
    assert!(
        q("SELECT COUNT(*) FROM candles WHERE interval = '5m'") < (days * 288) as i64,
        "nothing was pruned"
    );
    let first_hour = candles[0].ts.div_euclid(3_600) * 3_600;
    assert_eq!(
        q("SELECT MIN(ts) FROM candles WHERE interval = '1h'"),
        first_hour,
        "the hours of the pruned days are kept"
    );
    let hours: std::collections::BTreeSet<i64> = candles
        .iter()
        .map(|c| c.ts.div_euclid(3_600) * 3_600)
        .filter(|h| h + 3_600 <= clock)
        .collect();
    assert_eq!(
        q("SELECT COUNT(*) FROM candles WHERE interval = '1h'"),
        hours.len() as i64
    );
}
