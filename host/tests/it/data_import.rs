//! The candle store through the real `host` binary and a real SQLite file:
//! import, idempotent re-import, malformed rows, aggregation with gaps,
//! pruning, and a backtest from a stored symbol.

use crate::common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use trading_core::{Candle, Interval};

fn host(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .current_dir(data_dir)
        .env("HOST_DATA_DIR", data_dir)
        .env("HOST_LOG", "error")
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn list(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&host(dir, &["data", "list", "--json"]))).unwrap()
}

fn stored(dir: &Path, symbol: &str, interval: Interval) -> Vec<Candle> {
    let conn = host_store::db::open(&dir.join("host.db")).unwrap();
    host_store::candles::load(&conn, symbol, interval, None, None).unwrap()
}

fn c(ts: i64, open: f64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
    Candle {
        ts,
        open,
        high,
        low,
        close,
        volume,
    }
}

#[test]
fn import_is_idempotent_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = shared_candles("BTCUSD-1h.csv", 0, 2_000);
    let csv = d.join("BTCUSD-1h.csv");
    std::fs::write(&csv, trading_core::csv::to_csv(&rows)).unwrap();
    let p = csv.to_str().unwrap();

    let out = ok(&host(d, &["data", "import", p]));
    assert!(
        out.contains("BTCUSD 1h: 2000 rows: 2000 inserted, 0 updated, 0 unchanged"),
        "{out}"
    );
    let out = ok(&host(d, &["data", "import", p]));
    assert!(
        out.contains("2000 rows: 0 inserted, 0 updated, 2000 unchanged"),
        "{out}"
    );
    assert_eq!(stored(d, "BTCUSD", Interval::H1), rows);

    // a corrected candle replaces the stored one, the rest stays
    let mut fixed = rows.clone();
    fixed[10].volume += 1.0;
    std::fs::write(&csv, trading_core::csv::to_csv(&fixed)).unwrap();
    let out = ok(&host(d, &["data", "import", p]));
    assert!(
        out.contains("0 inserted, 1 updated, 1999 unchanged"),
        "{out}"
    );
    assert_eq!(stored(d, "BTCUSD", Interval::H1), fixed);

    // symbol and interval can be given for a file named otherwise
    let other = d.join("export.csv");
    std::fs::write(&other, trading_core::csv::to_csv(&rows[..50])).unwrap();
    ok(&host(
        d,
        &[
            "data",
            "import",
            other.to_str().unwrap(),
            "--symbol",
            "XBTUSD",
            "--interval",
            "1h",
        ],
    ));
    let l = list(d);
    assert_eq!(l.as_array().unwrap().len(), 2);
    assert_eq!(l[0]["symbol"], "BTCUSD");
    assert_eq!(l[0]["interval"], "1h");
    assert_eq!(l[0]["count"], 2000);
    assert_eq!(l[0]["first"], rows[0].ts);
    assert_eq!(l[0]["last"], rows[1999].ts);
    assert_eq!(l[1]["symbol"], "XBTUSD");
    assert_eq!(l[1]["count"], 50);
    let text = ok(&host(d, &["data", "list"]));
    assert!(
        text.contains("BTCUSD") && text.contains("2000") && text.contains("2013-10-06"),
        "{text}"
    );
}

#[test]
fn malformed_row_names_file_and_line_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = shared_candles("ETHUSD-1h.csv", 0, 500);
    let mut text = trading_core::csv::to_csv(&rows);
    // line 1 is the header: row 300 is line 301
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[300] = format!("{},1.0,2.0,abc,1.5,3", rows[299].ts);
    text = lines.join("\n") + "\n";
    let csv = d.join("ETHUSD-1h.csv");
    std::fs::write(&csv, &text).unwrap();

    let o = host(d, &["data", "import", csv.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ETHUSD-1h.csv") && err.contains("line 301") && err.contains("low"),
        "{err}"
    );
    assert_eq!(list(d).as_array().unwrap().len(), 0, "nothing may land");

    // a timestamp off the interval grid is refused too, with its line
    let mut lines: Vec<String> = trading_core::csv::to_csv(&rows)
        .lines()
        .map(str::to_string)
        .collect();
    let r = rows[199];
    lines[200] = format!(
        "{},{},{},{},{},{}",
        r.ts + 60,
        r.open,
        r.high,
        r.low,
        r.close,
        r.volume
    );
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let o = host(d, &["data", "import", csv.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("line 201") && err.contains("aligned"),
        "{err}"
    );
    assert_eq!(list(d).as_array().unwrap().len(), 0);

    // an unknown interval and a missing file are clear errors
    let o = host(
        d,
        &["data", "import", csv.to_str().unwrap(), "--interval", "2h"],
    );
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("2h"));
    let o = host(d, &["data", "import", "nope-1h.csv"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("nope-1h.csv"));
}

/// 5m bars over two days: hour 0 complete, hour 1 missing (a gap), hour 2
/// with three bars, then nothing until day 1 hour 0, where the data ends
/// in the middle of the hour.
fn five_minute_bars() -> Vec<Candle> {
    let mut v = Vec::new();
    for k in 0..12 {
        let ts = k * 300;
        let base = 100.0 + k as f64;
        v.push(c(ts, base, base + 2.0, base - 1.0, base + 1.0, 1.0));
    }
    v.push(c(7_200, 50.0, 55.0, 49.0, 54.0, 2.0));
    v.push(c(7_500, 54.0, 60.0, 53.0, 58.0, 2.0));
    v.push(c(8_100, 58.0, 59.0, 40.0, 41.0, 2.0));
    v.push(c(86_400, 70.0, 71.0, 69.0, 70.5, 1.0));
    v.push(c(86_700, 70.5, 72.0, 70.0, 71.0, 1.0));
    v
}

#[test]
fn aggregation_builds_coarser_tiers_and_keeps_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csv = d.join("TEST-5m.csv");
    std::fs::write(&csv, trading_core::csv::to_csv(&five_minute_bars())).unwrap();
    ok(&host(d, &["data", "import", csv.to_str().unwrap()]));
    let out = ok(&host(d, &["data", "aggregate", "--symbol", "TEST"]));
    assert!(
        out.contains("1h 2 inserted") && out.contains("1d 1 inserted"),
        "{out}"
    );

    let hours = stored(d, "TEST", Interval::H1);
    assert_eq!(
        hours,
        vec![
            // hour 0: open of the first bar, extremes, close of the last, summed volume
            c(0, 100.0, 113.0, 99.0, 112.0, 12.0),
            // hour 1 had no bars: no candle; hour 2 from its three bars
            c(7_200, 50.0, 60.0, 40.0, 41.0, 6.0),
            // day 1 hour 0 is still in progress (the data ends in it): not built
        ]
    );
    let days = stored(d, "TEST", Interval::D1);
    assert_eq!(days, vec![c(0, 100.0, 113.0, 40.0, 41.0, 18.0)]);

    // running it again changes nothing
    let out = ok(&host(d, &["data", "aggregate"]));
    assert!(
        out.contains(
            "TEST: 1h 0 inserted, 0 updated, 2 unchanged; 1d 0 inserted, 0 updated, 1 unchanged"
        ),
        "{out}"
    );

    // more bars arrive: day 1 hour 0 completes and is built, day 1 still runs
    let mut more = five_minute_bars();
    for k in 2..13 {
        more.push(c(86_400 + k * 300, 71.0, 73.0, 70.0, 72.0, 1.0));
    }
    std::fs::write(&csv, trading_core::csv::to_csv(&more)).unwrap();
    let out = ok(&host(d, &["data", "import", csv.to_str().unwrap()]));
    assert!(out.contains("11 inserted"), "{out}");
    ok(&host(d, &["data", "aggregate", "--symbol", "TEST"]));
    let hours = stored(d, "TEST", Interval::H1);
    assert_eq!(hours.len(), 3);
    assert_eq!(hours[2], c(86_400, 70.0, 73.0, 69.0, 72.0, 12.0));
    assert_eq!(stored(d, "TEST", Interval::D1).len(), 1);
}

#[test]
fn prune_deletes_by_age_per_tier() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let day = 86_400;
    let bars5: Vec<Candle> = (0..40)
        .map(|k| c(k * day, 10.0, 11.0, 9.0, 10.0, 1.0))
        .collect();
    let bars1h: Vec<Candle> = (0..40)
        .map(|k| c(k * day + 3_600, 10.0, 11.0, 9.0, 10.0, 1.0))
        .collect();
    let bars1d: Vec<Candle> = (0..40)
        .map(|k| c(k * day, 10.0, 11.0, 9.0, 10.0, 1.0))
        .collect();
    for (name, bars, iv) in [
        ("P.csv", &bars5, "5m"),
        ("Q.csv", &bars1h, "1h"),
        ("R.csv", &bars1d, "1d"),
    ] {
        let p = d.join(name);
        std::fs::write(&p, trading_core::csv::to_csv(bars)).unwrap();
        ok(&host(
            d,
            &[
                "data",
                "import",
                p.to_str().unwrap(),
                "--symbol",
                "X",
                "--interval",
                iv,
            ],
        ));
    }
    let now = (40 * day + 7_200).to_string();
    let out = ok(&host(
        d,
        &[
            "data",
            "prune",
            "--keep-5m",
            "10",
            "--keep-1h",
            "20",
            "--now",
            &now,
        ],
    ));
    // the cut is rounded down to a day: 5m keeps days 30..39, 1h days 20..39
    assert!(out.contains("pruned 5m 30, 1h 20, 1d 0"), "{out}");
    assert_eq!(stored(d, "X", Interval::M5).first().unwrap().ts, 30 * day);
    assert_eq!(stored(d, "X", Interval::M5).len(), 10);
    assert_eq!(stored(d, "X", Interval::H1).len(), 20);
    assert_eq!(stored(d, "X", Interval::D1).len(), 40);
    let o = host(d, &["data", "prune", "--keep-1d", "soon"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("soon"));
}

#[test]
fn backtest_from_the_store_equals_backtest_from_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = shared_candles("BTCUSD-1h.csv", 50_000, 2_500);
    let csv = d.join("BTCUSD-1h.csv");
    std::fs::write(&csv, trading_core::csv::to_csv(&rows)).unwrap();
    ok(&host(d, &["data", "import", csv.to_str().unwrap()]));
    let wasm = guest_path("sma-crossover");
    let run = |data: &str| {
        ok(&host(
            d,
            &[
                "backtest",
                "--strategy",
                wasm.to_str().unwrap(),
                "--data",
                data,
                "--param",
                "fast=5",
                "--param",
                "slow=20",
                "--json",
            ],
        ))
    };
    let from_csv = run(csv.to_str().unwrap());
    let from_store = run("BTCUSD");
    let v: serde_json::Value = serde_json::from_str(&from_store).unwrap();
    assert!(v["metrics"]["trade_count"].as_u64().unwrap() > 0);
    assert_eq!(from_csv, from_store);

    // a tier or symbol that is not stored is a clear error
    let o = host(
        d,
        &[
            "backtest",
            "--strategy",
            wasm.to_str().unwrap(),
            "--data",
            "BTCUSD",
            "--interval",
            "1d",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no 1d candles stored for BTCUSD"),
        "{err}"
    );
    let o = host(
        d,
        &[
            "backtest",
            "--strategy",
            wasm.to_str().unwrap(),
            "--data",
            "ETHUSD",
        ],
    );
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("ETHUSD"));
}
