//! Backtests through the real sandbox: sma-crossover over a slice of the
//! shared BTCUSD hourly data.

use crate::common;

use common::*;
use host::config::RiskFile;
use host_trading::backtest::{self, BacktestConfig, BacktestReport, Series};
use std::path::{Path, PathBuf};
use trading_core::Interval;

const SKIP: usize = 50_000;
const ROWS: usize = 3_000;

fn series(rows: usize) -> Series {
    Series {
        symbol: "BTCUSD".into(),
        interval: Interval::H1,
        candles: shared_candles("BTCUSD-1h.csv", SKIP, rows),
    }
}

fn config(rows: usize) -> BacktestConfig {
    BacktestConfig::new(
        guest("sma-crossover"),
        vec![series(rows)],
        RiskFile::load(None).unwrap(),
    )
}

fn write_slice(dir: &Path) -> PathBuf {
    let p = dir.join("BTCUSD-1h.csv");
    std::fs::write(&p, trading_core::csv::to_csv(&series(ROWS).candles)).unwrap();
    p
}

fn run(cfg: &BacktestConfig) -> BacktestReport {
    backtest::run(cfg).unwrap()
}

#[test]
fn sma_crossover_trades() {
    let r = run(&config(ROWS));
    assert_eq!(r.bars, ROWS as u64);
    assert!(r.metrics.trade_count > 0, "no trades: {:?}", r.notes);
    assert_eq!(r.metrics.trade_count as usize, r.trades.len());
    assert_eq!(r.strategy.scan_interval_minutes, 60);
    assert_eq!(r.metrics.total_scans, ROWS as u64);
    assert!(r.metrics.total_signals >= r.metrics.acted_signals && r.metrics.acted_signals > 0);
    assert_eq!(r.equity_curve.len(), ROWS);
    // every entry fills at the open of a bar starting at or after its signal
    for t in &r.trades {
        assert!(r
            .signals
            .iter()
            .any(|s| s.ts <= t.opened_at && s.signal.tag == t.tag));
    }
    assert!(r.metrics.market_change_pct.is_some());
    let text = backtest::summary(&r);
    assert!(
        text.contains("BTCUSD") && text.contains("Max drawdown"),
        "{text}"
    );
}

#[test]
fn same_inputs_give_identical_json() {
    let a = serde_json::to_string(&run(&config(1_500))).unwrap();
    let b = serde_json::to_string(&run(&config(1_500))).unwrap();
    assert_eq!(a, b);
}

#[test]
fn no_lookahead_truncated_run_matches_full_run() {
    let full = run(&config(ROWS));
    let cut_rows = 2_000;
    let short = run(&config(cut_rows));
    let t_end = short.end;
    // the signals of the truncated run equal the full run's up to its end
    let upto: Vec<_> = full
        .signals
        .iter()
        .filter(|s| s.ts <= t_end)
        .cloned()
        .collect();
    assert!(!upto.is_empty());
    assert_eq!(short.signals, upto);
    // and the equity curves agree before the truncated run's end-of-data close
    let n = short.equity_curve.len() - 1;
    assert_eq!(short.equity_curve[..n], full.equity_curve[..n]);
    // the same cut through --to
    let mut cfg = config(ROWS);
    cfg.to = Some(t_end);
    let via_to = run(&cfg);
    assert_eq!(via_to.signals, short.signals);
}

#[test]
fn market_view_never_shows_unclosed_candles() {
    let data = backtest::market_data(&[series(500)], None);
    let candles = data.series("BTCUSD", Interval::H1).to_vec();
    for now in [
        candles[10].ts,
        candles[10].ts + 1,
        candles[10].ts + 3_599,
        candles[300].ts + 3_600,
    ] {
        let v = trading_core::MarketView::new(data.clone(), now);
        let seen = v.candles("BTCUSD", Interval::H1, 1_000);
        assert!(seen.iter().all(|c| c.ts + 3_600 <= now));
        assert_eq!(
            seen.len(),
            candles.iter().filter(|c| c.ts + 3_600 <= now).count()
        );
    }
}

#[test]
fn params_change_results() {
    let base = run(&config(ROWS));
    let mut cfg = config(ROWS);
    cfg.params = vec![("fast".into(), "5".into()), ("slow".into(), "20".into())];
    let fast = run(&cfg);
    assert!(fast.metrics.trade_count > 0);
    assert_ne!(base.signals, fast.signals);
    assert_eq!(fast.strategy.params, cfg.params);
    // bad params are refused by the strategy's initialize
    cfg.params = vec![("fast".into(), "30".into()), ("slow".into(), "10".into())];
    let e = backtest::run(&cfg).unwrap_err();
    let msg = backtest::error_chain(&e);
    assert!(msg.contains("initialize"), "{msg}");
}

#[test]
fn walk_forward_folds() {
    let mut cfg = config(ROWS);
    cfg.walk_forward = Some(3);
    let r = run(&cfg);
    let folds = r.walk_forward.as_ref().unwrap();
    assert_eq!(folds.len(), 3);
    for w in folds.windows(2) {
        assert_eq!(w[0].out_of_sample.to, w[1].in_sample.from);
    }
    for f in folds {
        assert_eq!(f.in_sample.to, f.out_of_sample.from);
        assert!(f.in_sample.bars > f.out_of_sample.bars);
    }
    assert!(backtest::summary(&r).contains("WALK-FORWARD"));
}

#[test]
fn csv_loading_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_slice(dir.path());
    let s = backtest::load_csv(&p, None).unwrap();
    assert_eq!(
        (s.symbol.as_str(), s.interval, s.candles.len()),
        ("BTCUSD", Interval::H1, ROWS)
    );
    let other = dir.path().join("data.csv");
    std::fs::copy(&p, &other).unwrap();
    let s = backtest::load_csv(&other, Some("XBT")).unwrap();
    assert_eq!((s.symbol.as_str(), s.interval), ("XBT", Interval::H1));
    std::fs::write(&other, "ts,open,high,low,close,volume\n1,2,1,3,2,0\n").unwrap();
    let e = backtest::load_csv(&other, None).unwrap_err();
    let msg = backtest::error_chain(&e);
    assert!(msg.contains("line 2") && msg.contains("data.csv"), "{msg}");
    assert_eq!(backtest::parse_date("2024-01-31").unwrap(), 1_706_659_200);
    assert_eq!(
        backtest::format_ts(1_706_659_200 + 3_660),
        "2024-01-31 01:01"
    );
    assert!(backtest::parse_date("2024-13-01").is_err());
    assert!(backtest::parse_date("yesterday").is_err());
}

#[test]
fn cli_writes_json_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_slice(dir.path());
    let out = dir.path().join("out");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .current_dir(dir.path())
            .env("HOST_LOG", "error")
            .arg("backtest")
            .arg("--strategy")
            .arg(guest_path("sma-crossover"))
            .arg("--data")
            .arg(&csv)
            .args(["--param", "fast=5", "--param", "slow=20", "--json", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["metrics"]["trade_count"].as_u64().unwrap() > 0);
    for f in ["report.json", "trades.csv", "equity.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let svg = std::fs::read_to_string(out.join("equity.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("polyline") && svg.trim_end().ends_with("</svg>")
    );
    let trades = std::fs::read_to_string(out.join("trades.csv")).unwrap();
    assert_eq!(
        trades.lines().count() as u64,
        1 + v["metrics"]["trade_count"].as_u64().unwrap()
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(file, v);
    // deterministic across processes
    assert_eq!(run().stdout, o.stdout);
    // the text summary
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .current_dir(dir.path())
        .env("HOST_LOG", "error")
        .args(["backtest", "--strategy"])
        .arg(guest_path("sma-crossover"))
        .arg("--data")
        .arg(&csv)
        .args([
            "--from",
            "2020-11-01",
            "--to",
            "2020-12-31",
            "--walk-forward",
            "2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for part in [
        "BACKTEST RESULTS PER SYMBOL",
        "EXIT REASONS",
        "SUMMARY METRICS",
        "WALK-FORWARD",
        "2020-11-01",
    ] {
        assert!(text.contains(part), "{part} missing in\n{text}");
    }
    // stderr is not a terminal here: no progress bar
    assert!(!String::from_utf8_lossy(&o.stderr).contains("backtest ["));
}

/// `--breakdown month --breakdown day`: every trade falls in one period,
/// the periods' P&L sums to the closed P&L, and the text shows both tables
/// beside the report extras (best/worst day, streaks, drawdown, exposure).
#[test]
fn cli_breakdown_periods_add_up_to_the_trades() {
    let dir = tempfile::tempdir().unwrap();
    // the bundled sample (3000 hourly bars), so the test needs no shared data
    let csv = crate::common::root().join("data/sample/BTCUSD-1h.csv");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .current_dir(dir.path())
            .env("HOST_LOG", "error")
            .args(["backtest", "--strategy"])
            .arg(guest_path("sma-crossover"))
            .arg("--data")
            .arg(&csv)
            .args([
                "--param",
                "fast=5",
                "--param",
                "slow=20",
                "--breakdown",
                "month",
                "--breakdown",
                "day",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let trades = v["metrics"]["trade_count"].as_u64().unwrap();
    assert!(trades > 0);
    let net: rust_decimal::Decimal = v["metrics"]["net_pnl"].as_str().unwrap().parse().unwrap();
    let b = v["breakdown"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0][0], "month");
    for (_, rows) in b.iter().map(|x| (&x[0], x[1].as_array().unwrap())) {
        let n: u64 = rows.iter().map(|r| r["trades"].as_u64().unwrap()).sum();
        let pnl: rust_decimal::Decimal = rows
            .iter()
            .map(|r| {
                r["pnl"]
                    .as_str()
                    .unwrap()
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            })
            .sum();
        assert_eq!((n, pnl), (trades, net));
    }
    let x = &v["extras"];
    let exposure = x["exposure"].as_f64().unwrap();
    assert!(exposure > 0.0 && exposure <= 1.0, "{exposure}");
    assert!(x["max_consecutive_losses"].as_u64().is_some());
    assert!(x["best_day"]["pnl"].is_string());
    let o = run(&[]);
    let text = String::from_utf8_lossy(&o.stdout);
    for part in [
        "MONTH BREAKDOWN",
        "DAY BREAKDOWN",
        "Best / worst day",
        "Max consecutive wins / losses",
        "Drawdown (deepest)",
        "Exposure",
    ] {
        assert!(text.contains(part), "{part} missing in\n{text}");
    }
    let bad = run(&["--breakdown", "fortnight"]);
    assert!(!bad.status.success());
}

#[test]
fn halts_latch_unless_resume_is_asked() {
    let mut cfg = config(ROWS);
    // a tight loss-streak limit makes the halt certain
    cfg.risk.max_consecutive_losses = 1;
    let latched = run(&cfg);
    let halts = |r: &BacktestReport| r.notes.iter().filter(|n| n.kind == "halted").count();
    assert_eq!(halts(&latched), 1);
    assert!(latched
        .signals
        .iter()
        .any(|s| s.decision.starts_with("refused: entries halted")));
    cfg.resume_after_hours = Some(24);
    let resumed = run(&cfg);
    assert!(resumed.notes.iter().any(|n| n.kind == "resumed"));
    assert!(halts(&resumed) > 1);
    assert!(resumed.metrics.trade_count > latched.metrics.trade_count);
}

#[test]
fn native_sma_matches_the_component() {
    let cfg = config(ROWS);
    let account = backtest::Account::from_config(&cfg).unwrap();
    let data = backtest::market_data(&cfg.series, None);
    // the component's own source, compiled natively
    let mut native =
        backtest::Native::<sma_crossover::SmaCrossover>::start(&cfg.risk, &["BTCUSD".into()], &[])
            .unwrap();
    let o =
        backtest::simulate(&mut native, &data, &cfg.series, None, None, &account, false).unwrap();
    let wasm = run(&cfg);
    assert_eq!(o.signals, wasm.signals);
    assert_eq!(o.portfolio.closed_trades(), wasm.trades.as_slice());
    assert_eq!(o.equity, wasm.equity_curve);
}

fn host_cmd(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
    c.current_dir(dir)
        .env("HOST_DATA_DIR", dir)
        .env("HOST_LOG", "error");
    c
}

#[test]
fn sweep_runs_every_combination_ranked() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_slice(dir.path());
    let out = dir.path().join("sweep");
    let o = host_cmd(dir.path())
        .args(["backtest", "--strategy"])
        .arg(guest_path("sma-crossover"))
        .arg("--data")
        .arg(&csv)
        .args([
            "--sweep",
            "fast=5..15:5",
            "--sweep",
            "slow=30,40",
            "--param",
            "size_pct=4",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("SWEEP: 6 combinations"), "{text}");
    for h in [
        "params", "trades", "net P&L", "return %", "Sharpe", "max DD %",
    ] {
        assert!(text.contains(h), "{h} missing in\n{text}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let returns: Vec<f64> = rows
        .iter()
        .map(|r| r["return_pct"].as_f64().unwrap())
        .collect();
    assert!(returns.windows(2).all(|w| w[0] >= w[1]), "{returns:?}");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["rank"], i + 1);
        assert_eq!(r["params"][0][0], "size_pct");
        assert!(r["error"].is_null());
    }
    let csv_text = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv_text.lines().count(), 7);
    assert!(csv_text.starts_with("rank,size_pct,fast,slow,trades,"));

    // each row is exactly the single backtest with those parameters
    let row = rows
        .iter()
        .find(|r| r["params"][1][1] == "10" && r["params"][2][1] == "40")
        .unwrap();
    let mut cfg = config(ROWS);
    cfg.params = vec![
        ("size_pct".into(), "4".into()),
        ("fast".into(), "10".into()),
        ("slow".into(), "40".into()),
    ];
    let single = run(&cfg);
    assert_eq!(row["trades"], single.metrics.trade_count);
    assert_eq!(row["return_pct"].as_f64(), single.return_pct);
    assert_eq!(
        row["net_pnl"],
        serde_json::to_value(single.metrics.net_pnl).unwrap()
    );

    // a bad sweep is a clear error
    let o = host_cmd(dir.path())
        .args(["backtest", "--strategy"])
        .arg(guest_path("sma-crossover"))
        .arg("--data")
        .arg(&csv)
        .args(["--sweep", "fast=20..5"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("fast=20..5"));
}

#[test]
fn fail_flags_catch_module_errors_and_pass_clean_runs() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_slice(dir.path());
    let bt = |guest: &str, flags: &[&str]| {
        host_cmd(dir.path())
            .args(["backtest", "--json", "--strategy"])
            .arg(guest_path(guest))
            .arg("--data")
            .arg(&csv)
            .args(flags)
            .output()
            .unwrap()
    };
    // a clean strategy: no module errors, no breaches, flags pass
    let o = bt("sma-crossover", &["--fail-on-trap", "--fail-on-breach"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["module_errors"], 0);
    assert_eq!(v["risk_breach_count"], 0);
    assert_eq!(v["risk_breaches"].as_array().unwrap().len(), 0);

    // a strategy returning NaN sizes: refused output is recorded, and fails the run when asked
    let o = bt("bad-nan-signal", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["module_errors"].as_u64().unwrap() > 0);
    let o = bt("bad-nan-signal", &["--fail-on-trap"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the strategy trapped"), "{err}");

    // a trap that kills the instance fails the run with or without flags
    let o = bt("bad-panic", &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

#[test]
fn bench_backtest_prints_the_three_lines() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_slice(dir.path());
    let wasm_dir = guest_path("sma-crossover").parent().unwrap().to_path_buf();
    for args in [
        vec!["bench", "backtest", csv.to_str().unwrap()],
        vec!["bench", "--backtest", csv.to_str().unwrap()],
    ] {
        let o = host_cmd(dir.path())
            .args(&args)
            .arg("--wasm-dir")
            .arg(&wasm_dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, prefix) in lines.iter().zip(["wasm    ", "native  "]) {
            let n = line
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(" bars/s"))
                .unwrap_or_else(|| panic!("{line:?}"));
            assert!(n.parse::<u64>().unwrap() > 0, "{line}");
        }
        let ratio = lines[2]
            .strip_prefix("ratio ")
            .and_then(|r| r.strip_suffix('×'))
            .unwrap_or_else(|| panic!("{:?}", lines[2]));
        assert!(ratio.parse::<f64>().unwrap() > 0.0);
    }
}

/// Issue 14: a backtest of daily candles with a strategy that reads hourly
/// ones made 0 trades without a word. It says so now, and the strategy's
/// `interval` parameter makes it read (and scan) the daily candles.
#[test]
fn a_daily_file_with_an_hourly_strategy_says_so_and_interval_1d_trades_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("BTCUSD-1d.csv");
    write_csv(&csv, &shared_candles("BTCUSD-1d.csv", 1_000, 900));
    let run = |params: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
        c.env("HOST_LOG", "error")
            .arg("backtest")
            .arg("--strategy")
            .arg(guest_path("sma-crossover"))
            .arg("--data")
            .arg(&csv)
            .args(["--param", "fast=5", "--param", "slow=20", "--json"]);
        for p in params {
            c.args(["--param", p]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v, String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (hourly, err) = run(&[]);
    assert_eq!(hourly["trades"].as_array().map_or(0, |t| t.len()), 0);
    assert!(
        err.contains("asked for 1h candles of BTCUSD; the data has none"),
        "{err}"
    );
    assert!(hourly["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["kind"] == "missing_interval"));
    let (daily, err) = run(&["interval=1d"]);
    assert!(!err.contains("the data has none"), "{err}");
    assert!(
        daily["trades"].as_array().unwrap().len() > 3,
        "{}",
        daily["trades"]
    );
}

/// The value of attribute `name` in one SVG element line.
fn attr<'a>(line: &'a str, name: &str) -> &'a str {
    let k = format!(" {name}=\"");
    let i = line.find(&k).map(|i| i + k.len()).unwrap();
    line[i..].split('"').next().unwrap()
}

/// equity.svg on the bundled sample: one entry marker per trade's entry and
/// one exit marker per exit, each at the fill's time and price, inside the chart.
#[test]
fn equity_svg_marks_every_entry_and_exit_on_the_price() {
    let dir = tempfile::tempdir().unwrap();
    let csv = crate::common::root().join("data/sample/BTCUSD-1h.csv");
    let out = dir.path().join("out");
    let o = host_cmd(dir.path())
        .args(["backtest", "--strategy"])
        .arg(guest_path("sma-crossover"))
        .arg("--data")
        .arg(&csv)
        .args(["--param", "fast=5", "--param", "slow=20", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let (start, end) = (v["start"].as_i64().unwrap(), v["end"].as_i64().unwrap());
    let trades = std::fs::read_to_string(out.join("trades.csv")).unwrap();
    // symbol,side,qty,entry_price,exit_price,pnl,pnl_pct,fees,intent,opened_at,closed_at,...
    let rows: Vec<Vec<String>> = trades
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert!(rows.len() > 5, "{trades}");
    let dec = |x: &str| x.parse::<rust_decimal::Decimal>().unwrap().normalize();
    let mut want_entries: Vec<(i64, rust_decimal::Decimal)> = rows
        .iter()
        .map(|r| (r[9].parse().unwrap(), dec(&r[3])))
        .collect();
    want_entries.dedup();
    let want_exits: Vec<(i64, rust_decimal::Decimal)> = rows
        .iter()
        .map(|r| (r[10].parse().unwrap(), dec(&r[4])))
        .collect();
    let svg = std::fs::read_to_string(out.join("equity.svg")).unwrap();
    assert!(svg.trim_end().ends_with("</svg>"));
    let marks = |class: &str| -> Vec<(i64, rust_decimal::Decimal)> {
        svg.lines()
            .filter(|l| l.starts_with(&format!("<path class=\"{class}\"")))
            .map(|l| {
                let ts: i64 = attr(l, "data-ts").parse().unwrap();
                assert!((start..=end).contains(&ts), "{ts} outside {start}..{end}");
                let x: f64 = attr(l, "d")[1..]
                    .split(',')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    (56.0..=904.0).contains(&x),
                    "marker x {x} outside the frame"
                );
                (ts, dec(attr(l, "data-price")))
            })
            .collect()
    };
    let (entries, exits) = (marks("entry"), marks("exit"));
    assert_eq!(entries, want_entries);
    assert_eq!(exits, want_exits);
    let fills = v["prices"][0]["fills"].as_array().unwrap();
    assert_eq!(fills.len(), entries.len() + exits.len());
    assert!(svg.contains("class=\"legend\"") && svg.contains("class=\"close\""));
}

/// `--sweep fast=5..20:5 --sweep slow=20..60:10`: sweep.svg has one cell per
/// grid point, each printing its combination's return as the table rounds it.
#[test]
fn sweep_svg_has_a_cell_per_grid_point_with_its_return() {
    let dir = tempfile::tempdir().unwrap();
    let csv = crate::common::root().join("data/sample/BTCUSD-1h.csv");
    let out = dir.path().join("sweep");
    let o = host_cmd(dir.path())
        .args(["backtest", "--strategy"])
        .arg(guest_path("sma-crossover"))
        .arg("--data")
        .arg(&csv)
        .args([
            "--sweep",
            "fast=5..20:5",
            "--sweep",
            "slow=20..60:10",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    let svg = std::fs::read_to_string(out.join("sweep.svg")).unwrap();
    let cells: Vec<&str> = svg
        .lines()
        .filter(|l| l.starts_with("<g class=\"cell"))
        .collect();
    assert_eq!(cells.len(), 20, "{svg}");
    for r in rows {
        let p = r["params"].as_array().unwrap();
        let key = format!(
            "fast={} slow={}",
            p[0][1].as_str().unwrap(),
            p[1][1].as_str().unwrap()
        );
        let cell: Vec<&&str> = cells
            .iter()
            .filter(|l| attr(l, "data-params") == key)
            .collect();
        assert_eq!(cell.len(), 1, "{key}");
        let printed = cell[0]
            .rsplit("\">")
            .next()
            .unwrap()
            .trim_end_matches("</text></g>");
        let want = r["return_pct"]
            .as_f64()
            .map_or_else(|| "n/a".to_string(), |x| format!("{x:.2}"));
        assert_eq!(printed, want, "{key}");
    }
}
