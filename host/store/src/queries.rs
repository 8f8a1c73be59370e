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
    pub kinds: Option<Vec<String>>,
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
                .map(|k| rusqlite::types::Value::from(k.clone())),
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
        .query_map(params_from_iter(args), |r| {
            let detail: String = r.get(4)?;
            Ok(crate::events::Event {
                seq: r.get(0)?,
                ts: r.get(1)?,
                kind: r.get(2)?,
                symbol: r.get(3)?,
                detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            })
        })?
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
