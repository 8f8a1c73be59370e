//! The cycle's market data: the host's own candle store — the symbols it
//! trades, hourly, up to the last bar closed at the cycle's `now` (5-minute
//! candles not yet rolled up into hours are rolled up here) — or, only when
//! the store has too little for a symbol, the bundled candle files, which are
//! then imported into the store so the analysis modules see them; the report
//! says which.
//!
//! Invariant: no candle closing after `now` is ever returned.

use super::{load_series, Market, OrchestratorError, OrchestratorSettings};
use host_store::candles;
use host_trading::backtest::Series;
use rusqlite::{params, Connection};
use serde::Serialize;
use trading_core::Interval;

/// Fewest hourly bars per symbol a cycle runs on.
pub const MIN_BARS: usize = 100;

/// Where the cycle's candles came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum DataSource {
    HostStore,
    BundledCsv { reason: String },
}

impl DataSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            DataSource::HostStore => "host_store",
            DataSource::BundledCsv { .. } => "bundled_csv",
        }
    }
}

/// Hourly candles of `symbol` closed by `now`, from the store.
fn stored_hours(
    conn: &Connection,
    symbol: &str,
    now: i64,
) -> Result<Vec<trading_core::Candle>, candles::CandleError> {
    let h = Interval::H1.secs();
    // candles opening before now − 1h + 1 close at or before now
    let mut hours = candles::load(conn, symbol, Interval::H1, None, Some(now - h + 1))?;
    let after = hours.last().map(|c| c.ts + h);
    let fine = candles::load(conn, symbol, Interval::M5, after, Some(now))?;
    hours.extend(
        candles::roll_up(&fine, Interval::H1, now)
            .into_iter()
            .filter(|c| after.is_none_or(|a| c.ts >= a) && c.ts + h <= now),
    );
    Ok(hours)
}

/// The cycle's series and where they came from.
pub fn cycle_series(
    conn: &Connection,
    market: &Market,
    o: &OrchestratorSettings,
    now: i64,
) -> Result<(Vec<Series>, DataSource), OrchestratorError> {
    let mut out = Vec::new();
    let mut short = None;
    // enough to develop on after the held-out window is set aside
    let needed = MIN_BARS + o.holdout_bars;
    for sym in &market.symbols {
        let mut c = stored_hours(conn, sym, now)?;
        c.drain(..c.len().saturating_sub(o.history_bars));
        if c.len() < needed {
            short = Some(format!(
                "the candle store has {} hourly bars of {sym} closed by the cycle's time (needs {needed}: {MIN_BARS} and the {} held out)",
                c.len(),
                o.holdout_bars
            ));
            break;
        }
        out.push(Series {
            symbol: sym.clone(),
            interval: Interval::H1,
            candles: c,
        });
    }
    let Some(reason) = short else {
        return Ok((out, DataSource::HostStore));
    };
    let mut series = load_series(market, o)?;
    for s in &mut series {
        let h = s.interval.secs();
        s.candles.retain(|c| c.ts + h <= now);
        if s.candles.len() < needed {
            return Err(OrchestratorError::NoData(format!(
                "{}: {} candles closed by the cycle's time (needs {needed})",
                s.symbol,
                s.candles.len()
            )));
        }
    }
    import_candles(conn, &series)?;
    Ok((series, DataSource::BundledCsv { reason }))
}

/// Stores the series in the `candles` table (existing rows are kept) so the
/// analysis modules see what the cycle backtests on.
fn import_candles(conn: &Connection, series: &[Series]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT OR IGNORE INTO candles (symbol, interval, ts, open, high, low, close, volume) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for s in series {
            for c in &s.candles {
                stmt.execute(params![
                    s.symbol,
                    s.interval.name(),
                    c.ts,
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume
                ])?;
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candle(ts: i64, close: f64) -> trading_core::Candle {
        trading_core::Candle {
            ts,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
        }
    }

    #[test]
    fn the_store_gives_closed_hours_and_rolls_up_fresh_five_minute_bars() {
        let mut conn = host_store::db::open_in_memory().unwrap();
        let hours: Vec<_> = (0..150)
            .map(|i| candle(i * 3_600, 100.0 + i as f64))
            .collect();
        candles::store(&mut conn, "BTCUSD", Interval::H1, &hours).unwrap();
        // two more hours in 5-minute bars only (the daily roll-up has not run)
        let fine: Vec<_> = (0..24)
            .map(|i| candle(150 * 3_600 + i * 300, 500.0 + i as f64))
            .collect();
        candles::store(&mut conn, "BTCUSD", Interval::M5, &fine).unwrap();
        // now: hour 151 is 30 minutes in, so hours 0..=150 are closed
        let now = 151 * 3_600 + 1_800;
        let got = stored_hours(&conn, "BTCUSD", now).unwrap();
        assert_eq!(got.len(), 151);
        assert_eq!(got[149].close, 249.0);
        assert_eq!((got[150].ts, got[150].close), (150 * 3_600, 511.0));
        assert!(got.iter().all(|c| c.ts + 3_600 <= now));
        let market = Market {
            symbols: vec!["BTCUSD".into()],
            starting_capital: rust_decimal::Decimal::new(10_000, 0),
            fee_bps: 10,
            slippage_bps: 5,
            sandbox: host_sandbox::Limits::default(),
            default_strategy: None,
            strategy_params: vec![],
        };
        let o = OrchestratorSettings {
            history_bars: 120,
            holdout_bars: 20,
            data: vec![],
            ..OrchestratorSettings::default()
        };
        let (s, src) = cycle_series(&conn, &market, &o, now).unwrap();
        assert_eq!((s[0].candles.len(), src), (120, DataSource::HostStore));
        // regression (a running host's store had 201 hours, the cycle holds
        // out 240): a store too short for the held-out window is not used
        let o_long = OrchestratorSettings {
            history_bars: 1_000,
            holdout_bars: 100,
            data: vec![],
            ..OrchestratorSettings::default()
        };
        match cycle_series(&conn, &market, &o_long, now) {
            Err(OrchestratorError::NoData(m)) => assert!(m.contains("no data file"), "{m}"),
            other => panic!("{other:?}"),
        }
        // an empty store and no file: no data, said so
        let empty = host_store::db::open_in_memory().unwrap();
        assert!(matches!(
            cycle_series(&empty, &market, &o, now),
            Err(OrchestratorError::NoData(_))
        ));
    }
}
