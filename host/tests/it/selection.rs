//! Honest selection end to end, on the host's own candle store filled by the
//! real binary's replays (synthetic hourly markets, so each scenario's
//! figures are known): a candidate whose whole edge is one lucky day is
//! refused by the significance test, with the test, the trial count and the
//! p-value in the report; a candidate that passes runs in shadow beside the
//! incumbent on the bars of later `host run --replay` processes (on the
//! feed's clock, across a restart), never sends an order, shows in `host
//! status`, and is promoted only after its shadow days; a deployed version
//! that trails its expectation is rolled back automatically, with an alert
//! and an `auto_rollback` row in the hash-chained log.

use crate::common;

use common::{guest_path, root, write_csv};
use host::config::{RiskFile, Settings};
use host_control::Paths;
use host_orchestrator::{self as orch, CycleOptions, CycleOutcome, ProposerChoice};
use rusqlite::Connection;
use std::path::PathBuf;
use trading_core::Candle;

/// Always long: buys whenever it holds nothing. Deterministic in the
/// history it is shown, so it passes every screen.
const LONG: &str = "use guest_sdk::{signal, Action, Init, MarketView, Portfolio, Signal, Strategy};
#[derive(Default)]
pub struct Long { symbols: Vec<String> }
impl Strategy for Long {
    fn initialize(&mut self, init: &Init) -> Result<(), String> { self.symbols = init.symbols.clone(); Ok(()) }
    fn scan_interval_minutes(&self) -> u32 { 60 }
    fn analyze(&mut self, _now: i64, p: &Portfolio, _m: &dyn MarketView) -> Vec<Signal> {
        self.symbols.iter().filter(|s| p.position(s).is_none()).map(|s| signal(s, Action::Buy, 10.0)).collect()
    }
}
guest_sdk::export_strategy!(Long);
";

/// Starts on a day boundary (2024-01-01 00:00 UTC).
const T0: i64 = 1_704_067_200;

/// `hours` hourly candles from `start` at `price`, each hour moving by
/// `drift` (a fraction) plus a deterministic wiggle of `noise`; `jump`
/// multiplies the price once at that hour.
fn market(
    start: i64,
    hours: usize,
    price: f64,
    drift: f64,
    noise: f64,
    jump: Option<(i64, f64)>,
) -> Vec<Candle> {
    let mut p = price;
    (0..hours)
        .map(|h| {
            let ts = start + h as i64 * 3_600;
            let open = p;
            let wiggle = (((h * 7_919) % 17) as f64 / 8.0 - 1.0) * noise;
            p *= 1.0 + drift + wiggle;
            if let Some((at, k)) = jump {
                if at == ts {
                    p *= k;
                }
            }
            Candle {
                ts,
                open,
                high: open.max(p) * 1.000_5,
                low: open.min(p) * 0.999_5,
                close: p,
                volume: 10.0,
            }
        })
        .collect()
}

fn candidates_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("orchestrator-candidates")
}

/// A scratch host: settings (counter as the incumbent), data and archive directories.
struct Host {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Host {
    fn new(orchestrator: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("settings.toml");
        std::fs::write(
            &config,
            format!(
                "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = {:?}\n[orchestrator]\nhistory_bars = 3000\nholdout_bars = 120\n\
                 target_dir = {:?}\nstrategy_document = {:?}\nmarket_analysis = {:?}\ntrade_performance = {:?}\ndata = []\n{orchestrator}\n",
                guest_path("counter"),
                candidates_target(),
                dir.path().join("doc.md"),
                guest_path("market-analysis"),
                guest_path("trade-performance"),
            ),
        )
        .unwrap();
        Host { dir, config }
    }

    fn paths(&self) -> Paths {
        Paths {
            data_dir: self.dir.path().join("data"),
            archive_dir: self.dir.path().join("archive"),
        }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
        c.args(args)
            .env("HOST_DATA_DIR", self.paths().data_dir)
            .env("HOST_ARCHIVE_DIR", self.paths().archive_dir)
            .env("HOST_CONFIG", &self.config)
            .env("HOST_LOG", "warn")
            .env_remove("ANTHROPIC_API_KEY")
            .current_dir(root());
        c
    }

    /// `host run --replay` of `candles` to their end: the feed's clock drives every job.
    fn replay(&self, name: &str, candles: &[Candle]) {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let csv = d.join("BTCUSD-1h.csv");
        write_csv(&csv, candles);
        let out = self
            .cmd(&[
                "run",
                "--replay",
                csv.to_str().unwrap(),
                "--speed",
                "max",
                "--exit-at-end",
                "--api-addr",
                "off",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn db(&self) -> Connection {
        host_store::db::open(&self.paths().db()).unwrap()
    }

    /// One cycle in this process on the store's candles, proposing `source`.
    fn cycle(&self, source: &str, now: i64) -> orch::CycleReport {
        let settings = Settings::load(Some(&self.config)).unwrap();
        let risk = RiskFile::load(None).unwrap();
        let paths = self.paths();
        let opts = CycleOptions {
            deployer: std::sync::Arc::new(host_control::SocketOrOffline {
                paths: paths.clone(),
                runtime: host_sandbox::Runtime::new(settings.sandbox.clone(), None).unwrap(),
                risk: risk.clone(),
                symbols: settings.symbols.clone(),
            }),
            paths,
            market: settings.market(),
            orchestrator: settings.orchestrator.clone(),
            risk,
            repo_root: root(),
            proposer: ProposerChoice::Offline,
            seed: 1,
            trigger: "test".into(),
            now: chrono::DateTime::from_timestamp(now, 0).unwrap(),
            api_key: None,
        };
        let conn = self.db();
        let mut p = Scripted(source.to_string());
        orch::run_cycle_with(&opts, &conn, &mut p).unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// Proposes one fixed source and approves it.
struct Scripted(String);

impl orch::Proposer for Scripted {
    fn propose(
        &mut self,
        _: &Connection,
        _: &orch::Context,
    ) -> Result<orch::Proposal, orch::OrchestratorError> {
        let mut p = orch::proposer::propose(1, None);
        p.decision = orch::DecisionKind::Restructure;
        p.template = "scripted".into();
        p.params = Vec::new();
        p.rationale = "test candidate".into();
        p.source = self.0.clone();
        Ok(p)
    }
    fn review(
        &mut self,
        _: &Connection,
        _: &orch::Context,
        _: &orch::Proposal,
    ) -> Result<Result<(), String>, orch::OrchestratorError> {
        Ok(Ok(()))
    }
}

fn last_close(c: &[Candle]) -> i64 {
    c.last().unwrap().ts + 3_600
}

#[test]
fn a_candidate_that_wins_by_chance_on_one_window_is_refused_by_the_significance_test() {
    let host = Host::new("shadow_days = 0.0\nmin_significance_days = 10");
    // 60 flat days with a tiny wiggle; on one day inside an out-of-sample
    // window the price jumps 25 % and stays there
    let hours = 60 * 24;
    let flat = market(T0, hours, 40_000.0, 0.0, 0.000_2, None);
    let dev_end = orch::evaluate::split(
        &[trading_core::Series {
            symbol: "BTCUSD".into(),
            interval: trading_core::Interval::H1,
            candles: flat.clone(),
        }],
        120,
    )
    .unwrap();
    let folds = trading_core::csv::walk_forward(T0, dev_end, 6).unwrap();
    let oos = &folds[2].out_of_sample;
    let jump_at = (oos.start + (oos.end - oos.start) / 2).div_euclid(3_600) * 3_600;
    let candles = market(T0, hours, 40_000.0, 0.0, 0.000_2, Some((jump_at, 1.25)));
    host.replay("history", &candles);

    let report = host.cycle(LONG, last_close(&candles));
    let sel = report.figures.selection.as_ref().unwrap();
    assert_eq!(
        sel.data_source,
        Some(orch::data::DataSource::HostStore),
        "the cycle tests on the host's own candles"
    );
    let cand = sel.candidate.as_ref().unwrap();
    let inc = sel.incumbent.as_ref().unwrap();
    assert_eq!(cand.folds.len(), 6);
    // it beats the incumbent out of sample, as the old mean-Sharpe gate asked ...
    assert!(
        cand.daily_sharpe.unwrap() > inc.daily_sharpe.unwrap_or(0.0),
        "{cand:#?}"
    );
    assert!(cand.mean_daily_return_pct.unwrap() > 0.0);
    // ... but all of it on one day: the bootstrap cannot tell it from luck
    let s = sel.significance.as_ref().unwrap();
    match &report.outcome {
        CycleOutcome::Rejected {
            rejection:
                orch::Rejection::NotSignificant {
                    test,
                    trials,
                    p_value,
                    ..
                },
        } => {
            assert!(test.contains("stationary bootstrap"), "{test}");
            assert_eq!(*trials, 1);
            assert!(p_value.unwrap() > 0.05, "{p_value:?}");
            assert_eq!(*p_value, s.p_value);
        }
        other => panic!("expected a significance refusal, got {other:?}\n{s:#?}"),
    }
    assert!(s.days >= 10 && !s.passed);
    // the report names the test, the trial count and the p-value; the trial is stored
    let stored: String = host
        .db()
        .query_row("SELECT report FROM orchestrator_runs", [], |r| r.get(0))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let sig = &v["figures"]["selection"]["significance"];
    assert_eq!(sig["trials"], 1);
    assert_eq!(
        sig["test"], "stationary_bootstrap_and_deflated_sharpe",
        "{sig}"
    );
    assert!(sig["p_value"].as_f64().unwrap() > 0.05);
    assert_eq!(v["outcome"]["rejection"]["reason"], "not_significant");
    assert_eq!(host.count("SELECT COUNT(*) FROM selection_trials"), 1);
    // nothing deployed: the counter is still the only version
    assert_eq!(host.count("SELECT COUNT(*) FROM strategy_versions"), 1);
    // the next candidate counts the first as a trial
    let second = host.cycle(LONG, last_close(&candles) + 3_600);
    let s2 = second.figures.selection.unwrap().significance.unwrap();
    assert_eq!(s2.trials, 2);
}

#[test]
fn a_passing_candidate_is_promoted_only_after_its_shadow_days_and_never_sends_an_order() {
    let host =
        Host::new("shadow_days = 2.0\nshadow_tolerance_pct = 1.0\nmin_significance_days = 10");
    // a steady market rising about 1 % a day: always long beats a strategy that never trades
    let all = market(T0, 100 * 24, 40_000.0, 0.000_4, 0.000_8, None);
    let (history, later) = all.split_at(90 * 24);
    host.replay("history", history);
    let report = host.cycle(LONG, last_close(history));
    let shadow_id = match report.outcome {
        CycleOutcome::Shadow { shadow_id, days } => {
            assert_eq!(days, 2.0);
            shadow_id
        }
        other => panic!(
            "expected a shadow, got {other:?}\n{:#?}",
            report.figures.selection
        ),
    };
    let sig = report.figures.selection.unwrap().significance.unwrap();
    assert!(sig.passed && sig.p_value.unwrap() <= 0.05, "{sig:?}");
    // not deployed yet: the counter (v1) is still the only version
    assert_eq!(host.count("SELECT COUNT(*) FROM strategy_versions"), 1);

    // one day of live bars: picked up, running, signals recorded, nothing sent
    let (day1, rest) = later.split_at(30);
    host.replay("day1", day1);
    let started: i64 = host
        .db()
        .query_row(
            "SELECT started_at FROM shadow_candidates WHERE id = ?1",
            [shadow_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(started, day1[0].ts + 3_600, "picked up at the first bar");
    let out = host.cmd(&["status", "--json"]).output().unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["shadows"][0]["id"], shadow_id, "{st}");
    assert_eq!(st["shadows"][0]["state"], "running");
    assert!(st["shadows"][0]["candidate_return_pct"].as_f64().unwrap() > 0.0);
    assert!(host.count("SELECT COUNT(*) FROM shadow_signals WHERE decision = 'approved'") >= 1);
    assert_eq!(
        host.count("SELECT COUNT(*) FROM orders"),
        0,
        "a shadow never sends an order"
    );
    assert_eq!(host.count("SELECT COUNT(*) FROM strategy_versions"), 1);

    // a restarted host rebuilds the shadow from the stored candles and finishes its days
    host.replay("rest", rest);
    let (state, version, decided): (String, i64, i64) = host
        .db()
        .query_row(
            "SELECT status, version, decided_at FROM shadow_candidates WHERE id = ?1",
            [shadow_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), version), ("promoted", 2));
    assert_eq!(
        decided,
        started + 2 * 86_400,
        "promoted when its days were over, not before"
    );
    let promoted_at: i64 = host
        .db()
        .query_row(
            "SELECT ts FROM events WHERE kind = 'shadow_promoted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(promoted_at, decided);
    let active = host_store::archive::active(&host.db()).unwrap().unwrap();
    assert_eq!(active.version, 2);
    assert!(
        active.origin.starts_with("orchestrator "),
        "{}",
        active.origin
    );
    // the promoted strategy trades from then on, on the host's own account
    assert!(host.count("SELECT COUNT(*) FROM orders") >= 1);
    assert_eq!(
        host.count(&format!(
            "SELECT COUNT(*) FROM orders WHERE created_ts <= {promoted_at}"
        )),
        0
    );
    // its expectation is recorded for the rollback rule
    let basis: String = host
        .db()
        .query_row(
            "SELECT basis FROM deploy_expectations WHERE version = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(basis, "backtest+shadow");
}

#[test]
fn a_deployed_version_that_trails_its_expectation_is_rolled_back_with_an_alert_and_audit_row() {
    let host = Host::new(
        "shadow_days = 0.0\nmin_significance_days = 10\nrollback_underperform_pct = 0.2\nrollback_min_days = 1.0\nrollback_min_trades = 0",
    );
    let rising = market(T0, 90 * 24, 40_000.0, 0.000_4, 0.000_8, None);
    host.replay("history", &rising);
    let report = host.cycle(LONG, last_close(&rising));
    assert_eq!(
        report.outcome,
        CycleOutcome::Deployed {
            version: 2,
            live: false
        },
        "{:#?}",
        report.figures.selection
    );
    let expected: f64 = host
        .db()
        .query_row(
            "SELECT return_pct_per_day FROM deploy_expectations WHERE version = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(expected > 0.0);
    // then the market turns: about −3 % a day
    let p = rising.last().unwrap().close;
    let falling = market(last_close(&rising), 3 * 24, p, -0.001_2, 0.000_4, None);
    host.replay("falling", &falling);
    let db = host.db();
    let active = host_store::archive::active(&db).unwrap().unwrap();
    assert_eq!(active.version, 1, "rolled back to the counter");
    let (status, note): (String, String) = db
        .query_row(
            "SELECT status, note FROM strategy_versions WHERE version = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, "rolled_back");
    assert!(note.contains("expected"), "{note}");
    // the audit row, in the hash-chained log, and the alert
    let (ts, detail): (i64, String) = db
        .query_row(
            "SELECT ts, detail FROM events WHERE kind = 'auto_rollback'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let d: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(d["version"], 2);
    assert_eq!(d["reason"]["reason"], "trails_backtest");
    assert!(d["live"]["days"].as_f64().unwrap() >= 1.0);
    assert!(
        ts >= last_close(&rising) + 86_400,
        "judged after a day, not before"
    );
    let alerts: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'alert' AND detail LIKE '%automatic rollback to v1%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(alerts, 1);
    let rolled: Option<i64> = db
        .query_row(
            "SELECT rolled_back_at FROM deploy_expectations WHERE version = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(rolled.is_some());
    assert!(host_store::events::verify(&db).unwrap() > 0);
}
