//! The running host as the API and the Telegram bot see it: typed calls into
//! the scan loop (through the same [`control::answer`] the control socket
//! uses), the live event stream, and read-only database connections.

use crate::control::{self, ControlContext, Reply, Request};
use crate::shell::{DeployOutcome, KillOutcome, Status};
use host_store::events::{Bus, Event};
use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The host refused or could not carry out the request (its message).
    #[error("{0}")]
    Refused(String),
    #[error("unexpected reply from the host: {0}")]
    Protocol(String),
}

/// A cheap, cloneable handle on the running host. Calls block until the
/// scan loop answers (at most a few seconds): from async code wrap them in
/// `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct HostHandle {
    ctx: ControlContext,
    bus: Bus,
}

fn value<T: serde::de::DeserializeOwned>(r: Reply) -> Result<T, HandleError> {
    match r {
        Reply::Status(v) | Reply::Deployed(v) | Reply::Done { value: v } => {
            serde_json::from_value(v).map_err(|e| HandleError::Protocol(e.to_string()))
        }
        Reply::Error { message } => Err(HandleError::Refused(message)),
        Reply::Ok => Err(HandleError::Protocol("ok without a value".into())),
    }
}

impl HostHandle {
    pub fn new(ctx: ControlContext, bus: Bus) -> Self {
        HostHandle { ctx, bus }
    }

    fn ask<T: serde::de::DeserializeOwned>(&self, req: Request) -> Result<T, HandleError> {
        value(control::answer(&self.ctx, req))
    }

    pub fn status(&self) -> Result<Status, HandleError> {
        self.ask(Request::Status)
    }

    /// Halts new entries; true when newly halted.
    pub fn halt(&self, by: &str) -> Result<bool, HandleError> {
        self.ask(Request::Halt {
            by: Some(by.to_string()),
        })
    }

    /// Clears halts and the kill switch; true when something was cleared.
    pub fn resume(&self, by: &str) -> Result<bool, HandleError> {
        self.ask(Request::Resume {
            by: Some(by.to_string()),
        })
    }

    /// The kill switch (the caller confirms first).
    pub fn kill(&self, by: &str) -> Result<KillOutcome, HandleError> {
        self.ask(Request::Kill {
            by: Some(by.to_string()),
        })
    }

    /// Records a manual tuning trigger; returns its event sequence.
    pub fn trigger_review(&self, by: &str, reason: &str) -> Result<Option<i64>, HandleError> {
        self.ask(Request::Review {
            by: Some(by.to_string()),
            reason: reason.to_string(),
        })
    }

    /// Appends an event to the host's hash-chained log (through the scan loop,
    /// so the chain stays whole); returns its sequence.
    pub fn record_event(
        &self,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<Option<i64>, HandleError> {
        self.ask(Request::Record {
            kind: kind.to_string(),
            detail,
        })
    }

    /// Re-activates archived version `version` (hot-swapped between two scans).
    pub fn deploy_version(&self, version: i64) -> Result<DeployOutcome, HandleError> {
        self.ask(Request::Activate { version })
    }

    /// Deploys a component file (hot-swapped between two scans).
    pub fn deploy_file(
        &self,
        path: &std::path::Path,
        origin: &str,
    ) -> Result<DeployOutcome, HandleError> {
        self.ask(Request::Deploy {
            path: path.to_path_buf(),
            params: self.ctx.settings.strategy_params.clone(),
            source: None,
            origin: Some(origin.to_string()),
        })
    }

    /// Rolls back to the version before the active one.
    pub fn rollback(&self) -> Result<DeployOutcome, HandleError> {
        self.ask(Request::Rollback)
    }

    /// Every event appended from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.bus.subscribe()
    }

    /// A read-only connection to the host's database (SQLite refuses writes on it).
    pub fn read_db(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(
            self.ctx.paths.db(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(c)
    }

    pub fn settings(&self) -> &crate::config::Settings {
        &self.ctx.settings
    }

    pub fn risk(&self) -> &crate::config::RiskFile {
        &self.ctx.risk
    }

    pub fn paths(&self) -> &crate::shell::Paths {
        &self.ctx.paths
    }
}
