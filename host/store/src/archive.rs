//! Strategy versions: every deployed component is numbered, its bytes, source
//! (when known) and metadata written to `archive/strategy_vNNN/` and to the
//! database, so startup can fall back from file to database copy. Also reads
//! back what the dashboard shows of the archive: a version's `backtest.json`
//! and an orchestrator candidate's source (only under its own run id).

use host_sandbox::{module_hash, ModuleInfo};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("archive file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("strategy version {0} does not exist")]
    NoSuchVersion(i64),
    #[error("no earlier version to roll back to")]
    NothingToRollBack,
    #[error("version {version}: the archive file is missing or damaged and the database holds no good copy")]
    Unrecoverable { version: i64 },
    #[error("archive file {path}: {detail}")]
    BadFile { path: PathBuf, detail: String },
}

/// The backtest a version was deployed on (`strategy_vNNN/backtest.json`,
/// written by the orchestrator): its span, result and equity curve.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ArchivedBacktest {
    pub start: i64,
    pub end: i64,
    pub starting_capital: rust_decimal::Decimal,
    pub final_value: rust_decimal::Decimal,
    pub return_pct: Option<f64>,
    pub equity_curve: Vec<trading_core::EquityPoint>,
}

/// The largest archived file the dashboard reads (a backtest, a source).
const MAX_READ_BYTES: u64 = 32 << 20;

fn read_capped(path: &Path) -> Result<Option<String>, ArchiveError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    if meta.len() > MAX_READ_BYTES {
        return Err(ArchiveError::BadFile {
            path: path.to_path_buf(),
            detail: format!("{} bytes, more than {MAX_READ_BYTES}", meta.len()),
        });
    }
    std::fs::read_to_string(path).map(Some).map_err(io(path))
}

/// The backtest archived with `version`; `None` when it has none (deployed
/// by hand). A file that is not a backtest report is an error.
pub fn backtest(
    archive_dir: &Path,
    version: i64,
) -> Result<Option<ArchivedBacktest>, ArchiveError> {
    let path = version_dir(archive_dir, version).join("backtest.json");
    let Some(text) = read_capped(&path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ArchiveError::BadFile {
            path,
            detail: e.to_string(),
        })
}

/// The source of orchestrator candidate `run_id`
/// (`archive/candidates/<run_id>/strategy.rs`); `None` when it was not
/// written, or `run_id` is not a run id (letters, digits, `-`, `_`).
pub fn candidate_source(archive_dir: &Path, run_id: &str) -> Result<Option<String>, ArchiveError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 64
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Ok(None);
    }
    read_capped(
        &archive_dir
            .join("candidates")
            .join(run_id)
            .join("strategy.rs"),
    )
}

/// One row of `strategy_versions` without the bytes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionRecord {
    pub version: i64,
    pub hash: String,
    pub contract_version: String,
    pub params: Vec<(String, String)>,
    pub origin: String,
    pub status: String,
    pub note: Option<String>,
    pub created_at: String,
    pub deployed_at: Option<String>,
}

/// Where a version's bytes were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BytesSource {
    File,
    Database,
}

pub fn version_dir(archive_dir: &Path, version: i64) -> PathBuf {
    archive_dir.join(format!("strategy_v{version:03}"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Records a new version (status `staged`): files first, then the row.
pub fn add_version(
    conn: &Connection,
    archive_dir: &Path,
    wasm: &[u8],
    code: Option<&str>,
    params: &[(String, String)],
    origin: &str,
    info: &ModuleInfo,
) -> Result<i64, ArchiveError> {
    let version: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(version), 0) + 1 FROM strategy_versions")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))?;
    let dir = version_dir(archive_dir, version);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let wasm_path = dir.join("strategy.wasm");
    std::fs::write(&wasm_path, wasm).map_err(io(&wasm_path))?;
    if let Some(code) = code {
        let p = dir.join("strategy.rs");
        std::fs::write(&p, code).map_err(io(&p))?;
    }
    let params_json = serde_json::to_string(params).unwrap_or_else(|_| "[]".into());
    let meta = serde_json::json!({
        "version": version, "hash": info.hash, "contract_version": info.contract_version,
        "size": info.size, "origin": origin, "params": params,
    });
    let meta_path = dir.join("meta.json");
    std::fs::write(
        &meta_path,
        serde_json::to_vec_pretty(&meta).unwrap_or_default(),
    )
    .map_err(io(&meta_path))?;
    conn.prepare_cached("INSERT INTO strategy_versions (version, hash, contract_version, wasm, code, params, origin, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'staged')").and_then(|mut st| st.execute(params![version, info.hash, info.contract_version, wasm, code, params_json, origin]))?;
    Ok(version)
}

/// Makes `version` the active one; the previous active becomes `archived`.
pub fn activate(conn: &Connection, version: i64) -> Result<(), ArchiveError> {
    let tx = conn.unchecked_transaction()?;
    tx.prepare_cached("UPDATE strategy_versions SET status = 'archived', retired_at = datetime('now') WHERE status = 'active' AND version != ?1").and_then(|mut st| st.execute([version]))?;
    let n = tx.prepare_cached("UPDATE strategy_versions SET status = 'active', deployed_at = datetime('now') WHERE version = ?1").and_then(|mut st| st.execute([version]))?;
    if n == 0 {
        return Err(ArchiveError::NoSuchVersion(version));
    }
    crate::db::set_meta(&tx, "active_strategy_version", &version.to_string())?;
    tx.commit()?;
    Ok(())
}

pub fn set_status(
    conn: &Connection,
    version: i64,
    status: &str,
    note: Option<&str>,
) -> Result<(), ArchiveError> {
    conn.prepare_cached(
        "UPDATE strategy_versions SET status = ?2, note = COALESCE(?3, note) WHERE version = ?1",
    )
    .and_then(|mut st| st.execute(params![version, status, note]))?;
    Ok(())
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
    let params: String = r.get(3)?;
    Ok(VersionRecord {
        version: r.get(0)?,
        hash: r.get(1)?,
        contract_version: r.get(2)?,
        params: serde_json::from_str(&params).unwrap_or_default(),
        origin: r.get(4)?,
        status: r.get(5)?,
        note: r.get(6)?,
        created_at: r.get(7)?,
        deployed_at: r.get(8)?,
    })
}

const COLS: &str =
    "version, hash, contract_version, params, origin, status, note, created_at, deployed_at";

pub fn list(conn: &Connection) -> Result<Vec<VersionRecord>, ArchiveError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM strategy_versions ORDER BY version"
    ))?;
    let rows = stmt
        .query_map([], record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, version: i64) -> Result<VersionRecord, ArchiveError> {
    conn.query_row(
        &format!("SELECT {COLS} FROM strategy_versions WHERE version = ?1"),
        [version],
        record,
    )
    .optional()?
    .ok_or(ArchiveError::NoSuchVersion(version))
}

pub fn active(conn: &Connection) -> Result<Option<VersionRecord>, ArchiveError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM strategy_versions WHERE status = 'active'"),
            [],
            record,
        )
        .optional()?)
}

/// The version to restore on rollback: the latest earlier version that was
/// deployed and did not fail.
pub fn previous(conn: &Connection) -> Result<VersionRecord, ArchiveError> {
    let current = active(conn)?.map(|v| v.version).unwrap_or(i64::MAX);
    conn.query_row(
        &format!(
            "SELECT {COLS} FROM strategy_versions WHERE version < ?1 AND deployed_at IS NOT NULL
             AND status NOT IN ('failed', 'rejected') ORDER BY version DESC LIMIT 1"
        ),
        [current],
        record,
    )
    .optional()?
    .ok_or(ArchiveError::NothingToRollBack)
}

/// The bytes of `version`: the archive file if its hash matches, else the
/// database copy (which is also checked), else an error.
pub fn load_bytes(
    conn: &Connection,
    archive_dir: &Path,
    version: i64,
) -> Result<(Vec<u8>, BytesSource), ArchiveError> {
    let rec = get(conn, version)?;
    let path = version_dir(archive_dir, version).join("strategy.wasm");
    if let Ok(bytes) = std::fs::read(&path) {
        if module_hash(&bytes) == rec.hash {
            return Ok((bytes, BytesSource::File));
        }
        tracing::warn!(version, path = %path.display(), "archive file does not match its recorded hash; using the database copy");
    }
    let bytes: Vec<u8> = conn
        .prepare_cached("SELECT wasm FROM strategy_versions WHERE version = ?1")
        .and_then(|mut st| st.query_row([version], |r| r.get(0)))?;
    if module_hash(&bytes) == rec.hash {
        Ok((bytes, BytesSource::Database))
    } else {
        Err(ArchiveError::Unrecoverable { version })
    }
}

/// Saves the strategy's state blob (kept: the last 20 per version).
pub fn save_state(
    conn: &Connection,
    version: i64,
    state: &[u8],
    scan_seq: i64,
) -> Result<(), ArchiveError> {
    conn.prepare_cached(
        "INSERT INTO strategy_state (version, state, scan_seq) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut st| st.execute(params![version, state, scan_seq]))?;
    conn.prepare_cached("DELETE FROM strategy_state WHERE rowid NOT IN (SELECT rowid FROM strategy_state ORDER BY rowid DESC LIMIT 20)").and_then(|mut st| st.execute([]))?;
    Ok(())
}

/// The most recently saved state, whichever version saved it.
pub fn latest_state(conn: &Connection) -> Result<Option<(i64, Vec<u8>, i64)>, ArchiveError> {
    Ok(conn
        .prepare_cached(
            "SELECT version, state, scan_seq FROM strategy_state ORDER BY rowid DESC LIMIT 1",
        )
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archived_backtest_is_read_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(backtest(dir.path(), 1).unwrap().is_none(), "none archived");
        let v = version_dir(dir.path(), 1);
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(
            v.join("backtest.json"),
            r#"{"start":0,"end":7200,"starting_capital":"10000","final_value":"10012.5","return_pct":0.125,
                "bars":3,"equity_curve":[{"ts":0,"value":"10000"},{"ts":3600,"value":"10012.5"}]}"#,
        )
        .unwrap();
        let b = backtest(dir.path(), 1).unwrap().unwrap();
        assert_eq!(b.equity_curve.len(), 2);
        assert_eq!(b.final_value.to_string(), "10012.5");
        std::fs::write(
            v.join("backtest.json"),
            r#"{"start":0,"end":1,"starting_capital":"x","final_value":"1","return_pct":null,"equity_curve":[]}"#,
        )
        .unwrap();
        assert!(matches!(
            backtest(dir.path(), 1),
            Err(ArchiveError::BadFile { .. })
        ));
    }

    #[test]
    fn a_candidate_source_is_read_only_under_its_own_run_id() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("candidates/20260101T033000-1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("strategy.rs"), "fn main() {}").unwrap();
        std::fs::write(dir.path().join("secret.rs"), "no").unwrap();
        assert_eq!(
            candidate_source(dir.path(), "20260101T033000-1")
                .unwrap()
                .as_deref(),
            Some("fn main() {}")
        );
        assert_eq!(candidate_source(dir.path(), "nope").unwrap(), None);
        for bad in ["..", "../secret", "a/b", "", "x y"] {
            assert_eq!(candidate_source(dir.path(), bad).unwrap(), None, "{bad:?}");
        }
    }
}
