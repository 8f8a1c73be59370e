//! The tables of honest selection: `selection_trials` (every candidate the
//! significance test saw, so the deflated Sharpe ratio counts them all),
//! `shadow_candidates` (a candidate that passed, waiting for or running its
//! forward shadow, then promoted or refused), `shadow_signals` (what a shadow
//! decided: recorded, never sent) and `deploy_expectations` (what a deployed
//! version promised, which the rollback rule holds it to).
//!
//! Invariants: a shadow moves `pending → running → promoted | refused` and
//! never back; an expectation's baseline is set once; money is decimal text
//! that fails loudly when it does not parse.

use rusqlite::{params, Connection, OptionalExtension};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Where a shadow candidate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowState {
    /// Written by a cycle, not yet picked up by the running host.
    Pending,
    /// Running beside the incumbent on live bars.
    Running,
    Promoted,
    Refused,
}

impl ShadowState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowState::Pending => "pending",
            ShadowState::Running => "running",
            ShadowState::Promoted => "promoted",
            ShadowState::Refused => "refused",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        match s {
            "pending" => Ok(ShadowState::Pending),
            "running" => Ok(ShadowState::Running),
            "promoted" => Ok(ShadowState::Promoted),
            "refused" => Ok(ShadowState::Refused),
            other => Err(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown shadow state {other:?}").into(),
            )),
        }
    }
}

/// A candidate the cycle passed, for the forward shadow.
#[derive(Debug, Clone, PartialEq)]
pub struct NewShadow<'a> {
    pub run_id: &'a str,
    pub created_at: i64,
    pub origin: &'a str,
    pub wasm: &'a [u8],
    pub source: &'a str,
    pub params: &'a [(String, String)],
    pub shadow_days: f64,
    pub tolerance_pct: f64,
    pub expected_return_pct_per_day: f64,
    pub expected_max_drawdown_pct: f64,
}

/// A stored shadow candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    pub id: i64,
    pub run_id: String,
    pub created_at: i64,
    pub state: ShadowState,
    pub origin: String,
    pub wasm: Vec<u8>,
    pub source: String,
    pub params: Vec<(String, String)>,
    pub shadow_days: f64,
    pub tolerance_pct: f64,
    pub expected_return_pct_per_day: f64,
    pub expected_max_drawdown_pct: f64,
    pub started_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub candidate_return_pct: Option<f64>,
    pub incumbent_return_pct: Option<f64>,
    pub candidate_max_drawdown_pct: Option<f64>,
    pub signals: i64,
    pub version: Option<i64>,
    pub detail: Option<String>,
}

impl Shadow {
    /// When the shadow ends (once started).
    pub fn until(&self) -> Option<i64> {
        self.started_at
            .map(|s| s.saturating_add((self.shadow_days * 86_400.0).round() as i64))
    }
}

const SHADOW_COLUMNS: &str = "id, run_id, created_at, status, origin, wasm, source, params, shadow_days, tolerance_pct, expected_return_pct_per_day, expected_max_drawdown_pct, started_at, decided_at, candidate_return_pct, incumbent_return_pct, candidate_max_drawdown_pct, signals, version, detail";

fn shadow_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Shadow> {
    let params: String = r.get(7)?;
    Ok(Shadow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        created_at: r.get(2)?,
        state: ShadowState::parse(&r.get::<_, String>(3)?)?,
        origin: r.get(4)?,
        wasm: r.get(5)?,
        source: r.get(6)?,
        params: serde_json::from_str(&params).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
        })?,
        shadow_days: r.get(8)?,
        tolerance_pct: r.get(9)?,
        expected_return_pct_per_day: r.get(10)?,
        expected_max_drawdown_pct: r.get(11)?,
        started_at: r.get(12)?,
        decided_at: r.get(13)?,
        candidate_return_pct: r.get(14)?,
        incumbent_return_pct: r.get(15)?,
        candidate_max_drawdown_pct: r.get(16)?,
        signals: r.get(17)?,
        version: r.get(18)?,
        detail: r.get(19)?,
    })
}

/// Stores a candidate for its shadow; returns its id.
pub fn add_shadow(conn: &Connection, s: &NewShadow<'_>) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO shadow_candidates (run_id, created_at, status, origin, wasm, source, params, shadow_days, tolerance_pct, expected_return_pct_per_day, expected_max_drawdown_pct)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)").and_then(|mut st| st.execute(params![
            s.run_id,
            s.created_at,
            ShadowState::Pending.as_str(),
            s.origin,
            s.wasm,
            s.source,
            serde_json::to_string(s.params).unwrap_or_else(|_| "[]".into()),
            s.shadow_days,
            s.tolerance_pct,
            s.expected_return_pct_per_day,
            s.expected_max_drawdown_pct
        ]))?;
    Ok(conn.last_insert_rowid())
}

/// Shadows in `state`, oldest first.
pub fn shadows(conn: &Connection, state: ShadowState) -> rusqlite::Result<Vec<Shadow>> {
    let mut q = conn.prepare_cached(&format!(
        "SELECT {SHADOW_COLUMNS} FROM shadow_candidates WHERE status = ?1 ORDER BY id"
    ))?;
    let rows = q.query_map([state.as_str()], shadow_row)?;
    rows.collect()
}

/// One shadow by id.
pub fn shadow(conn: &Connection, id: i64) -> rusqlite::Result<Option<Shadow>> {
    conn.query_row(
        &format!("SELECT {SHADOW_COLUMNS} FROM shadow_candidates WHERE id = ?1"),
        [id],
        shadow_row,
    )
    .optional()
}

/// A pending shadow starts running at `at`.
pub fn start_shadow(conn: &Connection, id: i64, at: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE shadow_candidates SET status = ?2, started_at = ?3 WHERE id = ?1 AND status = ?4",
    )
    .and_then(|mut st| {
        st.execute(params![
            id,
            ShadowState::Running.as_str(),
            at,
            ShadowState::Pending.as_str()
        ])
    })?;
    Ok(())
}

/// The running figures of a shadow.
pub fn update_shadow(
    conn: &Connection,
    id: i64,
    candidate_return_pct: Option<f64>,
    incumbent_return_pct: Option<f64>,
    candidate_max_drawdown_pct: Option<f64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE shadow_candidates SET candidate_return_pct = ?2, incumbent_return_pct = ?3, candidate_max_drawdown_pct = ?4 WHERE id = ?1").and_then(|mut st| st.execute(params![id, candidate_return_pct, incumbent_return_pct, candidate_max_drawdown_pct]))?;
    Ok(())
}

/// A running shadow ends: promoted (as `version`) or refused, with why.
pub fn decide_shadow(
    conn: &Connection,
    id: i64,
    at: i64,
    state: ShadowState,
    version: Option<i64>,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE shadow_candidates SET status = ?2, decided_at = ?3, version = ?4, detail = ?5 WHERE id = ?1 AND status = ?6").and_then(|mut st| st.execute(params![
            id,
            state.as_str(),
            at,
            version,
            detail,
            ShadowState::Running.as_str()
        ]))?;
    Ok(())
}

/// One signal a shadow made and the risk manager's decision on its paper account.
#[allow(clippy::too_many_arguments)]
pub fn record_shadow_signal(
    conn: &Connection,
    shadow_id: i64,
    ts: i64,
    symbol: &str,
    action: &str,
    size_pct: Option<f64>,
    decision: &str,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO shadow_signals (shadow_id, ts, symbol, action, size_pct, decision, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)").and_then(|mut st| st.execute(params![shadow_id, ts, symbol, action, size_pct, decision, reason]))?;
    conn.prepare_cached("UPDATE shadow_candidates SET signals = signals + 1 WHERE id = ?1")
        .and_then(|mut st| st.execute([shadow_id]))?;
    Ok(())
}

/// One candidate seen by the significance test.
pub fn record_trial(
    conn: &Connection,
    ts: i64,
    run_id: &str,
    template: &str,
    sharpe: Option<f64>,
    p_value: Option<f64>,
    passed: bool,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO selection_trials (ts, run_id, template, sharpe, p_value, passed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").and_then(|mut st| st.execute(params![ts, run_id, template, sharpe, p_value, passed]))?;
    Ok(())
}

/// How many candidates were tested so far, and the Sharpe ratios of those that had one.
pub fn trials(conn: &Connection) -> rusqlite::Result<(u64, Vec<f64>)> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM selection_trials")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))?;
    let mut q =
        conn.prepare_cached("SELECT sharpe FROM selection_trials WHERE sharpe IS NOT NULL")?;
    let s = q
        .query_map([], |r| r.get::<_, f64>(0))?
        .collect::<rusqlite::Result<Vec<f64>>>()?;
    Ok((n.max(0) as u64, s))
}

/// What a deployed version promised, and the account when it took over.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub version: i64,
    pub recorded_at: i64,
    /// `backtest` or `backtest+shadow`.
    pub basis: String,
    pub return_pct_per_day: f64,
    pub max_drawdown_pct: f64,
    pub baseline_ts: Option<i64>,
    pub baseline_equity: Option<Decimal>,
    pub baseline_trades: Option<i64>,
    pub peak_equity: Option<Decimal>,
    pub rolled_back_at: Option<i64>,
    pub reason: Option<String>,
}

/// Records (or replaces) what `version` promised.
pub fn expect(
    conn: &Connection,
    version: i64,
    at: i64,
    basis: &str,
    return_pct_per_day: f64,
    max_drawdown_pct: f64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO deploy_expectations (version, recorded_at, basis, return_pct_per_day, max_drawdown_pct) VALUES (?1, ?2, ?3, ?4, ?5)").and_then(|mut st| st.execute(params![version, at, basis, return_pct_per_day, max_drawdown_pct]))?;
    Ok(())
}

fn opt_decimal(s: Option<String>) -> rusqlite::Result<Option<Decimal>> {
    s.as_deref().map(crate::db::decimal).transpose()
}

pub fn expectation(conn: &Connection, version: i64) -> rusqlite::Result<Option<Expectation>> {
    let row = conn.prepare_cached("SELECT version, recorded_at, basis, return_pct_per_day, max_drawdown_pct, baseline_ts, baseline_equity, baseline_trades, peak_equity, rolled_back_at, reason FROM deploy_expectations WHERE version = ?1").and_then(|mut st| st.query_row([version],
            |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                    (r.get::<_, Option<String>>(6)?, r.get(7)?, r.get::<_, Option<String>>(8)?, r.get(9)?, r.get(10)?),
                ))
            }))
        .optional()?;
    let Some(((version, recorded_at, basis, ret, dd, bts), (beq, btr, peak, rb, reason))) = row
    else {
        return Ok(None);
    };
    Ok(Some(Expectation {
        version,
        recorded_at,
        basis,
        return_pct_per_day: ret,
        max_drawdown_pct: dd,
        baseline_ts: bts,
        baseline_equity: opt_decimal(beq)?,
        baseline_trades: btr,
        peak_equity: opt_decimal(peak)?,
        rolled_back_at: rb,
        reason,
    }))
}

/// The account when the version took over (set once).
pub fn set_baseline(
    conn: &Connection,
    version: i64,
    ts: i64,
    equity: Decimal,
    trades: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE deploy_expectations SET baseline_ts = ?2, baseline_equity = ?3, baseline_trades = ?4, peak_equity = ?3 WHERE version = ?1 AND baseline_ts IS NULL").and_then(|mut st| st.execute(params![version, ts, equity.to_string(), trades]))?;
    Ok(())
}

pub fn set_peak(conn: &Connection, version: i64, peak: Decimal) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE deploy_expectations SET peak_equity = ?2 WHERE version = ?1")
        .and_then(|mut st| st.execute(params![version, peak.to_string()]))?;
    Ok(())
}

pub fn mark_rolled_back(
    conn: &Connection,
    version: i64,
    at: i64,
    reason: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deploy_expectations SET rolled_back_at = ?2, reason = ?3 WHERE version = ?1",
    )
    .and_then(|mut st| st.execute(params![version, at, reason]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_moves_forward_only_and_trials_are_counted() {
        let conn = crate::db::open_in_memory().unwrap();
        let params = vec![("fast".to_string(), "12".to_string())];
        let id = add_shadow(
            &conn,
            &NewShadow {
                run_id: "r1",
                created_at: 100,
                origin: "orchestrator r1 sma-crossover",
                wasm: b"\0asm",
                source: "src",
                params: &params,
                shadow_days: 2.0,
                tolerance_pct: 1.0,
                expected_return_pct_per_day: 0.1,
                expected_max_drawdown_pct: 5.0,
            },
        )
        .unwrap();
        assert_eq!(shadows(&conn, ShadowState::Pending).unwrap().len(), 1);
        start_shadow(&conn, id, 3_600).unwrap();
        let s = shadow(&conn, id).unwrap().unwrap();
        assert_eq!(
            (s.state, s.until(), s.params.clone()),
            (ShadowState::Running, Some(3_600 + 2 * 86_400), params)
        );
        // starting twice does not move the start
        start_shadow(&conn, id, 9_999).unwrap();
        assert_eq!(shadow(&conn, id).unwrap().unwrap().started_at, Some(3_600));
        record_shadow_signal(
            &conn,
            id,
            7_200,
            "BTCUSD",
            "buy",
            Some(5.0),
            "approved",
            None,
        )
        .unwrap();
        decide_shadow(&conn, id, 200_000, ShadowState::Promoted, Some(2), "ok").unwrap();
        // a decided shadow stays decided
        decide_shadow(&conn, id, 300_000, ShadowState::Refused, None, "late").unwrap();
        let s = shadow(&conn, id).unwrap().unwrap();
        assert_eq!(
            (s.state, s.version, s.signals),
            (ShadowState::Promoted, Some(2), 1)
        );

        record_trial(&conn, 1, "r1", "t", Some(0.3), Some(0.2), false).unwrap();
        record_trial(&conn, 2, "r2", "t", None, None, false).unwrap();
        assert_eq!(trials(&conn).unwrap(), (2, vec![0.3]));

        expect(&conn, 2, 10, "backtest", 0.2, 4.0).unwrap();
        set_baseline(&conn, 2, 20, Decimal::new(10_000, 0), 3).unwrap();
        set_baseline(&conn, 2, 30, Decimal::new(1, 0), 9).unwrap();
        let e = expectation(&conn, 2).unwrap().unwrap();
        assert_eq!(
            (e.baseline_ts, e.baseline_equity, e.baseline_trades),
            (Some(20), Some(Decimal::new(10_000, 0)), Some(3))
        );
        conn.execute(
            "UPDATE deploy_expectations SET peak_equity = 'lots' WHERE version = 2",
            [],
        )
        .unwrap();
        assert!(
            expectation(&conn, 2).is_err(),
            "unparseable money is an error"
        );
    }
}
