//! Both analysis components run in the sandbox against a real, seeded SQLite
//! database on a read-only connection, and report figures checked by hand.

use crate::common;

use common::guest;
use host_sandbox::bindings::{MetricValue, Report};
use host_sandbox::{open_read_only, Limits, Runtime};
use rusqlite::params;

const H: i64 = 3_600;
const NOW: i64 = 1_700_000_000 - 1_700_000_000 % H;

fn num(r: &Report, section: &str, key: &str) -> f64 {
    match r
        .metrics
        .iter()
        .find(|m| m.section == section && m.key == key)
        .map(|m| &m.value)
    {
        Some(MetricValue::Number(x)) => *x,
        other => panic!("{section}/{key}: {other:?} in {r:#?}"),
    }
}

fn text(r: &Report, section: &str, key: &str) -> String {
    match r
        .metrics
        .iter()
        .find(|m| m.section == section && m.key == key)
        .map(|m| &m.value)
    {
        Some(MetricValue::Text(x)) => x.clone(),
        other => panic!("{section}/{key}: {other:?}"),
    }
}

fn seed(path: &std::path::Path) {
    let conn = host_store::db::open(path).unwrap();
    let start = NOW - 300 * H;
    // AAA: 300 hourly candles rising 0.1 % an hour, three missing in a row
    // (one gap of 4 hours); BBB: the same prices doubled; a candle newer
    // than NOW that no module may count.
    for i in 0..301i64 {
        if (100..103).contains(&i) {
            continue;
        }
        let ts = start + i * H;
        let close = 100.0 * 1.001f64.powi(i as i32);
        for (sym, k) in [("AAA", 1.0), ("BBB", 2.0)] {
            if sym == "BBB" && (100..103).contains(&i) {
                continue;
            }
            conn.execute(
                "INSERT INTO candles (symbol, interval, ts, open, high, low, close, volume) VALUES (?1, '1h', ?2, ?3, ?4, ?5, ?6, 1.0)",
                params![sym, ts, close * k / 1.001, close * k * 1.002, close * k / 1.003, close * k],
            )
            .unwrap();
        }
    }
    // trades: +10 (swing, 20 days ago), -4 (day, 2 days ago), +6 (day, 1 day ago), and one after NOW
    for (sym, intent, pnl, fees, closed) in [
        ("AAA", "swing", "10", "1", NOW - 20 * 86_400),
        ("BBB", "day", "-4", "1", NOW - 2 * 86_400),
        ("AAA", "day", "6", "1", NOW - 86_400),
        ("AAA", "day", "100", "1", NOW + H),
    ] {
        conn.execute(
            "INSERT INTO trades (symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, intent, tag, close_reason, opened_at, closed_at)
             VALUES (?1, 'long', '1', '100', '101', ?2, ?3, ?4, ?5, 't', 'signal', ?6, ?7)",
            params![sym, pnl, pnl.parse::<f64>().unwrap() / 10.0, fees, intent, closed - 3 * H, closed],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO signals (scan_seq, ts, symbol, action, size_pct, order_type, confidence, decision, acted_on)
             VALUES (1, ?1, ?2, 'buy', 5.0, 'market', ?3, 'approved', 1)",
            params![closed - 4 * H, sym, if pnl.starts_with('-') { 0.2 } else { 0.9 }],
        )
        .unwrap();
    }
}

#[test]
fn both_modules_report_on_a_seeded_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    seed(&db);
    let before = std::fs::read(&db).ok().map(|b| b.len());
    let rt = Runtime::new(Limits::default(), None).unwrap();

    let m = rt.load_analysis(&guest("market-analysis")).unwrap();
    let mut inst = m.instantiate(Some(open_read_only(&db).unwrap())).unwrap();
    let r = inst.analyze(NOW).unwrap();
    assert_eq!(r.module, "market-analysis");
    assert_eq!(text(&r, "symbol:AAA", "interval"), "1h");
    // 301 slots minus 3 missing minus the one not yet closed at NOW
    assert_eq!(num(&r, "symbol:AAA", "candles"), 297.0);
    assert_eq!(num(&r, "symbol:AAA", "missing_candles"), 3.0);
    assert_eq!(num(&r, "symbol:AAA", "gaps"), 1.0);
    assert_eq!(num(&r, "symbol:AAA", "largest_gap_hours"), 4.0);
    assert_eq!(num(&r, "symbol:AAA", "freshness_hours"), 0.0);
    assert_eq!(text(&r, "symbol:AAA", "regime"), "trending_up");
    assert!((num(&r, "symbol:AAA", "trend_efficiency") - 1.0).abs() < 1e-9);
    // every return is +0.1 %, the gap's return is 1.001^4 - 1: the stdev is small but not zero
    assert!(num(&r, "symbol:AAA", "stdev_returns_pct") < 0.1);
    assert!((num(&r, "correlation", "AAA~BBB") - 1.0).abs() < 1e-9);
    assert!(r.summary.contains("AAA trending_up"), "{}", r.summary);

    let t = rt.load_analysis(&guest("trade-performance")).unwrap();
    let mut inst = t.instantiate(Some(open_read_only(&db).unwrap())).unwrap();
    let r = inst.analyze(NOW).unwrap();
    assert_eq!(num(&r, "all", "trades"), 3.0);
    assert_eq!(num(&r, "all", "net_pnl"), 12.0);
    assert_eq!(num(&r, "symbol:AAA", "net_pnl"), 16.0);
    assert_eq!(num(&r, "intent:day", "trades"), 2.0);
    assert_eq!(num(&r, "intent:swing", "win_rate"), 1.0);
    assert_eq!(num(&r, "rolling_7d", "trades"), 2.0);
    assert_eq!(num(&r, "rolling_30d", "trades"), 3.0);
    // gross pre-fee profit of winners 11 + 7 = 18, fees 3
    assert!((num(&r, "fees", "fee_drag_pct") - 3.0 / 18.0 * 100.0).abs() < 1e-9);
    // equity 10 → 6 → 12: 4 deep, from 20 days ago until 1 day ago
    assert_eq!(num(&r, "drawdown", "max_drawdown"), 4.0);
    assert!((num(&r, "drawdown", "longest_days") - 19.0).abs() < 1e-9);
    assert_eq!(num(&r, "drawdown", "current_days"), 0.0);
    assert_eq!(num(&r, "confidence", "pairs"), 3.0);
    assert_eq!(num(&r, "confidence", "win_rate_high"), 1.0);
    assert_eq!(num(&r, "confidence", "win_rate_low"), 0.0);
    // the modules could not write: the file is unchanged
    assert_eq!(std::fs::read(&db).ok().map(|b| b.len()), before);
}

#[test]
fn an_empty_database_gives_reports_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("host.db");
    drop(host_store::db::open(&db).unwrap());
    let rt = Runtime::new(Limits::default(), None).unwrap();
    for (name, summary) in [
        ("market-analysis", "no candles stored"),
        ("trade-performance", "no closed trades yet"),
    ] {
        let m = rt.load_analysis(&guest(name)).unwrap();
        let r = m
            .instantiate(Some(open_read_only(&db).unwrap()))
            .unwrap()
            .analyze(NOW)
            .unwrap();
        assert_eq!(r.summary, summary);
    }
}
