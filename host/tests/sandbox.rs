//! The sandbox against real components: good strategies answer, and every
//! deliberately bad guest is contained with a clear error while a good one
//! keeps answering.

mod common;

use common::*;
use host::runtime::{Limits, ModuleError, Runtime, StrategyInstance, TrapKind};
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
) -> Result<Vec<host::runtime::bindings::Signal>, ModuleError> {
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
