//! Getting a strategy ready to serve: [`prepare`] validates, instantiates and
//! initialises a component off the scan thread; [`prepare_archived`] does it
//! for an archived version (re-activation or rollback); [`deploy_offline`]
//! records a deploy in the database when no host is running, for the next
//! start. The swap itself happens in the scan loop, between two scans.

use crate::Paths;
use host_sandbox::{ModuleError, ModuleInfo, Runtime, StrategyInstance, StrategyModule};
use host_store::{archive, events};
use host_trading::risk_file::RiskFile;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Why an offline deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("archive: {0}")]
    Archive(#[from] archive::ArchiveError),
    #[error("the new strategy refused the saved state: {0}")]
    StateRefused(ModuleError),
    /// A host runs on this data directory (and did not answer its socket).
    #[error(transparent)]
    Locked(#[from] host_store::lock::LockError),
}

/// A strategy validated, instantiated and initialised, waiting to be swapped in.
pub struct Prepared {
    pub bytes: Vec<u8>,
    pub code: Option<String>,
    pub params: Vec<(String, String)>,
    pub origin: String,
    /// Set when re-activating an archived version (rollback).
    pub existing_version: Option<i64>,
    pub module: StrategyModule,
    pub instance: StrategyInstance,
    pub scan_minutes: u32,
}

impl Prepared {
    pub fn info(&self) -> &ModuleInfo {
        self.module.info()
    }
}

/// Validates, instantiates and initialises a strategy component.
pub fn prepare(
    rt: &Arc<Runtime>,
    bytes: Vec<u8>,
    risk: &RiskFile,
    symbols: &[String],
    params: Vec<(String, String)>,
    origin: &str,
) -> Result<Prepared, ModuleError> {
    let module = rt.load_strategy(&bytes)?;
    let mut instance = module.instantiate()?;
    instance.initialize(&risk.contract_view(), symbols, &params)?;
    let scan_minutes = instance.scan_interval_minutes()?;
    Ok(Prepared {
        bytes,
        code: None,
        params,
        origin: origin.to_string(),
        existing_version: None,
        module,
        instance,
        scan_minutes,
    })
}

/// Which archived version to make ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archived {
    /// This version (re-activation from the API, Telegram or the CLI).
    Version(i64),
    /// The version before the active one.
    Previous,
}

/// Loads an archived version and prepares it, ready to swap in.
pub fn prepare_archived(
    rt: &Arc<Runtime>,
    paths: &Paths,
    symbols: &[String],
    risk: &RiskFile,
    which: Archived,
) -> Result<Prepared, String> {
    let conn = host_store::db::open(&paths.db()).map_err(|e| e.to_string())?;
    let (rec, origin) = match which {
        Archived::Version(v) => (
            archive::get(&conn, v).map_err(|e| e.to_string())?,
            format!("activate v{v}"),
        ),
        Archived::Previous => {
            let prev = archive::previous(&conn).map_err(|e| e.to_string())?;
            let origin = format!("rollback to v{}", prev.version);
            (prev, origin)
        }
    };
    let (bytes, _) =
        archive::load_bytes(&conn, &paths.archive_dir, rec.version).map_err(|e| e.to_string())?;
    let mut p = prepare(rt, bytes, risk, symbols, rec.params.clone(), &origin)
        .map_err(|e| format!("version {} does not start: {e}", rec.version))?;
    p.existing_version = Some(rec.version);
    Ok(p)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployOutcome {
    pub version: i64,
    pub hash: String,
    pub previous: Option<i64>,
    /// The first scan served by the new version.
    pub first_scan: i64,
    pub state_bytes: usize,
}

pub fn deploy_offline(
    paths: &Paths,
    mut p: Prepared,
    now: i64,
) -> Result<DeployOutcome, DeployError> {
    std::fs::create_dir_all(&paths.data_dir).map_err(|source| DeployError::Io {
        path: paths.data_dir.clone(),
        source,
    })?;
    // the one-writer lock: never activate under a running host's feet
    let _lock = host_store::lock::DataDirLock::acquire(&paths.data_dir)?;
    let conn = host_store::db::open(&paths.db())?;
    let previous = archive::active(&conn)?.map(|v| v.version);
    if let Some((_, state, _)) = archive::latest_state(&conn)? {
        p.instance
            .load_state(&state)
            .map_err(DeployError::StateRefused)?;
    }
    let version = match p.existing_version {
        Some(v) => v,
        None => archive::add_version(
            &conn,
            &paths.archive_dir,
            &p.bytes,
            p.code.as_deref(),
            &p.params,
            &p.origin,
            p.info(),
        )?,
    };
    archive::activate(&conn, version)?;
    events::append(
        &conn,
        now,
        None,
        &events::Payload::Deploy(host_store::payloads::Deploy {
            version,
            previous,
            hash: Some(p.info().hash.clone()),
            origin: Some(p.origin.clone()),
            first_scan: None,
            offline: true,
        }),
    )?;
    let scans: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM scan_results", [], |r| {
        r.get(0)
    })?;
    Ok(DeployOutcome {
        version,
        hash: p.info().hash.clone(),
        previous,
        first_scan: scans + 1,
        state_bytes: 0,
    })
}
