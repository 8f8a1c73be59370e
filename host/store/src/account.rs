//! The trading account's durable side: every order, fill and closed trade is
//! written with the engine snapshot inside the caller's transaction (the
//! shell commits one per bar), and at startup
//! the ledger is rebuilt from first principles (starting capital kept in the
//! database, plus every stored fill) and checked against the snapshot (L1).

use rusqlite::{params, Connection, OptionalExtension};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeSet;
use std::str::FromStr;
use trading_core::risk::RiskConfig;
use trading_core::{
    Engine, EngineConfig, EngineError, EngineEvent, Fill, FillKind, LedgerError, OrderSide,
    Portfolio, RiskManager,
};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("risk limits: {0}")]
    Risk(String),
}

/// What the startup reconciliation found.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Reconciliation {
    pub starting_capital: Decimal,
    /// Set when settings.toml names another capital than the stored one (the stored one wins).
    pub configured_capital_ignored: Option<Decimal>,
    pub fills: u64,
    /// Cash as rebuilt from the starting capital and every stored fill.
    pub cash: Decimal,
    /// Cash the last snapshot held, if there was one.
    pub snapshot_cash: Option<Decimal>,
    /// The snapshot disagreed with the fills; the fills won.
    pub mismatch: bool,
    /// Paper orders the database thought open that the account no longer has
    /// (live orders are resolved with the venue instead).
    pub stale_orders: Vec<String>,
}

const META_CAPITAL: &str = "starting_capital";

fn meta_key(mode: &str, key: &str) -> String {
    format!("{mode}.{key}")
}

fn dec(what: &'static str, s: &str) -> Result<Decimal, AccountError> {
    Decimal::from_str(s).map_err(|e| AccountError::Corrupt {
        what,
        detail: format!("{s:?}: {e}"),
    })
}

/// The starting capital: the stored one, or `configured` stored on first use.
pub fn starting_capital(
    conn: &Connection,
    mode: &str,
    configured: Decimal,
) -> Result<(Decimal, Option<Decimal>), AccountError> {
    let key = meta_key(mode, META_CAPITAL);
    match crate::db::get_meta(conn, &key)? {
        Some(s) => {
            let stored = dec("starting capital", &s)?;
            Ok((stored, (stored != configured).then_some(configured)))
        }
        None => {
            crate::db::set_meta(conn, &key, &configured.to_string())?;
            Ok((configured, None))
        }
    }
}

/// One entry of the ledger's history: a fill, or a cash adjustment that
/// brought the ledger to the venue's balance (live).
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerEntry {
    Fill(Fill),
    /// Signed quote cash, booked as a deposit or a withdrawal (not P&L).
    Cash {
        time: i64,
        amount: Decimal,
    },
}

/// Every stored fill of `mode`, oldest first.
pub fn stored_fills(conn: &Connection, mode: &str) -> Result<Vec<Fill>, AccountError> {
    Ok(stored_fills_with_ids(conn, mode)?
        .into_iter()
        .map(|(_, f)| f)
        .collect())
}

/// The ledger's history of `mode`: every fill and, right after the fill it
/// followed, every cash adjustment.
pub fn stored_ledger(conn: &Connection, mode: &str) -> Result<Vec<LedgerEntry>, AccountError> {
    let fills = stored_fills_with_ids(conn, mode)?;
    let mut stmt = conn.prepare_cached(
        "SELECT after_fill, ts, amount FROM ledger_adjustments WHERE mode = ?1 ORDER BY after_fill, id",
    )?;
    let rows = stmt.query_map([mode], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut adjustments = std::collections::VecDeque::new();
    for row in rows {
        let (after, time, amount) = row?;
        adjustments.push_back((after, time, dec("adjustment amount", &amount)?));
    }
    let mut out = Vec::with_capacity(fills.len() + adjustments.len());
    let mut take_until = |out: &mut Vec<LedgerEntry>, id: i64| {
        while adjustments.front().is_some_and(|a| a.0 <= id) {
            let (_, time, amount) = adjustments.pop_front().expect("front exists");
            out.push(LedgerEntry::Cash { time, amount });
        }
    };
    take_until(&mut out, 0);
    for (id, f) in fills {
        out.push(LedgerEntry::Fill(f));
        take_until(&mut out, id);
    }
    take_until(&mut out, i64::MAX);
    Ok(out)
}

/// A cash balance the venue reports differently from the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct CashDifference<'a> {
    pub asset: &'a str,
    pub ledger: Decimal,
    pub venue: Decimal,
    pub reason: &'a str,
}

/// Books the cash adjustment that makes the ledger agree with the venue
/// (`venue - ledger`, signed) into `engine` and the database (the caller's
/// transaction), after the last stored fill; returns the amount.
pub fn record_adjustment(
    tx: &Connection,
    mode: &str,
    engine: &mut Engine,
    d: &CashDifference<'_>,
    now: i64,
) -> Result<Decimal, AccountError> {
    let CashDifference {
        asset,
        ledger,
        venue,
        reason,
    } = *d;
    let amount = venue - ledger;
    engine.adjust_cash(now, amount)?;
    let after: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM fills WHERE mode = ?1")
        .and_then(|mut st| st.query_row([mode], |r| r.get(0)))?;
    tx.prepare_cached("INSERT INTO ledger_adjustments (mode, ts, after_fill, asset, amount, ledger, venue, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)").and_then(|mut st| st.execute(params![
            mode,
            now,
            after,
            asset,
            amount.to_string(),
            ledger.to_string(),
            venue.to_string(),
            reason
        ]))?;
    Ok(amount)
}

fn stored_fills_with_ids(conn: &Connection, mode: &str) -> Result<Vec<(i64, Fill)>, AccountError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ts, symbol, qty, price, fee, kind, id FROM fills WHERE mode = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([mode], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (time, symbol, qty, price, fee, kind, id) = row?;
        let kind: FillKind =
            serde_json::from_str(kind.as_deref().unwrap_or("null")).map_err(|e| {
                AccountError::Corrupt {
                    what: "fill kind",
                    detail: e.to_string(),
                }
            })?;
        out.push((
            id,
            Fill {
                symbol,
                qty: dec("fill qty", &qty)?,
                price: dec("fill price", &price)?,
                fee: dec("fill fee", &fee)?,
                time,
                kind,
            },
        ));
    }
    Ok(out)
}

/// The ledger from first principles: starting capital, then every fill and
/// cash adjustment in the order they were booked.
pub fn rebuild(capital: Decimal, ledger: &[LedgerEntry]) -> Result<Portfolio, AccountError> {
    let mut p = Portfolio::new(capital)?;
    for e in ledger {
        match e {
            LedgerEntry::Fill(f) => {
                p.apply_fill(f)?;
            }
            LedgerEntry::Cash { time, amount } => p.adjust_cash(*time, *amount)?,
        }
    }
    Ok(p)
}

fn same_holdings(a: &Portfolio, b: &Portfolio) -> bool {
    a.cash() == b.cash()
        && a.positions().len() == b.positions().len()
        && a.positions()
            .iter()
            .zip(b.positions())
            .all(|((s1, p1), (s2, p2))| s1 == s2 && p1.qty == p2.qty && p1.cost == p2.cost)
}

/// Opens the account of `mode`: the snapshot's engine when it agrees with the
/// fills, else a fresh engine over the rebuilt ledger. Orders the database
/// holds as open but the engine does not know are marked cancelled.
pub fn open(
    conn: &Connection,
    mode: &str,
    configured_capital: Decimal,
    risk: RiskConfig,
    config: EngineConfig,
) -> Result<(Engine, Reconciliation), AccountError> {
    let (capital, ignored) = starting_capital(conn, mode, configured_capital)?;
    let ledger = stored_ledger(conn, mode)?;
    let fills: Vec<&Fill> = ledger
        .iter()
        .filter_map(|e| match e {
            LedgerEntry::Fill(f) => Some(f),
            LedgerEntry::Cash { .. } => None,
        })
        .collect();
    let rebuilt = rebuild(capital, &ledger)?;
    let snapshot: Option<String> = conn
        .prepare_cached("SELECT engine FROM account_snapshot WHERE mode = ?1")
        .and_then(|mut st| st.query_row([mode], |r| r.get(0)))
        .optional()?;
    let snapshot = snapshot.map(|s| restore(&s, &rebuilt)).transpose()?;
    let snapshot_cash = snapshot.as_ref().map(|e| e.portfolio().cash());
    let (mut engine, mismatch) = match snapshot {
        Some(e) if same_holdings(e.portfolio(), &rebuilt) => (e, false),
        other => {
            let risk_manager = match other.as_ref() {
                // keep latched halts and the kill switch of a snapshot we cannot use
                Some(e) => {
                    let mut r = e.risk().clone();
                    r.take_counterfactuals();
                    r
                }
                None => {
                    RiskManager::new(risk.clone()).map_err(|e| AccountError::Risk(e.to_string()))?
                }
            };
            (
                Engine::new(rebuilt.clone(), risk_manager, config)?,
                other.is_some(),
            )
        }
    };
    // the user's limits as configured now win over the snapshot's
    engine
        .set_risk_config(risk)
        .map_err(|e| AccountError::Risk(e.to_string()))?;
    let open_ids: BTreeSet<String> = engine
        .pending()
        .iter()
        .map(|o| client_order_id(conn, mode, o.id))
        .collect::<Result<_, _>>()?;
    let mut stale = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
        "SELECT client_order_id FROM orders WHERE mode = ?1 AND status = 'open' AND venue = 'paper'")?;
        for id in stmt.query_map([mode], |r| r.get::<_, String>(0))? {
            let id = id?;
            if !open_ids.contains(&id) {
                stale.push(id);
            }
        }
    }
    for id in &stale {
        conn.prepare_cached("UPDATE orders SET status = 'cancelled', reason = 'not open after restart' WHERE client_order_id = ?1").and_then(|mut st| st.execute([id]))?;
    }
    Ok((
        engine,
        Reconciliation {
            starting_capital: capital,
            configured_capital_ignored: ignored,
            fills: fills.len() as u64,
            cash: rebuilt.cash(),
            snapshot_cash,
            mismatch,
            stale_orders: stale,
        },
    ))
}

/// A stored snapshot with its closed trades put back from the rebuilt ledger.
fn restore(json: &str, rebuilt: &Portfolio) -> Result<Engine, AccountError> {
    let corrupt = |e: serde_json::Error| AccountError::Corrupt {
        what: "account snapshot",
        detail: e.to_string(),
    };
    let mut v: serde_json::Value = serde_json::from_str(json).map_err(corrupt)?;
    if let Some(p) = v.get_mut("portfolio").and_then(|p| p.as_object_mut()) {
        p.insert(
            "closed".into(),
            serde_json::to_value(rebuilt.closed_trades()).map_err(corrupt)?,
        );
    }
    serde_json::from_value(v).map_err(corrupt)
}

/// The account as last saved, read-only (`host status` with no host running).
pub fn peek(conn: &Connection, mode: &str) -> Result<Option<Engine>, AccountError> {
    let Some(capital) = crate::db::get_meta(conn, &meta_key(mode, META_CAPITAL))? else {
        return Ok(None);
    };
    let json: Option<String> = conn
        .prepare_cached("SELECT engine FROM account_snapshot WHERE mode = ?1")
        .and_then(|mut st| st.query_row([mode], |r| r.get(0)))
        .optional()?;
    let Some(json) = json else {
        return Ok(None);
    };
    let rebuilt = rebuild(
        dec("starting capital", &capital)?,
        &stored_ledger(conn, mode)?,
    )?;
    restore(&json, &rebuilt).map(Some)
}

/// The epoch numbers client order ids so that a rebuilt engine (whose ids
/// restart at 1) never reuses one.
fn epoch(conn: &Connection, mode: &str) -> Result<i64, AccountError> {
    let key = meta_key(mode, "order_epoch");
    Ok(match crate::db::get_meta(conn, &key)? {
        Some(s) => s.parse().map_err(|_| AccountError::Corrupt {
            what: "order epoch",
            detail: s,
        })?,
        None => 0,
    })
}

/// Starts a new order-id epoch (called when a fresh engine is built).
pub fn next_epoch(conn: &Connection, mode: &str) -> Result<i64, AccountError> {
    let e = epoch(conn, mode)? + 1;
    crate::db::set_meta(conn, &meta_key(mode, "order_epoch"), &e.to_string())?;
    Ok(e)
}

/// The client order id of engine order `id` in the current epoch.
pub fn client_order_id(conn: &Connection, mode: &str, id: u64) -> Result<String, AccountError> {
    Ok(format!("{mode}-{}-{id}", epoch(conn, mode)?))
}

fn side_name(s: OrderSide) -> &'static str {
    match s {
        OrderSide::Buy => "buy",
        OrderSide::Sell => "sell",
    }
}

/// Records orders the engine accepted (status open).
pub fn record_orders(
    tx: &Connection,
    mode: &str,
    venue: &str,
    orders: &[trading_core::PendingOrder],
    now: i64,
) -> Result<(), AccountError> {
    for o in orders {
        let r = &o.request;
        let request = serde_json::to_string(r).map_err(|e| AccountError::Corrupt {
            what: "order",
            detail: e.to_string(),
        })?;
        let id = client_order_id(tx, mode, o.id)?;
        tx.prepare_cached("INSERT INTO orders (client_order_id, mode, venue, symbol, side, order_type, qty, price, status, request, created_ts, updated_ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10, ?10)").and_then(|mut st| st.execute(params![
                id,
                mode,
                venue,
                r.symbol,
                side_name(r.side),
                format!("{:?}", r.order_type).to_lowercase(),
                r.qty.to_string(),
                r.trigger_price.map(|p| p.to_string()),
                request,
                now
            ]))?;
    }
    Ok(())
}

fn set_order_status(
    tx: &Connection,
    mode: &str,
    id: u64,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<(), AccountError> {
    let client_id = client_order_id(tx, mode, id)?;
    tx.prepare_cached(
        "UPDATE orders SET status = ?2, reason = COALESCE(?3, reason), updated_ts = ?4 WHERE client_order_id = ?1",
    )
    .and_then(|mut st| st.execute(params![client_id, status, reason, now]))?;
    Ok(())
}

/// Writes what the engine did: fills, closed trades and order states.
pub fn record_events(
    tx: &Connection,
    mode: &str,
    events: &[EngineEvent],
    now: i64,
) -> Result<(), AccountError> {
    for ev in events {
        match ev {
            EngineEvent::Filled(rec) => {
                let f = &rec.fill;
                let (action, tag) = match &f.kind {
                    FillKind::Buy { tag, .. } => ("buy", Some(tag.as_str())),
                    FillKind::Sell { .. } => ("sell", None),
                };
                let coid = rec
                    .order_id
                    .map(|id| client_order_id(tx, mode, id))
                    .transpose()?;
                let kind = serde_json::to_string(&f.kind).map_err(|e| AccountError::Corrupt {
                    what: "fill kind",
                    detail: e.to_string(),
                })?;
                tx.prepare_cached("INSERT INTO fills (ts, symbol, action, qty, price, fee, tag, client_order_id, order_id, mode, kind)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)").and_then(|mut st| st.execute(params![
                        f.time,
                        f.symbol,
                        action,
                        f.qty.to_string(),
                        f.price.to_string(),
                        f.fee.to_string(),
                        tag,
                        coid,
                        rec.order_id.map(|i| i as i64),
                        mode,
                        kind
                    ]))?;
                if let Some(id) = rec.order_id {
                    set_order_status(tx, mode, id, "filled", None, now)?;
                }
            }
            EngineEvent::PositionClosed(t) => {
                tx.prepare_cached("INSERT INTO trades (symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, intent, tag, close_reason, opened_at, closed_at, mode, return_pct)
                     VALUES (?1, 'long', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?6)").and_then(|mut st| st.execute(params![
                        t.symbol,
                        t.qty.to_string(),
                        t.entry_price.to_string(),
                        t.exit_price.to_string(),
                        t.pnl.to_string(),
                        t.pnl_pct.to_string().parse::<f64>().unwrap_or(0.0),
                        t.fees.to_string(),
                        format!("{:?}", t.intent).to_lowercase(),
                        t.tag,
                        t.close_reason.name(),
                        t.opened_at,
                        t.closed_at,
                        mode
                    ]))?;
            }
            EngineEvent::OrderCancelled {
                order_id, reason, ..
            } => {
                let reason = serde_json::to_string(reason).unwrap_or_default();
                set_order_status(tx, mode, *order_id, "cancelled", Some(&reason), now)?;
            }
            EngineEvent::OrderExpired { order_id, .. } => {
                set_order_status(tx, mode, *order_id, "expired", None, now)?;
            }
            EngineEvent::Halted(_) => {}
        }
    }
    Ok(())
}

/// Saves the engine (pending orders, halts, marks) as of `bar_ts`. It is
/// written every bar, so it stays small: closed trades are rebuilt from the
/// fills at startup and only today's daily stats are kept.
pub fn snapshot(
    tx: &Connection,
    mode: &str,
    engine: &Engine,
    bar_ts: i64,
) -> Result<(), AccountError> {
    let corrupt = |e: serde_json::Error| AccountError::Corrupt {
        what: "account snapshot",
        detail: e.to_string(),
    };
    // the ledger without its history, so a bar's snapshot costs the same on
    // day 1 and day 3,000 (closed trades and daily stats are rebuilt from fills)
    let json = serde_json::to_string(&engine.compact()).map_err(corrupt)?;
    let fills: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM fills WHERE mode = ?1")
        .and_then(|mut st| st.query_row([mode], |r| r.get(0)))?;
    tx.prepare_cached("INSERT INTO account_snapshot (mode, engine, bar_ts, fills) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(mode) DO UPDATE SET engine = excluded.engine, bar_ts = excluded.bar_ts, fills = excluded.fills, saved_at = datetime('now')").and_then(|mut st| st.execute(params![mode, json, bar_ts, fills]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use trading_core::{Candle, Intent, MarketData, MarketView, Signal};

    fn candle(ts: i64, px: f64) -> Candle {
        Candle {
            ts,
            open: px,
            high: px * 1.01,
            low: px * 0.99,
            close: px,
            volume: 1.0,
        }
    }

    /// The paper account in `conn` with default risk and engine settings.
    fn open_paper(conn: &Connection, capital: Decimal) -> (Engine, Reconciliation) {
        open(
            conn,
            "paper",
            capital,
            RiskConfig::default(),
            EngineConfig::default(),
        )
        .unwrap()
    }

    /// Buys at bar 2, sells at bar 4, recording everything as the shell does.
    fn trade_through(conn: &mut Connection, e: &mut Engine) {
        let mut data = MarketData::new();
        let step = |conn: &mut Connection,
                    e: &mut Engine,
                    data: &mut MarketData,
                    ts: i64,
                    px: f64,
                    sig: Option<Signal>| {
            let c = candle(ts, px);
            data.push("BTCUSD", trading_core::Interval::H1, c);
            let tx = conn.transaction().unwrap();
            let ev = e.on_bar("BTCUSD", &c).unwrap();
            record_events(&tx, "paper", &ev, ts).unwrap();
            if let Some(s) = sig {
                let first = e.next_order_id();
                let view = MarketView::new(std::sync::Arc::new(data.clone()), ts + 3600);
                e.submit(ts + 3600, &[s], &view);
                let new = e.pending_since(first);
                record_orders(&tx, "paper", "paper", &new, ts).unwrap();
            }
            snapshot(&tx, "paper", e, ts).unwrap();
            tx.commit().unwrap();
        };
        step(
            conn,
            e,
            &mut data,
            0,
            100.0,
            Some(Signal::buy("BTCUSD", 10.0, Intent::Day)),
        );
        step(conn, e, &mut data, 3600, 101.0, None);
        step(
            conn,
            e,
            &mut data,
            7200,
            103.0,
            Some(Signal::close("BTCUSD")),
        );
        step(conn, e, &mut data, 10800, 104.0, None);
    }

    /// The per-bar snapshot holds no history (closed trades, past days), so
    /// what each bar writes stays the same size however long the account runs.
    #[test]
    fn snapshot_stays_small_as_history_grows() {
        let conn = crate::db::open_in_memory().unwrap();
        let (mut e, _) = open_paper(&conn, dec!(10000));
        let fill = |kind: trading_core::FillKind, price, time| trading_core::Fill {
            symbol: "BTCUSD".into(),
            qty: dec!(1),
            price,
            fee: dec!(0.1),
            time,
            kind,
        };
        let mut sizes = Vec::new();
        for day in 0..40i64 {
            let t = 1_700_000_000 + day * 86_400;
            let buy = trading_core::FillKind::Buy {
                intent: Intent::Day,
                stop_loss: None,
                take_profit: None,
                tag: "t".into(),
            };
            let sell = trading_core::FillKind::Sell {
                reason: trading_core::CloseReason::Signal,
            };
            e.apply_fill(None, fill(buy, dec!(100), t)).unwrap();
            e.apply_fill(None, fill(sell, dec!(101), t + 60)).unwrap();
            snapshot(&conn, "paper", &e, t + 60).unwrap();
            let json: String = conn
                .query_row("SELECT engine FROM account_snapshot", [], |r| r.get(0))
                .unwrap();
            sizes.push(json.len());
        }
        assert_eq!(e.portfolio().closed_trades().len(), 40);
        assert!(
            sizes[39] <= sizes[1] + 32,
            "snapshot grew from {} to {} bytes",
            sizes[1],
            sizes[39]
        );
    }

    #[test]
    fn reopened_account_matches_the_fills_to_the_cent() {
        let mut conn = crate::db::open_in_memory().unwrap();
        let (mut e, rec) = open_paper(&conn, dec!(10000));
        assert_eq!(rec.fills, 0);
        trade_through(&mut conn, &mut e);
        assert_eq!(e.portfolio().closed_trades().len(), 1);
        let (e2, rec) = open_paper(&conn, dec!(10000));
        assert!(!rec.mismatch);
        assert_eq!(rec.fills, 2);
        assert_eq!(rec.cash, e.portfolio().cash());
        assert_eq!(e2.portfolio().cash(), e.portfolio().cash());
        let trades: i64 = conn
            .query_row("SELECT COUNT(*) FROM trades", [], |r| r.get(0))
            .unwrap();
        assert_eq!(trades, 1);
        let filled: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM orders WHERE status = 'filled'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(filled, 2);
    }

    #[test]
    fn a_snapshot_that_disagrees_with_the_fills_loses() {
        let mut conn = crate::db::open_in_memory().unwrap();
        let (mut e, _) = open_paper(&conn, dec!(10000));
        trade_through(&mut conn, &mut e);
        // a fill that never reached the snapshot (e.g. written by a crashed run)
        let mut json: serde_json::Value = serde_json::from_str(
            &conn
                .query_row("SELECT engine FROM account_snapshot", [], |r| {
                    r.get::<_, String>(0)
                })
                .unwrap(),
        )
        .unwrap();
        json["portfolio"]["cash"] = serde_json::json!("1");
        conn.execute(
            "UPDATE account_snapshot SET engine = ?1",
            [json.to_string()],
        )
        .unwrap();
        let (e2, rec) = open_paper(&conn, dec!(10000));
        assert!(rec.mismatch);
        assert_eq!(rec.snapshot_cash, Some(dec!(1)));
        assert_eq!(e2.portfolio().cash(), e.portfolio().cash());
    }

    #[test]
    fn the_stored_starting_capital_wins_over_the_config() {
        let conn = crate::db::open_in_memory().unwrap();
        let (_, rec) = open_paper(&conn, dec!(10000));
        assert_eq!(rec.configured_capital_ignored, None);
        let (e, rec) = open_paper(&conn, dec!(50000));
        assert_eq!(rec.starting_capital, dec!(10000));
        assert_eq!(rec.configured_capital_ignored, Some(dec!(50000)));
        assert_eq!(e.portfolio().cash(), dec!(10000));
    }

    #[test]
    fn orders_open_in_the_database_but_unknown_to_the_engine_are_cancelled() {
        let mut conn = crate::db::open_in_memory().unwrap();
        let (e, _) = open_paper(&conn, dec!(10000));
        let tx = conn.transaction().unwrap();
        let ghost = trading_core::PendingOrder {
            id: 99,
            request: sample_request(),
            bars_waited: 0,
        };
        record_orders(&tx, "paper", "paper", &[ghost], 0).unwrap();
        snapshot(&tx, "paper", &e, 0).unwrap();
        tx.commit().unwrap();
        let (_, rec) = open_paper(&conn, dec!(10000));
        assert_eq!(rec.stale_orders, vec!["paper-0-99".to_string()]);
        let status: String = conn
            .query_row("SELECT status FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(status, "cancelled");
    }

    fn sample_request() -> trading_core::OrderRequest {
        trading_core::OrderRequest {
            symbol: "BTCUSD".into(),
            action: trading_core::Action::Buy,
            side: OrderSide::Buy,
            order_type: trading_core::OrderType::Market,
            qty: dec!(1),
            trigger_price: None,
            stop_loss: None,
            take_profit: None,
            intent: Intent::Day,
            tag: String::new(),
            decided_at: 0,
            decision_price: dec!(100),
            close_reason: trading_core::CloseReason::Signal,
            clipped_from: None,
        }
    }
}
