//! The read queries the API and the bot share, in one place: closed trades,
//! the event log with its filter, the strategy archive and the
//! orchestrator's decisions, each as the JSON rows both show; and the
//! dashboard views' typed rows: a symbol's candles and fills, the event
//! kinds, the tuner log (runs with their report's reasoning, confidence and
//! figures, and parameter changes; filterable), a version's source and live
//! results. Stored money that does not parse is an error, never 0.

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

// ---- the dashboard's views (symbol detail, tuner log, versions, events) ----

/// One fill as the symbol view marks it on the chart.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FillRow {
    pub id: i64,
    pub ts: i64,
    pub symbol: String,
    /// `buy` or `sell`.
    pub action: String,
    pub qty: rust_decimal::Decimal,
    pub price: rust_decimal::Decimal,
    pub fee: rust_decimal::Decimal,
    pub tag: Option<String>,
}

/// The fills of `symbol` at or after `from`, oldest first, at most `limit`
/// (the newest ones). Stored money that does not parse is an error.
pub fn fills_for(
    c: &Connection,
    symbol: &str,
    from: i64,
    limit: i64,
) -> rusqlite::Result<Vec<FillRow>> {
    let mut stmt = c.prepare(
        "SELECT id, ts, symbol, action, qty, price, fee, tag FROM fills
         WHERE symbol = ?1 AND ts >= ?2 ORDER BY ts DESC, id DESC LIMIT ?3",
    )?;
    let mut rows = stmt
        .query_map(rusqlite::params![symbol, from, limit], |r| {
            Ok(FillRow {
                id: r.get(0)?,
                ts: r.get(1)?,
                symbol: r.get(2)?,
                action: r.get(3)?,
                qty: crate::db::decimal(&r.get::<_, String>(4)?)?,
                price: crate::db::decimal(&r.get::<_, String>(5)?)?,
                fee: crate::db::decimal(&r.get::<_, String>(6)?)?,
                tag: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

/// The candle tiers stored for `symbol` (`5m`, `1h`, `1d`, finest first).
pub fn candle_tiers(c: &Connection, symbol: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare(
        "SELECT DISTINCT interval FROM candles WHERE symbol = ?1
         ORDER BY CASE interval WHEN '5m' THEN 0 WHEN '1h' THEN 1 WHEN '1d' THEN 2 ELSE 3 END",
    )?;
    let rows = stmt.query_map([symbol], |r| r.get(0))?;
    rows.collect()
}

/// The newest `limit` candles of one tier, oldest first.
pub fn recent_candles(
    c: &Connection,
    symbol: &str,
    interval: &str,
    limit: i64,
) -> rusqlite::Result<Vec<trading_core::Candle>> {
    let mut stmt = c.prepare(
        "SELECT ts, open, high, low, close, volume FROM candles
         WHERE symbol = ?1 AND interval = ?2 ORDER BY ts DESC LIMIT ?3",
    )?;
    let mut rows = stmt
        .query_map(rusqlite::params![symbol, interval, limit], |r| {
            Ok(trading_core::Candle {
                ts: r.get(0)?,
                open: r.get(1)?,
                high: r.get(2)?,
                low: r.get(3)?,
                close: r.get(4)?,
                volume: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

/// Every event kind in the log, sorted (the events view's filter).
pub fn event_kinds(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare("SELECT DISTINCT kind FROM events ORDER BY kind")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Which orchestrator runs the tuner log shows (each `None` matches all).
#[derive(Debug, Default, Clone)]
pub struct TunerFilter {
    pub trigger: Option<String>,
    pub decision: Option<String>,
    /// The run's outcome: `deployed`, `rejected`, `no_change`, `analysis_updated`.
    pub result: Option<String>,
}

/// A parameter's value before and after a run (`config_history`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamChange {
    pub param: String,
    pub symbol: String,
    pub old_value: Option<String>,
    pub new_value: String,
    pub reason: String,
    pub confidence: Option<f64>,
}

/// One figure a check measured (`CheckFigures` in the run's report).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figure {
    pub name: String,
    pub value: Option<f64>,
}

/// One orchestrator decision as the tuner log shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TunerRun {
    pub id: i64,
    pub run_id: String,
    pub ts: i64,
    pub trigger: String,
    pub proposer: Option<String>,
    pub decision: String,
    pub template: Option<String>,
    /// The candidate's parameters.
    pub params: Vec<(String, String)>,
    /// `deployed`, `rejected`, `no_change` or `analysis_updated`.
    pub result: String,
    pub rejection_code: Option<String>,
    pub rejection: Option<String>,
    pub deployed_version: Option<i64>,
    /// The proposer's reasoning (the report's rationale).
    pub reasoning: Option<String>,
    /// How sure the proposer was (0..1), when it said.
    pub confidence: Option<f64>,
    /// The version the candidate was measured against, when the report names it.
    pub incumbent_version: Option<i64>,
    /// What the checks measured (numbers only; `None` where a check did not run).
    pub figures: Vec<Figure>,
    /// Parameters before → after (recorded when the run deployed).
    pub changes: Vec<ParamChange>,
}

/// The part of a stored cycle report the tuner log reads.
#[derive(serde::Deserialize)]
struct ReportView {
    #[serde(default)]
    rationale: Option<String>,
    #[serde(default)]
    confidence: Option<f64>,
    #[serde(default)]
    incumbent_version: Option<i64>,
    #[serde(default)]
    figures: std::collections::BTreeMap<String, Value>,
}

fn bad_report(run_id: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        12,
        rusqlite::types::Type::Text,
        format!("orchestrator run {run_id}: its stored report is not a cycle report: {e}").into(),
    )
}

/// The orchestrator's decisions matching `f`, newest first, at most
/// `limit`, each with its reasoning, confidence, check figures and
/// parameter changes. A stored report that is not a cycle report is an
/// error, never an empty row. No orchestrator tables: no runs.
pub fn tuner_runs(c: &Connection, f: &TunerFilter, limit: i64) -> rusqlite::Result<Vec<TunerRun>> {
    if !table_exists(c, "orchestrator_runs")? {
        return Ok(Vec::new());
    }
    let mut stmt = c.prepare(
        "SELECT id, run_id, ts, trigger, proposer, decision, template, params, outcome, rejection_code,
                rejection, deployed_version, report
         FROM orchestrator_runs
         WHERE (?1 IS NULL OR trigger = ?1) AND (?2 IS NULL OR decision = ?2) AND (?3 IS NULL OR outcome = ?3)
         ORDER BY ts DESC, id DESC LIMIT ?4",
    )?;
    let mut runs = stmt
        .query_map(
            rusqlite::params![f.trigger, f.decision, f.result, limit],
            |r| {
                let run_id: String = r.get(1)?;
                let params: String = r.get(7)?;
                let params: Vec<(String, String)> =
                    serde_json::from_str(&params).map_err(|e| bad_report(&run_id, e))?;
                let report: String = r.get(12)?;
                let view: ReportView =
                    serde_json::from_str(&report).map_err(|e| bad_report(&run_id, e))?;
                let figures = view
                    .figures
                    .into_iter()
                    .filter_map(|(name, v)| match v {
                        Value::Number(n) => Some(Figure {
                            name,
                            value: n.as_f64(),
                        }),
                        Value::Null => Some(Figure { name, value: None }),
                        _ => None,
                    })
                    .collect();
                Ok(TunerRun {
                    id: r.get(0)?,
                    run_id,
                    ts: r.get(2)?,
                    trigger: r.get(3)?,
                    proposer: r.get(4)?,
                    decision: r.get(5)?,
                    template: r.get(6)?,
                    params,
                    result: r.get(8)?,
                    rejection_code: r.get(9)?,
                    rejection: r.get(10)?,
                    deployed_version: r.get(11)?,
                    reasoning: view.rationale,
                    confidence: view.confidence,
                    incumbent_version: view.incumbent_version,
                    figures,
                    changes: Vec::new(),
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if table_exists(c, "config_history")? {
        let mut stmt = c.prepare(
            "SELECT param, symbol, old_value, new_value, reason, confidence FROM config_history
             WHERE run_id = ?1 ORDER BY id",
        )?;
        for run in &mut runs {
            run.changes = stmt
                .query_map([&run.run_id], |r| {
                    Ok(ParamChange {
                        param: r.get(0)?,
                        symbol: r.get(1)?,
                        old_value: r.get(2)?,
                        new_value: r.get(3)?,
                        reason: r.get(4)?,
                        confidence: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            if run.confidence.is_none() {
                run.confidence = run.changes.iter().find_map(|c| c.confidence);
            }
        }
    }
    Ok(runs)
}

/// The values the tuner log's filters offer: every trigger, decision and
/// result recorded, sorted.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TunerFacets {
    pub triggers: Vec<String>,
    pub decisions: Vec<String>,
    pub results: Vec<String>,
}

pub fn tuner_facets(c: &Connection) -> rusqlite::Result<TunerFacets> {
    if !table_exists(c, "orchestrator_runs")? {
        return Ok(TunerFacets::default());
    }
    let distinct = |col: &str| -> rusqlite::Result<Vec<String>> {
        let mut stmt = c.prepare(&format!(
            "SELECT DISTINCT {col} FROM orchestrator_runs ORDER BY {col}"
        ))?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    };
    Ok(TunerFacets {
        triggers: distinct("trigger")?,
        decisions: distinct("decision")?,
        results: distinct("outcome")?,
    })
}

/// The stored source of a version (`None`: not archived, or no such version).
pub fn version_source(c: &Connection, version: i64) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(c.query_row(
        "SELECT code FROM strategy_versions WHERE version = ?1",
        [version],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()?
    .flatten())
}

/// What a version did live: the scans it answered and the trades it
/// entered (a trade belongs to the version whose scan came last before its
/// entry filled).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LiveResults {
    pub scans: i64,
    pub first_scan_ts: Option<i64>,
    pub last_scan_ts: Option<i64>,
    pub trades: i64,
    pub wins: i64,
    pub losses: i64,
    pub pnl: rust_decimal::Decimal,
    pub fees: rust_decimal::Decimal,
    /// Closed-trade P&L summed in order of closing: (closed_at, cumulative P&L).
    pub pnl_curve: Vec<(i64, rust_decimal::Decimal)>,
}

pub fn live_results(c: &Connection, version: i64) -> rusqlite::Result<LiveResults> {
    let (scans, first_scan_ts, last_scan_ts) = c.query_row(
        "SELECT COUNT(*), MIN(ts), MAX(ts) FROM scan_results WHERE strategy_version = ?1",
        [version],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut out = LiveResults {
        scans,
        first_scan_ts,
        last_scan_ts,
        ..LiveResults::default()
    };
    let mut stmt = c.prepare(
        "SELECT t.closed_at, t.pnl, t.fees FROM trades t
         WHERE (SELECT s.strategy_version FROM scan_results s WHERE s.ts <= t.opened_at
                ORDER BY s.ts DESC, s.seq DESC LIMIT 1) = ?1
         ORDER BY t.closed_at, t.id",
    )?;
    let rows = stmt.query_map([version], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            crate::db::decimal(&r.get::<_, String>(1)?)?,
            crate::db::decimal(&r.get::<_, String>(2)?)?,
        ))
    })?;
    for row in rows {
        let (closed, pnl, fees) = row?;
        out.trades += 1;
        out.wins += i64::from(pnl > rust_decimal::Decimal::ZERO);
        out.losses += i64::from(pnl < rust_decimal::Decimal::ZERO);
        out.pnl += pnl;
        out.fees += fees;
        out.pnl_curve.push((closed, out.pnl));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    fn run(
        c: &Connection,
        run_id: &str,
        ts: i64,
        trigger: &str,
        decision: &str,
        outcome: &str,
        report: &str,
    ) {
        c.execute(
            "INSERT INTO orchestrator_runs (run_id, ts, trigger, proposer, decision, template, params, outcome, report)
             VALUES (?1, ?2, ?3, 'offline', ?4, 'sma', '[[\"fast\",\"12\"]]', ?5, ?6)",
            params![run_id, ts, trigger, decision, outcome, report],
        )
        .unwrap();
    }

    #[test]
    fn the_tuner_log_filters_by_trigger_decision_and_result_and_reads_the_report() {
        let c = crate::db::open_in_memory().unwrap();
        let report = r#"{"rationale":"fast crosses too late","confidence":0.7,"incumbent_version":1,
            "figures":{"fuzz_calls":200,"candidate_oos_sharpe":0.41,"incumbent_oos_sharpe":null,"candidate_report":{"x":1}}}"#;
        run(&c, "r1", 100, "nightly", "new_strategy", "deployed", report);
        run(
            &c,
            "r2",
            200,
            "manual",
            "no_change",
            "no_change",
            r#"{"rationale":"fine"}"#,
        );
        run(
            &c,
            "r3",
            300,
            "nightly",
            "tune_params",
            "rejected",
            r#"{"rationale":"try"}"#,
        );
        c.execute(
            "INSERT INTO config_history (ts, param, symbol, old_value, new_value, reason, confidence, run_id)
             VALUES (100, 'fast', '*', '10', '12', 'faster', 0.6, 'r1')",
            [],
        )
        .unwrap();
        let all = tuner_runs(&c, &TunerFilter::default(), 10).unwrap();
        assert_eq!(
            all.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
            ["r3", "r2", "r1"]
        );
        let r1 = &all[2];
        assert_eq!(r1.reasoning.as_deref(), Some("fast crosses too late"));
        assert_eq!(r1.confidence, Some(0.7), "the report's confidence wins");
        assert_eq!(r1.incumbent_version, Some(1));
        assert_eq!(r1.params, vec![("fast".to_string(), "12".to_string())]);
        assert_eq!(
            r1.figures,
            vec![
                Figure {
                    name: "candidate_oos_sharpe".into(),
                    value: Some(0.41)
                },
                Figure {
                    name: "fuzz_calls".into(),
                    value: Some(200.0)
                },
                Figure {
                    name: "incumbent_oos_sharpe".into(),
                    value: None
                },
            ]
        );
        assert_eq!(r1.changes.len(), 1);
        assert_eq!(r1.changes[0].old_value.as_deref(), Some("10"));
        assert_eq!(r1.changes[0].new_value, "12");
        let f = |t: Option<&str>, d: Option<&str>, r: Option<&str>| TunerFilter {
            trigger: t.map(String::from),
            decision: d.map(String::from),
            result: r.map(String::from),
        };
        let ids = |f: TunerFilter| -> Vec<String> {
            tuner_runs(&c, &f, 10)
                .unwrap()
                .into_iter()
                .map(|r| r.run_id)
                .collect()
        };
        assert_eq!(ids(f(Some("nightly"), None, None)), ["r3", "r1"]);
        assert_eq!(ids(f(None, Some("no_change"), None)), ["r2"]);
        assert_eq!(ids(f(None, None, Some("rejected"))), ["r3"]);
        assert_eq!(
            ids(f(Some("manual"), None, Some("deployed"))),
            Vec::<String>::new()
        );
        let facets = tuner_facets(&c).unwrap();
        assert_eq!(facets.triggers, ["manual", "nightly"]);
        assert_eq!(facets.results, ["deployed", "no_change", "rejected"]);
    }

    #[test]
    fn a_stored_report_that_is_not_a_cycle_report_is_an_error_not_an_empty_row() {
        let c = crate::db::open_in_memory().unwrap();
        run(
            &c,
            "bad",
            1,
            "nightly",
            "no_change",
            "no_change",
            "not json",
        );
        let e = tuner_runs(&c, &TunerFilter::default(), 10).unwrap_err();
        assert!(
            matches!(e, rusqlite::Error::FromSqlConversionFailure(..)),
            "{e}"
        );
    }

    #[test]
    fn live_results_count_the_trades_each_version_entered() {
        let c = crate::db::open_in_memory().unwrap();
        for (seq, ts, v) in [(1, 100, 1), (2, 200, 1), (3, 300, 2), (4, 400, 2)] {
            c.execute(
                "INSERT INTO scan_results (seq, ts, strategy_version, signals) VALUES (?1, ?2, ?3, 0)",
                params![seq, ts, v],
            )
            .unwrap();
        }
        // opened after v1's scan at 200 → v1; after v2's scan at 300 → v2
        for (opened, closed, pnl) in [(250, 320, "5.50"), (350, 420, "-2.25"), (410, 500, "1.00")] {
            c.execute(
                "INSERT INTO trades (symbol, side, qty, entry_price, exit_price, pnl, pnl_pct, fees, close_reason, opened_at, closed_at)
                 VALUES ('BTCUSD', 'long', '1', '1', '1', ?1, 0, '0.10', 'signal', ?2, ?3)",
                params![pnl, opened, closed],
            )
            .unwrap();
        }
        let v1 = live_results(&c, 1).unwrap();
        assert_eq!(
            (v1.scans, v1.first_scan_ts, v1.last_scan_ts),
            (2, Some(100), Some(200))
        );
        assert_eq!((v1.trades, v1.wins, v1.losses), (1, 1, 0));
        assert_eq!(v1.pnl.to_string(), "5.50");
        let v2 = live_results(&c, 2).unwrap();
        assert_eq!((v2.trades, v2.wins, v2.losses), (2, 1, 1));
        assert_eq!(v2.pnl.to_string(), "-1.25");
        assert_eq!(v2.fees.to_string(), "0.20");
        assert_eq!(
            v2.pnl_curve
                .iter()
                .map(|(t, p)| (*t, p.to_string()))
                .collect::<Vec<_>>(),
            [(420, "-2.25".to_string()), (500, "-1.25".to_string())]
        );
        assert_eq!(live_results(&c, 3).unwrap(), LiveResults::default());
        // stored money that does not parse is an error, never 0
        c.execute("UPDATE trades SET pnl = 'lots' WHERE opened_at = 350", [])
            .unwrap();
        assert!(live_results(&c, 2).is_err());
        assert!(live_results(&c, 1).is_ok());
    }

    #[test]
    fn fills_and_candles_for_the_symbol_chart() {
        let c = crate::db::open_in_memory().unwrap();
        for (ts, action, price) in [
            (3600, "buy", "100.5"),
            (7200, "sell", "101"),
            (10800, "buy", "99"),
        ] {
            c.execute(
                "INSERT INTO fills (ts, symbol, action, qty, price, fee) VALUES (?1, 'BTCUSD', ?2, '0.5', ?3, '0.01')",
                params![ts, action, price],
            )
            .unwrap();
        }
        let f = fills_for(&c, "BTCUSD", 7200, 10).unwrap();
        assert_eq!(f.iter().map(|x| x.ts).collect::<Vec<_>>(), [7200, 10800]);
        assert_eq!(f[0].price.to_string(), "101");
        assert_eq!(
            fills_for(&c, "BTCUSD", 0, 1).unwrap()[0].ts,
            10800,
            "the newest when limited"
        );
        c.execute("UPDATE fills SET price = '' WHERE ts = 3600", [])
            .unwrap();
        assert!(fills_for(&c, "BTCUSD", 0, 10).is_err());
        for (iv, ts) in [("1d", 0), ("1h", 0), ("1h", 3600), ("5m", 0)] {
            c.execute(
                "INSERT INTO candles (symbol, interval, ts, open, high, low, close, volume) VALUES ('BTCUSD', ?1, ?2, 1, 2, 0.5, 1.5, 10)",
                params![iv, ts],
            )
            .unwrap();
        }
        assert_eq!(candle_tiers(&c, "BTCUSD").unwrap(), ["5m", "1h", "1d"]);
        assert_eq!(candle_tiers(&c, "ETHUSD").unwrap(), Vec::<String>::new());
        let k = recent_candles(&c, "BTCUSD", "1h", 1).unwrap();
        assert_eq!((k.len(), k[0].ts), (1, 3600));
    }
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
