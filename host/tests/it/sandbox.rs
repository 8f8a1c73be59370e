//! The sandbox against real components: good strategies answer, and every
//! deliberately bad guest is contained with a clear error while a good one
//! keeps answering.

use crate::common;

use common::*;
use host_sandbox::bindings::{Intent, OpenPosition, Side, Signal};
use host_sandbox::{Limits, ModuleError, Runtime, StrategyInstance, TrapKind};
use std::sync::Arc;
use trading_core::{Interval, MarketData, MarketView};

fn btc_view(rows: usize) -> (Arc<MarketData>, i64) {
    let candles = shared_candles("BTCUSD-1h.csv", 60_000, rows);
    let now = candles.last().unwrap().ts + 3600;
    let mut d = MarketData::new();
    d.set_series("BTCUSD", Interval::H1, candles);
    (Arc::new(d), now)
}

fn runtime() -> Arc<Runtime> {
    let limits = Limits {
        fuel_per_call: 50_000_000,
        memory_bytes: 32 << 20,
        deadline_ms: 1_000,
        ..Limits::default()
    };
    Runtime::new(limits, None).unwrap()
}

fn start(rt: &Arc<Runtime>, name: &str) -> Result<StrategyInstance, ModuleError> {
    let m = rt.load_strategy(&guest(name))?;
    let mut i = m.instantiate()?;
    i.initialize(&limits(), &["BTCUSD".to_string()], &[])?;
    Ok(i)
}

fn scan(
    i: &mut StrategyInstance,
    data: &Arc<MarketData>,
    now: i64,
) -> Result<Vec<Signal>, ModuleError> {
    i.host().view = Some(MarketView::new(data.clone(), now));
    i.analyze(now, &empty_portfolio())
}

#[test]
fn good_strategy_answers_and_carries_state() {
    let rt = runtime();
    let (data, now) = btc_view(500);
    let mut s = start(&rt, "sma-crossover").unwrap();
    assert_eq!(s.scan_interval_minutes().unwrap(), 60);
    for k in 0..100 {
        scan(&mut s, &data, now - 3600 * (100 - k)).unwrap();
    }
    let state = s.get_state().unwrap();
    let mut t = start(&rt, "sma-crossover").unwrap();
    t.load_state(&state).unwrap();
    assert_eq!(t.get_state().unwrap(), state);
}

/// `market.latest` is lowered by hand (one write of the candle's 48 bytes):
/// every field arrives bit for bit, in its place, and a symbol without
/// candles gets none.
#[test]
fn latest_lowers_every_candle_field_bit_for_bit() {
    let rt = runtime();
    let candle = |ts, open, high, low, close, volume| trading_core::Candle {
        ts,
        open,
        high,
        low,
        close,
        volume,
    };
    let newest = candle(-3_600, 1.5, 2.25e300, -0.125, f64::MIN_POSITIVE, 7e-310);
    let mut d = MarketData::new();
    d.set_series(
        "BTCUSD",
        Interval::H1,
        vec![candle(-7_200, 9.0, 9.0, 9.0, 9.0, 9.0), newest],
    );
    let data = Arc::new(d);
    let m = rt.load_strategy(&guest("market-echo")).unwrap();
    let mut echo = m.instantiate().unwrap();
    let symbols = ["BTCUSD".to_string(), "ETHUSD".to_string()];
    echo.initialize(&limits(), &symbols, &[]).unwrap();
    scan(&mut echo, &data, 0).unwrap();
    let logs: Vec<&str> = echo
        .host()
        .logs()
        .iter()
        .skip(1)
        .map(|(_, l)| l.as_str())
        .collect();
    let bits = |x: f64| format!("{:x}", x.to_bits());
    let want = format!(
        "latest BTCUSD -3600 {} {} {} {} {}",
        bits(1.5),
        bits(2.25e300),
        bits(-0.125),
        bits(f64::MIN_POSITIVE),
        bits(7e-310)
    );
    assert_eq!(logs, [want.as_str(), "latest ETHUSD none"]);
}

/// `analyze`'s portfolio is lowered by hand when no position is open (no
/// `realloc` call for the empty list) and by the derived code otherwise:
/// the guest sees every field bit for bit either way.
#[test]
fn analyze_sees_the_portfolio_bit_for_bit() {
    let rt = runtime();
    let (data, now) = btc_view(50);
    let m = rt.load_strategy(&guest("market-echo")).unwrap();
    let mut echo = m.instantiate().unwrap();
    echo.initialize(&limits(), &["BTCUSD".to_string()], &[])
        .unwrap();
    let mut p = empty_portfolio();
    p.cash = 1234.5678;
    p.total_value = -0.0;
    p.daily_pnl = f64::MIN_POSITIVE;
    p.total_pnl = -7.25e200;
    p.fees_paid = 3e-310;
    p.closed_trade_count = 4_000_000_000;
    let bits = |x: f64| format!("{:x}", x.to_bits());
    let line = |positions: &str| {
        format!(
            "portfolio {} {} [{positions}] {} {} {} 4000000000",
            bits(1234.5678),
            bits(-0.0),
            bits(f64::MIN_POSITIVE),
            bits(-7.25e200),
            bits(3e-310)
        )
    };
    let mut seen = |p: &host_sandbox::bindings::Portfolio| {
        echo.host().view = Some(MarketView::new(data.clone(), now));
        echo.analyze(now, p).unwrap();
        echo.host().logs()[0].1.clone()
    };
    assert_eq!(seen(&p), line(""));
    let mut held = p.clone();
    let position = |symbol: &str, qty: f64| OpenPosition {
        symbol: symbol.into(),
        side: Side::Long,
        qty,
        avg_entry: 100.0,
        current_price: 101.0,
        unrealized_pnl: qty,
        unrealized_pnl_pct: 1.0,
        intent: Intent::Swing,
        stop_loss: Some(90.0),
        take_profit: None,
        opened_at: now - 3_600,
        tag: "t".into(),
    };
    held.positions = vec![position("BTCUSD", 0.5), position("ETHUSD", 2.0)];
    assert_eq!(
        seen(&held),
        line(&format!("BTCUSD:{},ETHUSD:{}", bits(0.5), bits(2.0)))
    );
    // and empty again after positions: nothing stale
    assert_eq!(seen(&p), line(""));
}

/// Runs `bad`'s analyze, expects `check` to accept its error, then shows a
/// good strategy in the same runtime still answers and the bad one is poisoned
/// or still usable as the error kind implies.
fn contained(bad: &str, check: impl Fn(&ModuleError) -> bool) {
    let rt = runtime();
    let (data, now) = btc_view(200);
    let mut good = start(&rt, "sma-crossover").unwrap();
    let mut b = start(&rt, bad).unwrap();
    let err = scan(&mut b, &data, now).unwrap_err();
    assert!(check(&err), "{bad}: unexpected error {err}");
    assert!(!err.to_string().is_empty());
    scan(&mut good, &data, now).expect("the good strategy keeps answering");
    if err.is_fatal() {
        assert!(matches!(
            scan(&mut b, &data, now),
            Err(ModuleError::Poisoned)
        ));
    }
    // a fresh instance of the bad module can be created again: the host is intact
    start(&rt, bad).unwrap();
}

#[test]
fn endless_loop_runs_out_of_fuel() {
    contained("bad-endless-loop", |e| {
        matches!(
            e,
            ModuleError::Trap {
                kind: TrapKind::OutOfFuel,
                ..
            }
        )
    });
}

#[test]
fn endless_loop_hits_the_deadline_when_fuel_is_plentiful() {
    let limits = Limits {
        fuel_per_call: u64::MAX / 2,
        deadline_ms: 100,
        ..Limits::default()
    };
    let rt = Runtime::new(limits, None).unwrap();
    let (data, now) = btc_view(50);
    let mut b = start(&rt, "bad-endless-loop").unwrap();
    let err = scan(&mut b, &data, now).unwrap_err();
    assert!(
        matches!(
            err,
            ModuleError::Trap {
                kind: TrapKind::Deadline,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn memory_bomb_hits_the_cap() {
    contained("bad-memory-bomb", |e| {
        matches!(
            e,
            ModuleError::Trap {
                kind: TrapKind::MemoryCap,
                ..
            }
        )
    });
}

#[test]
fn deep_recursion_exhausts_the_stack() {
    contained("bad-deep-recursion", |e| {
        matches!(
            e,
            ModuleError::Trap {
                kind: TrapKind::StackOverflow,
                ..
            }
        )
    });
}

#[test]
fn panic_message_reaches_the_host() {
    contained(
        "bad-panic",
        |e| matches!(e, ModuleError::Trap { kind: TrapKind::Panic(m), .. } if m.contains("boom: deliberate panic")),
    );
}

#[test]
fn thousands_of_signals_are_refused() {
    contained("bad-huge-return", |e| {
        matches!(
            e,
            ModuleError::BadOutput {
                call: "analyze",
                ..
            }
        )
    });
}

#[test]
fn nan_sizes_are_refused() {
    contained(
        "bad-nan-signal",
        |e| matches!(e, ModuleError::BadOutput { reason, .. } if reason.contains("size-pct")),
    );
}

#[test]
fn initialize_refusal_is_reported() {
    let rt = runtime();
    let err = start(&rt, "bad-init").err().expect("bad-init must refuse");
    assert!(
        matches!(&err, ModuleError::InitRefused(m) if m.contains("deliberate")),
        "{err}"
    );
}

#[test]
fn another_contract_version_is_refused_with_a_clear_message() {
    let rt = runtime();
    let err = rt
        .load_strategy(&guest("bad-old-contract"))
        .err()
        .expect("old contract must be refused");
    assert!(
        matches!(&err, ModuleError::ContractMismatch { found, .. } if found == "trading:contract@0.9.0"),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains(host_sandbox::bindings::CONTRACT_VERSION));
}

#[test]
fn imports_the_host_does_not_give_are_refused() {
    let rt = runtime();
    for (name, iface) in [
        ("bad-fs-import", "wasi:filesystem"),
        ("bad-socket-import", "wasi:sockets"),
    ] {
        let err = rt
            .load_strategy(&guest(name))
            .err()
            .unwrap_or_else(|| panic!("{name} must be refused"));
        assert!(
            matches!(&err, ModuleError::ForbiddenImport(i) if i.starts_with(iface)),
            "{name}: {err}"
        );
    }
}

#[test]
fn garbage_and_wrong_kind_are_refused() {
    let rt = runtime();
    assert!(matches!(
        rt.load_strategy(b"not wasm at all"),
        Err(ModuleError::Invalid(_))
    ));
    let err = rt.load_strategy(&guest("analysis-probe")).err().unwrap();
    assert!(matches!(err, ModuleError::WrongKind { .. }), "{err}");
}

#[test]
fn precompiled_cache_is_used_and_survives_damage() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guest("sma-crossover");
    let rt = Runtime::new(Limits::default(), Some(dir.path())).unwrap();
    let info = rt.load_strategy(&bytes).unwrap().info().clone();
    let cached = dir.path().join(format!("{}.cwasm", info.hash));
    assert!(cached.exists());
    std::fs::write(&cached, b"damaged").unwrap();
    let rt2 = Runtime::new(Limits::default(), Some(dir.path())).unwrap();
    let mut i = rt2.load_strategy(&bytes).unwrap().instantiate().unwrap();
    i.initialize(&limits(), &["BTCUSD".to_string()], &[])
        .unwrap();
}

#[test]
fn analysis_module_reads_but_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("t.db");
    {
        let c = host_store::db::open(&db_path).unwrap();
        c.execute(
            "INSERT INTO candles VALUES ('BTCUSD', '1h', 0, 1, 1, 1, 1, 1)",
            [],
        )
        .unwrap();
    }
    let rt = runtime();
    let m = rt.load_analysis(&guest("analysis-probe")).unwrap();
    let mut i = m
        .instantiate(Some(host_sandbox::open_read_only(&db_path).unwrap()))
        .unwrap();
    let report = i.analyze(0).unwrap();
    let get = |k: &str| {
        report
            .metrics
            .iter()
            .find(|m| m.key == k)
            .map(|m| m.value.clone())
    };
    use host_sandbox::bindings::MetricValue;
    assert_eq!(
        get("candles"),
        Some(MetricValue::Number(1.0)),
        "{:?}",
        report.metrics
    );
    assert_eq!(get("insert_refused"), Some(MetricValue::Flag(true)));
    assert_eq!(get("delete_refused"), Some(MetricValue::Flag(true)));
    let c = host_store::db::open(&db_path).unwrap();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM candles", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}
