//! The read queries the API and the bot share, in one place: closed trades,
//! the event log with its filter, the strategy archive and the
//! orchestrator's decisions, each as the JSON rows both show.

use rusqlite::{params_from_iter, Connection};
use serde_json::{json, Value};

fn table_exists(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

fn trade_json(r: &rusqlite::Row) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": r.get::<_, i64>(0)?,
        "symbol": r.get::<_, String>(1)?,
        "side": r.get::<_, String>(2)?,
        "qty": r.get::<_, String>(3)?,
        "entry_price": r.get::<_, String>(4)?,
        "exit_price": r.get::<_, String>(5)?,
        "pnl": r.get::<_, String>(6)?,
        "pnl_pct": r.get::<_, f64>(7)?,
        "fees": r.get::<_, String>(8)?,
        "intent": r.get::<_, Option<String>>(9)?,
        "tag": r.get::<_, Option<String>>(10)?,
        "close_reason": r.get::<_, String>(11)?,
        "opened_at": r.get::<_, i64>(12)?,
        "closed_at": r.get::<_, i64>(13)?,
        "mode": r.get::<_, String>(14)?,
    }))
}

/// Recent closed trades, newest first (also used by the bot).
pub fn recent_trades(
    c: &Connection,
    symbol: Option<&str>,
    limit: i64,
    offset: i64,
) -> rusqlite::Result<(Vec<Value>, i64)> {
    let filter = if symbol.is_some() {
        "WHERE symbol = ?1"
    } else {
        "WHERE ?1 IS NULL"
    };
    let total: i64 = c.query_row(
        &format!("SELECT COUNT(*) FROM trades {filter}"),
        [symbol],
        |r| r.get(0),
    )?;
    let mut stmt = c.prepare(&format!(
        "SELECT id, symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, intent, tag, close_reason,
                opened_at, closed_at, mode
         FROM trades {filter} ORDER BY closed_at DESC, id DESC LIMIT ?2 OFFSET ?3"
    ))?;
    let rows = stmt
        .query_map(rusqlite::params![symbol, limit, offset], trade_json)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// An event filter (REST and WebSocket replay).
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub symbol: Option<String>,
    pub kinds: Option<Vec<crate::events::EventKind>>,
    pub since: Option<i64>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Events matching `f`, oldest first: the first `limit` after `since`, or
/// (without `since`) the newest `limit`.
pub fn query_events(
    c: &Connection,
    f: &EventFilter,
    limit: i64,
) -> rusqlite::Result<Vec<crate::events::Event>> {
    let mut cond = vec!["1 = 1".to_string()];
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |cond: &mut Vec<String>, sql: &str, v: rusqlite::types::Value| {
        args.push(v);
        cond.push(sql.replace('?', &format!("?{}", args.len())));
    };
    if let Some(s) = &f.symbol {
        arg(&mut cond, "symbol = ?", s.clone().into());
    }
    if let Some(since) = f.since {
        arg(&mut cond, "seq > ?", since.into());
    }
    if let Some(from) = f.from {
        arg(&mut cond, "ts >= ?", from.into());
    }
    if let Some(to) = f.to {
        arg(&mut cond, "ts <= ?", to.into());
    }
    if let Some(kinds) = &f.kinds {
        let start = args.len();
        let marks: Vec<String> = kinds
            .iter()
            .enumerate()
            .map(|(i, _)| format!("?{}", start + i + 1))
            .collect();
        args.extend(
            kinds
                .iter()
                .map(|k| rusqlite::types::Value::from(k.as_str().to_string())),
        );
        cond.push(format!("kind IN ({})", marks.join(", ")));
    }
    let order = if f.since.is_some() { "ASC" } else { "DESC" };
    args.push(limit.into());
    let sql = format!(
        "SELECT seq, ts, kind, symbol, detail FROM events WHERE {} ORDER BY seq {order} LIMIT ?{}",
        cond.join(" AND "),
        args.len()
    );
    let mut stmt = c.prepare(&sql)?;
    let mut rows = stmt
        .query_map(params_from_iter(args), crate::events::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if f.since.is_none() {
        rows.reverse();
    }
    Ok(rows)
}

/// The archive, newest first (also used by the bot).
pub fn versions(c: &Connection) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = c.prepare(
        "SELECT version, hash, contract_version, origin, status, note, params, created_at, deployed_at, retired_at,
                code IS NOT NULL
         FROM strategy_versions ORDER BY version DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        let params: String = r.get(6)?;
        Ok(json!({
            "version": r.get::<_, i64>(0)?,
            "hash": r.get::<_, String>(1)?,
            "contract_version": r.get::<_, String>(2)?,
            "origin": r.get::<_, String>(3)?,
            "status": r.get::<_, String>(4)?,
            "note": r.get::<_, Option<String>>(5)?,
            "params": serde_json::from_str::<Value>(&params).unwrap_or(json!([])),
            "created_at": r.get::<_, String>(7)?,
            "deployed_at": r.get::<_, Option<String>>(8)?,
            "retired_at": r.get::<_, Option<String>>(9)?,
            "has_source": r.get::<_, bool>(10)?,
        }))
    })?;
    rows.collect()
}

/// The orchestrator's runs, parameter changes and AI calls, newest first
/// (empty lists when the orchestrator's tables do not exist).
pub fn ai_decisions_json(c: &Connection, limit: i64) -> rusqlite::Result<Value> {
    let mut runs = Vec::new();
    if table_exists(c, "orchestrator_runs")? {
        let mut stmt = c.prepare(
            "SELECT id, run_id, ts, trigger, proposer, decision, template, params, outcome, rejection_code, rejection,
                    deployed_version, report
             FROM orchestrator_runs ORDER BY ts DESC, id DESC LIMIT ?1",
        )?;
        runs = stmt
            .query_map([limit], |r| {
                let params: String = r.get(7)?;
                let report: String = r.get(12)?;
                Ok(json!({
                    "id": r.get::<_, i64>(0)?,
                    "run_id": r.get::<_, String>(1)?,
                    "ts": r.get::<_, i64>(2)?,
                    "trigger": r.get::<_, String>(3)?,
                    "proposer": r.get::<_, Option<String>>(4)?,
                    "decision": r.get::<_, String>(5)?,
                    "template": r.get::<_, Option<String>>(6)?,
                    "params": serde_json::from_str::<Value>(&params).unwrap_or(json!([])),
                    "outcome": r.get::<_, String>(8)?,
                    "rejection_code": r.get::<_, Option<String>>(9)?,
                    "rejection": r.get::<_, Option<String>>(10)?,
                    "deployed_version": r.get::<_, Option<i64>>(11)?,
                    "report": report,
                }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    let mut changes = Vec::new();
    if table_exists(c, "config_history")? {
        let mut stmt = c.prepare(
            "SELECT id, ts, param, symbol, old_value, new_value, reason, confidence, run_id
             FROM config_history ORDER BY ts DESC, id DESC LIMIT ?1",
        )?;
        changes = stmt
            .query_map([limit], |r| {
                Ok(json!({
                    "id": r.get::<_, i64>(0)?,
                    "ts": r.get::<_, i64>(1)?,
                    "param": r.get::<_, String>(2)?,
                    "symbol": r.get::<_, String>(3)?,
                    "old_value": r.get::<_, Option<String>>(4)?,
                    "new_value": r.get::<_, String>(5)?,
                    "reason": r.get::<_, String>(6)?,
                    "confidence": r.get::<_, Option<f64>>(7)?,
                    "run_id": r.get::<_, Option<String>>(8)?,
                }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    let mut audit = Vec::new();
    if table_exists(c, "ai_audit")? {
        let mut stmt = c.prepare(
            "SELECT id, ts, trigger, model, tokens_in, tokens_out, latency_ms, cost_usd, status
             FROM ai_audit ORDER BY ts DESC, id DESC LIMIT ?1",
        )?;
        audit = stmt
            .query_map([limit], |r| {
                Ok(json!({
                    "id": r.get::<_, i64>(0)?,
                    "ts": r.get::<_, i64>(1)?,
                    "trigger": r.get::<_, String>(2)?,
                    "model": r.get::<_, String>(3)?,
                    "tokens_in": r.get::<_, i64>(4)?,
                    "tokens_out": r.get::<_, i64>(5)?,
                    "latency_ms": r.get::<_, i64>(6)?,
                    "cost_usd": r.get::<_, f64>(7)?,
                    "status": r.get::<_, Option<i64>>(8)?,
                }))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    Ok(json!({ "runs": runs, "config_changes": changes, "audit": audit }))
}

/// How many scans the strategy has answered, and when the last one ran.
pub fn scan_summary(conn: &Connection) -> rusqlite::Result<(i64, Option<i64>)> {
    conn.query_row("SELECT COUNT(*), MAX(ts) FROM scan_results", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
}

/// One [`KarmaTrade`](trading_core::karma::KarmaTrade) per closed trade of
/// `mode`, oldest first. The opening signal is the latest acted-on buy of
/// the trade's symbol and tag at or before its opening time: its confidence,
/// and the strategy version of its scan.
pub fn karma_trades(
    c: &Connection,
    mode: &str,
) -> rusqlite::Result<Vec<trading_core::karma::KarmaTrade>> {
    let mut stmt = c.prepare(
        "SELECT t.symbol, COALESCE(t.tag, ''), COALESCE(t.intent, ''), t.pnl, s.confidence, r.strategy_version
         FROM trades t
         LEFT JOIN signals s ON s.id = (
             SELECT s2.id FROM signals s2
             WHERE s2.symbol = t.symbol AND s2.action = 'buy' AND s2.acted_on = 1
               AND COALESCE(s2.tag, '') = COALESCE(t.tag, '') AND s2.ts <= t.opened_at
             ORDER BY s2.ts DESC, s2.id DESC LIMIT 1)
         LEFT JOIN scan_results r ON r.seq = s.scan_seq
         WHERE t.mode = ?1 ORDER BY t.id",
    )?;
    let rows = stmt.query_map([mode], |r| {
        Ok(trading_core::karma::KarmaTrade {
            symbol: r.get(0)?,
            tag: r.get(1)?,
            intent: r.get(2)?,
            pnl: crate::db::decimal(&r.get::<_, String>(3)?)?,
            confidence: r.get(4)?,
            version: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The karma scorecard of `mode` (seed 002): the API, the bot and the
/// orchestrator's context read this one function.
pub fn scorecard(c: &Connection, mode: &str) -> rusqlite::Result<trading_core::karma::Scorecard> {
    Ok(trading_core::karma::scorecard(&karma_trades(c, mode)?))
}

#[cfg(test)]
mod karma_tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// Two versions' scans, their acted-on buys and the trades they opened;
    /// the trade #3 has no acted-on buy before it (confidence and version unknown).
    #[test]
    fn each_trade_is_scored_with_the_signal_that_opened_it() {
        let c = crate::db::open_in_memory().unwrap();
        c.execute_batch(
            "INSERT INTO scan_results (seq, ts, strategy_version, module_hash, signals, fuel) VALUES (1, 100, 1, 'h1', 1, 0), (2, 200, 2, 'h2', 2, 0);
             INSERT INTO signals (scan_seq, ts, symbol, action, size_pct, order_type, confidence, tag, decision, acted_on) VALUES
               (1, 100, 'BTC', 'buy', 1, 'market', 0.9, 'cross', 'approved', 1),
               (2, 200, 'BTC', 'buy', 1, 'market', 0.2, 'dip', 'refused', 0),
               (2, 200, 'ETH', 'buy', 1, 'market', 0.6, 'dip', 'approved', 1);
             INSERT INTO trades (symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, intent, tag, close_reason, opened_at, closed_at, mode) VALUES
               ('BTC', 'long', '1', '10', '12', '2', 20, '0', 'swing', 'cross', 'signal', 160, 900, 'paper'),
               ('ETH', 'long', '1', '10', '9', '-1', -10, '0', 'day', 'dip', 'stop_loss', 260, 900, 'paper'),
               ('BTC', 'long', '1', '10', '9', '-1.5', -15, '0', 'swing', 'dip', 'stop_loss', 260, 900, 'paper'),
               ('BTC', 'long', '1', '10', '9', '-7', -15, '0', 'swing', 'cross', 'stop_loss', 260, 900, 'live');",
        )
        .unwrap();
        let t = karma_trades(&c, "paper").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].version, t[0].confidence, t[0].pnl),
            (Some(1), Some(0.9), dec!(2))
        );
        assert_eq!(
            (t[1].version, t[1].confidence, t[1].intent.as_str()),
            (Some(2), Some(0.6), "day")
        );
        assert_eq!(
            (t[2].version, t[2].confidence),
            (None, None),
            "the refused dip buy opened nothing"
        );
        let s = scorecard(&c, "paper").unwrap();
        assert_eq!(s.overall.trades, 3);
        assert_eq!(s.overall.total_pnl, dec!(-0.5));
        assert_eq!(s.by_version["unknown"].trades, 1);
        // (0.9 − 1)² and (0.6 − 0)²: (0.01 + 0.36) / 2
        assert!((s.overall.brier.unwrap() - 0.185).abs() < 1e-12);
    }

    #[test]
    fn an_unparsable_stored_pnl_is_an_error_not_a_zero() {
        let c = crate::db::open_in_memory().unwrap();
        c.execute_batch(
            "INSERT INTO trades (symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, close_reason, opened_at, closed_at, mode)
             VALUES ('BTC', 'long', '1', '10', '12', 'two', 20, '0', 'signal', 1, 2, 'paper');",
        )
        .unwrap();
        assert!(scorecard(&c, "paper").is_err());
    }
}
