//! The truth benchmarks of a running (or stopped) host, computed from its
//! database: closed trades, daily equity snapshots, scan and signal counters
//! and the strategy archive go through the same `TruthReport::compute` the
//! backtest uses, so live and simulated figures mean the same thing.

use rusqlite::{Connection, OptionalExtension};
use rust_decimal::Decimal;
use std::str::FromStr;
use trading_core::{
    CloseReason, ClosedTrade, Counters, EquityPoint, Intent, Side, TruthInput, TruthReport,
};

#[derive(Debug, thiserror::Error)]
pub enum TruthDbError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("trade {id}: {field} {value:?} is not readable")]
    BadRow {
        id: i64,
        field: &'static str,
        value: String,
    },
}

/// The current account, appended to the equity curve when given.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub ts: i64,
    pub value: Decimal,
    pub cash: Decimal,
}

fn dec(id: i64, field: &'static str, s: &str) -> Result<Decimal, TruthDbError> {
    Decimal::from_str(s).map_err(|_| TruthDbError::BadRow {
        id,
        field,
        value: s.to_string(),
    })
}

fn close_reason(s: &str) -> Option<CloseReason> {
    CloseReason::ALL.into_iter().find(|r| r.name() == s)
}

/// Every closed trade, oldest first, as the ledger recorded it.
pub fn closed_trades(conn: &Connection) -> Result<Vec<ClosedTrade>, TruthDbError> {
    let mut stmt = conn.prepare(
        "SELECT id, symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, intent, tag,
                close_reason, opened_at, closed_at
         FROM trades ORDER BY closed_at, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, f64>(7)?,
            r.get::<_, String>(8)?,
            r.get::<_, Option<String>>(9)?,
            r.get::<_, Option<String>>(10)?,
            r.get::<_, String>(11)?,
            r.get::<_, i64>(12)?,
            r.get::<_, i64>(13)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            id,
            symbol,
            side,
            qty,
            entry,
            exit,
            pnl,
            pnl_pct,
            fees,
            intent,
            tag,
            reason,
            opened,
            closed,
        ) = row?;
        let side = match side.as_str() {
            "short" => Side::Short,
            _ => Side::Long,
        };
        let intent = match intent.as_deref() {
            Some("day") => Intent::Day,
            Some("position") => Intent::Position,
            _ => Intent::Swing,
        };
        let close_reason = close_reason(&reason).ok_or(TruthDbError::BadRow {
            id,
            field: "close_reason",
            value: reason.clone(),
        })?;
        out.push(ClosedTrade {
            symbol,
            side,
            qty: dec(id, "qty", &qty)?,
            entry_price: dec(id, "entry_price", &entry)?,
            exit_price: dec(id, "exit_price", &exit)?,
            pnl: dec(id, "pnl", &pnl)?,
            pnl_pct: Decimal::from_f64_retain(pnl_pct)
                .unwrap_or_default()
                .round_dp(8),
            fees: dec(id, "fees", &fees)?,
            intent,
            opened_at: opened,
            closed_at: closed,
            close_reason,
            tag: tag.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The daily equity snapshots, oldest first.
pub fn equity_curve(
    conn: &Connection,
) -> Result<Vec<(String, EquityPoint, Decimal)>, TruthDbError> {
    let mut stmt = conn.prepare("SELECT day, ts, value, cash FROM daily_snapshots ORDER BY ts")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (day, ts, value, cash) = row?;
        out.push((
            day,
            EquityPoint {
                ts,
                value: dec(ts, "value", &value)?,
            },
            dec(ts, "cash", &cash)?,
        ));
    }
    Ok(out)
}

fn counters(conn: &Connection) -> Result<Counters, TruthDbError> {
    let (total_scans, first, last): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT COUNT(*), MIN(ts), MAX(ts) FROM scan_results",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (signals, acted): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(acted_on != 0), 0) FROM signals",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let versions: i64 =
        conn.query_row("SELECT COUNT(*) FROM strategy_versions", [], |r| r.get(0))?;
    let active: Option<String> = conn
        .query_row(
            "SELECT hash FROM strategy_versions WHERE status = 'active' ORDER BY version DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(Counters {
        total_signals: signals.max(0) as u64,
        acted_signals: acted.max(0) as u64,
        total_scans: total_scans.max(0) as u64,
        first_scan_at: first,
        last_scan_at: last,
        current_strategy_version: active.map(|h| h.chars().take(12).collect()),
        strategy_version_count: versions.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

/// The first and last close of `symbol`'s stored candles between `from` and `to`.
fn market_prices(
    conn: &Connection,
    symbol: &str,
    from: i64,
    to: i64,
) -> Result<Option<(Decimal, Decimal)>, TruthDbError> {
    let q = |order: &str| -> Result<Option<f64>, TruthDbError> {
        Ok(conn
            .query_row(
                &format!(
                    "SELECT close FROM candles WHERE symbol = ?1 AND ts BETWEEN ?2 AND ?3
                     ORDER BY ts {order}, interval LIMIT 1"
                ),
                rusqlite::params![symbol, from, to],
                |r| r.get(0),
            )
            .optional()?)
    };
    let to_dec = |x: f64| Decimal::from_f64_retain(x).map(|d| d.round_dp(10));
    Ok(match (q("ASC")?, q("DESC")?) {
        (Some(a), Some(b)) => to_dec(a).zip(to_dec(b)),
        _ => None,
    })
}

/// The truth report of the host's recorded history. `current` (the live
/// account) ends the equity curve; `benchmark` is the symbol whose first
/// and last stored close over the scanned period give `market_change_pct`.
pub fn truth_from_db(
    conn: &Connection,
    current: Option<Current>,
    benchmark: Option<&str>,
) -> Result<TruthReport, TruthDbError> {
    let trades = closed_trades(conn)?;
    let mut curve: Vec<EquityPoint> = equity_curve(conn)?.into_iter().map(|(_, p, _)| p).collect();
    let mut cash = None;
    if let Some(c) = current {
        if curve.last().is_none_or(|p| p.ts <= c.ts) {
            curve.push(EquityPoint {
                ts: c.ts,
                value: c.value,
            });
        }
        cash = Some(c.cash);
    }
    let counters = counters(conn)?;
    let market = match (benchmark, counters.first_scan_at, counters.last_scan_at) {
        (Some(s), Some(a), Some(b)) => market_prices(conn, s, a, b)?,
        _ => None,
    };
    Ok(TruthReport::compute(&TruthInput {
        trades: &trades,
        equity_curve: &curve,
        counters: &counters,
        portfolio_value: current.map(|c| c.value),
        portfolio_cash: cash,
        market_prices: market,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_from_recorded_trades_and_snapshots() {
        let c = crate::db::open_in_memory().unwrap();
        for (pnl, reason, closed) in [("12.5", "take_profit", 7200), ("-4.25", "stop_loss", 90000)]
        {
            c.execute(
                "INSERT INTO trades (symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, intent, tag, close_reason, opened_at, closed_at)
                 VALUES ('BTCUSD', 'long', '0.1', '100', '101', ?1, 1.0, '0.1', 'swing', 't', ?2, 3600, ?3)",
                rusqlite::params![pnl, reason, closed],
            )
            .unwrap();
        }
        c.execute("INSERT INTO daily_snapshots (day, ts, value, cash) VALUES ('1970-01-01', 86400, '10012.5', '10012.5')", []).unwrap();
        let r = truth_from_db(
            &c,
            Some(Current {
                ts: 172800,
                value: Decimal::from_str("10008.25").unwrap(),
                cash: Decimal::from(10008),
            }),
            Some("BTCUSD"),
        )
        .unwrap();
        assert_eq!(r.trade_count, 2);
        assert_eq!(r.win_count, 1);
        assert_eq!(r.net_pnl, Decimal::from_str("8.25").unwrap());
        assert_eq!(
            r.portfolio_value,
            Some(Decimal::from_str("10008.25").unwrap())
        );
        assert_eq!(r.close_reason_breakdown[&CloseReason::StopLoss], 1);
        c.execute("UPDATE trades SET pnl = 'lots' WHERE id = 1", [])
            .unwrap();
        assert!(matches!(
            truth_from_db(&c, None, None),
            Err(TruthDbError::BadRow { field: "pnl", .. })
        ));
    }
}
