//! The SQLite database: opening (WAL), schema migrations keyed by
//! `PRAGMA user_version`, and the small typed helpers other modules share.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Migrations, applied in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: core tables
    r#"
    CREATE TABLE system_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE candles (
        symbol TEXT NOT NULL,
        interval TEXT NOT NULL,
        ts INTEGER NOT NULL,
        open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
        volume REAL NOT NULL,
        PRIMARY KEY (symbol, interval, ts)
    ) WITHOUT ROWID;
    CREATE TABLE strategy_versions (
        version INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        contract_version TEXT NOT NULL,
        wasm BLOB NOT NULL,
        code TEXT,
        params TEXT NOT NULL DEFAULT '[]',
        origin TEXT NOT NULL,
        status TEXT NOT NULL,
        note TEXT,
        created_at TEXT NOT NULL DEFAULT (datetime('now')),
        deployed_at TEXT,
        retired_at TEXT
    );
    CREATE TABLE strategy_state (
        version INTEGER NOT NULL,
        state BLOB NOT NULL,
        scan_seq INTEGER NOT NULL,
        saved_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE scan_results (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        strategy_version INTEGER,
        module_hash TEXT,
        signals INTEGER NOT NULL,
        fuel INTEGER,
        error TEXT,
        created_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE TABLE signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scan_seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        action TEXT NOT NULL,
        size_pct REAL NOT NULL,
        order_type TEXT NOT NULL,
        confidence REAL,
        tag TEXT,
        reasoning TEXT,
        decision TEXT NOT NULL,
        reason TEXT,
        acted_on INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE fills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        action TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        fee TEXT NOT NULL,
        tag TEXT,
        client_order_id TEXT
    );
    CREATE TABLE trades (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty TEXT NOT NULL,
        entry_price TEXT NOT NULL,
        exit_price TEXT NOT NULL,
        pnl TEXT NOT NULL,
        pnl_pct REAL NOT NULL,
        fees TEXT NOT NULL,
        intent TEXT,
        tag TEXT,
        close_reason TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        closed_at INTEGER NOT NULL
    );
    CREATE TABLE daily_snapshots (
        day TEXT PRIMARY KEY,
        ts INTEGER NOT NULL,
        value TEXT NOT NULL,
        cash TEXT NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        symbol TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    "#,
    // 2: the trading account (paper and live): orders with client ids, fill
    // detail for rebuilding the ledger, engine snapshots
    r#"
    ALTER TABLE fills ADD COLUMN order_id INTEGER;
    ALTER TABLE fills ADD COLUMN mode TEXT NOT NULL DEFAULT 'paper';
    ALTER TABLE fills ADD COLUMN kind TEXT;
    ALTER TABLE fills ADD COLUMN venue_fill_id TEXT;
    CREATE UNIQUE INDEX fills_venue_fill ON fills (venue_fill_id) WHERE venue_fill_id IS NOT NULL;
    ALTER TABLE trades ADD COLUMN mode TEXT NOT NULL DEFAULT 'paper';
    ALTER TABLE trades ADD COLUMN return_pct REAL;
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        client_order_id TEXT NOT NULL UNIQUE,
        mode TEXT NOT NULL,
        venue TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT,
        status TEXT NOT NULL,
        venue_order_id TEXT,
        reason TEXT,
        request TEXT NOT NULL,
        created_ts INTEGER NOT NULL,
        updated_ts INTEGER NOT NULL
    );
    CREATE INDEX orders_status ON orders (status);
    CREATE TABLE account_snapshot (
        mode TEXT PRIMARY KEY,
        engine TEXT NOT NULL,
        bar_ts INTEGER NOT NULL,
        fills INTEGER NOT NULL,
        saved_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE INDEX signals_ts ON signals (ts);
    CREATE INDEX trades_closed ON trades (closed_at);
    CREATE INDEX events_kind ON events (kind, seq);
    "#,
    // 3: the orchestrator: AI audit, runs, observations, config history, triggers
    r#"
    CREATE TABLE ai_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt TEXT NOT NULL,
        response TEXT NOT NULL,
        tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL,
        latency_ms INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        status INTEGER
    );
    CREATE INDEX ai_audit_ts ON ai_audit (ts);
    CREATE TABLE orchestrator_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        proposer TEXT,
        decision TEXT NOT NULL,
        template TEXT,
        params TEXT NOT NULL DEFAULT '[]',
        outcome TEXT NOT NULL,
        rejection_code TEXT,
        rejection TEXT,
        deployed_version INTEGER,
        report TEXT NOT NULL
    );
    CREATE TABLE observations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        run_id TEXT,
        category TEXT NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX observations_ts ON observations (ts);
    CREATE TABLE config_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        param TEXT NOT NULL,
        symbol TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT NOT NULL,
        reason TEXT NOT NULL,
        confidence REAL,
        run_id TEXT
    );
    CREATE TABLE tuning_triggers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        priority INTEGER NOT NULL,
        detail TEXT NOT NULL,
        run_id TEXT
    );
    "#,
    // Live: venue fills the host did not make (or could not book), and the
    // cash adjustments that keep the ledger equal to the venue. Rebuilding the
    // ledger replays each adjustment right after the fill `after_fill`.
    r#"
    CREATE TABLE external_fills (
        venue_fill_id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        venue_order_id TEXT,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        fee TEXT NOT NULL,
        ts INTEGER NOT NULL,
        reason TEXT NOT NULL,
        recorded_ts INTEGER NOT NULL
    );
    CREATE TABLE ledger_adjustments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL,
        ts INTEGER NOT NULL,
        after_fill INTEGER NOT NULL,
        asset TEXT NOT NULL,
        amount TEXT NOT NULL,
        ledger TEXT NOT NULL,
        venue TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    "#,
    // The orchestrator's attempts: every candidate a cycle tried (the first
    // answer and each repair), with how far it got and why it stopped; the
    // memory of past attempts and the bandit over decision kinds read it.
    r#"
    CREATE TABLE orchestrator_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        subject TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        decision TEXT NOT NULL,
        source_hash TEXT NOT NULL,
        outcome TEXT NOT NULL,
        rejection_code TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX orchestrator_attempts_ts ON orchestrator_attempts (ts);
    "#,
    // Honest selection: every candidate tested (the deflated Sharpe ratio
    // counts them), candidates in their forward shadow, the signals a shadow
    // made (never sent), and what a deployed version promised (the rollback rule).
    r#"
    CREATE TABLE selection_trials (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        template TEXT NOT NULL,
        sharpe REAL,
        p_value REAL,
        passed INTEGER NOT NULL
    );
    CREATE TABLE shadow_candidates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        origin TEXT NOT NULL,
        wasm BLOB NOT NULL,
        source TEXT NOT NULL,
        params TEXT NOT NULL,
        shadow_days REAL NOT NULL,
        tolerance_pct REAL NOT NULL,
        expected_return_pct_per_day REAL NOT NULL,
        expected_max_drawdown_pct REAL NOT NULL,
        started_at INTEGER,
        decided_at INTEGER,
        candidate_return_pct REAL,
        incumbent_return_pct REAL,
        candidate_max_drawdown_pct REAL,
        signals INTEGER NOT NULL DEFAULT 0,
        version INTEGER,
        detail TEXT
    );
    CREATE TABLE shadow_signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shadow_id INTEGER NOT NULL REFERENCES shadow_candidates(id),
        ts INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        action TEXT NOT NULL,
        size_pct REAL,
        decision TEXT NOT NULL,
        reason TEXT
    );
    CREATE TABLE deploy_expectations (
        version INTEGER PRIMARY KEY,
        recorded_at INTEGER NOT NULL,
        basis TEXT NOT NULL,
        return_pct_per_day REAL NOT NULL,
        max_drawdown_pct REAL NOT NULL,
        baseline_ts INTEGER,
        baseline_equity TEXT,
        baseline_trades INTEGER,
        peak_equity TEXT,
        rolled_back_at INTEGER,
        reason TEXT
    );
    "#,
    // Counterfactuals (seed 004): every refused entry followed to its
    // would-be exit (`trading_core::shadow`); open while exit_at is NULL.
    r#"
    CREATE TABLE counterfactuals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL,
        symbol TEXT NOT NULL,
        decided_at INTEGER NOT NULL,
        decision_price TEXT NOT NULL,
        qty TEXT NOT NULL,
        stop_loss TEXT,
        take_profit TEXT,
        tag TEXT NOT NULL,
        intent TEXT NOT NULL,
        confidence TEXT,
        refusal_kind TEXT NOT NULL,
        refusal TEXT NOT NULL,
        strategy_version INTEGER,
        horizon_at INTEGER NOT NULL,
        entry_at INTEGER,
        entry_price TEXT,
        close_requested_at INTEGER,
        exit_at INTEGER,
        exit_price TEXT,
        exit_reason TEXT,
        pnl TEXT,
        pnl_pct TEXT
    );
    CREATE INDEX counterfactuals_open ON counterfactuals (mode, symbol) WHERE exit_at IS NULL;
    "#,
];

/// Opens (creating if needed) the database at `path` and migrates it.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // every per-bar statement stays prepared (`prepare_cached`): parsing
    // SQL was a tenth of a paper replay's time
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&conn)?;
    Ok(conn)
}

/// An in-memory database with the full schema (tests, backtests).
pub fn open_in_memory() -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let done: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// A money value stored as decimal text. Text that is not a decimal is a
/// conversion error (the query fails with it), never a silent zero.
pub fn decimal(text: &str) -> rusqlite::Result<rust_decimal::Decimal> {
    text.parse().map_err(|e: rust_decimal::Error| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("stored money {text:?} is not a decimal: {e}").into(),
        )
    })
}

pub fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM system_meta WHERE key = ?1")
        .and_then(|mut st| st.query_row([key], |r| r.get(0)))
        .optional()
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO system_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = datetime('now')",
    )
    .and_then(|mut st| st.execute(params![key, value]))?;
    Ok(())
}

const META_PAUSED: &str = "paused_symbols";

/// The symbols a person paused (no new entries), kept across restarts.
/// A stored list that does not parse is an error, never an empty list.
pub fn paused_symbols(conn: &Connection) -> rusqlite::Result<std::collections::BTreeSet<String>> {
    match get_meta(conn, META_PAUSED)? {
        None => Ok(Default::default()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("stored paused symbols {text:?}: {e}").into(),
            )
        }),
    }
}

pub fn set_paused_symbols(
    conn: &Connection,
    symbols: &std::collections::BTreeSet<String>,
) -> rusqlite::Result<()> {
    let text = serde_json::to_string(symbols)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    set_meta(conn, META_PAUSED, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the API's P&L sums turned stored money that failed to parse into 0.
    #[test]
    fn unparsable_stored_money_is_an_error_not_zero() {
        assert_eq!(decimal("-12.345").unwrap().to_string(), "-12.345");
        for bad in ["", "lots", "1e400", "NaN", "1,5"] {
            let e = decimal(bad).unwrap_err();
            assert!(
                matches!(e, rusqlite::Error::FromSqlConversionFailure(..)),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn migrates_once_and_meta_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        {
            let c = open(&p).unwrap();
            set_meta(&c, "k", "v1").unwrap();
            set_meta(&c, "k", "v2").unwrap();
        }
        let c = open(&p).unwrap();
        assert_eq!(get_meta(&c, "k").unwrap().as_deref(), Some("v2"));
        assert_eq!(get_meta(&c, "missing").unwrap(), None);
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }
}
