//! The running host as the API and the Telegram bot see it: typed calls into
//! the scan loop (through the same [`control::answer`] the control socket
//! uses), the live event stream, and read-only database connections.

use crate::socket::{self as control, ControlContext, Recordable, Refusal, Reply, Request};
use crate::{DeployOutcome, KillOutcome, Paths, Status};
use host_store::events::{Bus, Event};
use host_trading::risk_file::RiskFile;
use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The host refused or could not carry out the request (its message).
    #[error("{0}")]
    Refused(String),
    #[error("unexpected reply from the host: {0}")]
    Protocol(String),
    /// The control channel refused the request (typed).
    #[error(transparent)]
    Control(#[from] Refusal),
}

/// A cheap, cloneable handle on the running host. Calls block until the
/// scan loop answers (at most a few seconds): from async code wrap them in
/// `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct HostHandle {
    ctx: ControlContext,
    bus: Bus,
    /// The events the host published while it started (halts, orphans,
    /// missing modules, balance mismatches), published before any notifier
    /// could subscribe: the one notifier that takes them sends them first
    /// ([`HostHandle::take_backlog`]).
    backlog: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
}

fn refused(r: Reply) -> HandleError {
    match r {
        Reply::Error { message } => HandleError::Refused(message),
        Reply::Refused(r) => HandleError::Control(r),
        other => HandleError::Protocol(format!("{other:?}")),
    }
}

impl HostHandle {
    pub fn new(ctx: ControlContext, bus: Bus) -> Self {
        HostHandle {
            ctx,
            bus,
            backlog: Default::default(),
        }
    }

    /// The same handle, holding `events` (what startup published) for the notifier.
    pub fn with_backlog(self, events: Vec<Event>) -> Self {
        if let Ok(mut b) = self.backlog.lock() {
            *b = events;
        }
        self
    }

    fn ask(&self, req: Request) -> Reply {
        control::answer(&self.ctx, req)
    }

    pub fn status(&self) -> Result<Status, HandleError> {
        match self.ask(Request::Status) {
            Reply::Status(s) => Ok(*s),
            r => Err(refused(r)),
        }
    }

    /// Halts new entries; true when newly halted.
    pub fn halt(&self, by: &str) -> Result<bool, HandleError> {
        match self.ask(Request::Halt {
            by: Some(by.to_string()),
        }) {
            Reply::Halted { newly } => Ok(newly),
            r => Err(refused(r)),
        }
    }

    /// Clears halts and the kill switch; true when something was cleared.
    pub fn resume(&self, by: &str) -> Result<bool, HandleError> {
        match self.ask(Request::Resume {
            by: Some(by.to_string()),
        }) {
            Reply::Resumed { cleared } => Ok(cleared),
            r => Err(refused(r)),
        }
    }

    /// The kill switch (the caller confirms first).
    pub fn kill(&self, by: &str) -> Result<KillOutcome, HandleError> {
        match self.ask(Request::Kill {
            by: Some(by.to_string()),
        }) {
            Reply::Killed(k) => Ok(k),
            r => Err(refused(r)),
        }
    }

    /// Pauses (`pause`) or resumes entries on `symbol`; true when its state changed.
    pub fn toggle_symbol(&self, symbol: &str, pause: bool, by: &str) -> Result<bool, HandleError> {
        let (symbol, by) = (symbol.to_string(), Some(by.to_string()));
        let req = if pause {
            Request::PauseSymbol { symbol, by }
        } else {
            Request::ResumeSymbol { symbol, by }
        };
        match self.ask(req) {
            Reply::SymbolToggled { changed, .. } => Ok(changed),
            r => Err(refused(r)),
        }
    }

    /// Closes `symbol`'s position at market; the quantity queued (None: no position).
    pub fn force_exit(
        &self,
        symbol: &str,
        by: &str,
    ) -> Result<Option<rust_decimal::Decimal>, HandleError> {
        match self.ask(Request::ForceExit {
            symbol: symbol.to_string(),
            by: Some(by.to_string()),
        }) {
            Reply::ForceExit { qty, .. } => Ok(qty),
            r => Err(refused(r)),
        }
    }

    /// Records a manual tuning trigger; returns its event sequence.
    pub fn trigger_review(&self, by: &str, reason: &str) -> Result<Option<i64>, HandleError> {
        match self.ask(Request::Review {
            by: Some(by.to_string()),
            reason: reason.to_string(),
        }) {
            Reply::Recorded { seq } => Ok(seq),
            r => Err(refused(r)),
        }
    }

    /// Appends an event to the host's hash-chained log (through the scan loop,
    /// so the chain stays whole); returns its sequence.
    pub fn record_event(&self, event: Recordable) -> Result<Option<i64>, HandleError> {
        match control::record(&self.ctx, event) {
            Reply::Recorded { seq } => Ok(seq),
            r => Err(refused(r)),
        }
    }

    fn deployed(&self, req: Request) -> Result<DeployOutcome, HandleError> {
        match self.ask(req) {
            Reply::Deployed(o) => Ok(o),
            r => Err(refused(r)),
        }
    }

    /// Re-activates archived version `version` (hot-swapped between two scans).
    pub fn deploy_version(&self, version: i64) -> Result<DeployOutcome, HandleError> {
        self.deployed(Request::Activate { version })
    }

    /// Deploys a component file (hot-swapped between two scans).
    pub fn deploy_file(
        &self,
        path: &std::path::Path,
        origin: &str,
    ) -> Result<DeployOutcome, HandleError> {
        self.deployed(Request::Deploy {
            path: path.to_path_buf(),
            params: self.ctx.strategy_params.clone(),
            source: None,
            origin: Some(origin.to_string()),
        })
    }

    /// Deploys a generated component with its parameters and source (the
    /// orchestrator's candidates).
    pub fn deploy_candidate(
        &self,
        path: &std::path::Path,
        params: &[(String, String)],
        source: &str,
        origin: &str,
    ) -> Result<DeployOutcome, HandleError> {
        self.deployed(Request::Deploy {
            path: path.to_path_buf(),
            params: params.to_vec(),
            source: Some(source.to_string()),
            origin: Some(origin.to_string()),
        })
    }

    /// Rolls back to the version before the active one.
    pub fn rollback(&self) -> Result<DeployOutcome, HandleError> {
        self.deployed(Request::Rollback)
    }

    /// Every event appended from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.bus.subscribe()
    }

    /// The startup events, for the first caller only (later ones get none).
    pub fn take_backlog(&self) -> Vec<Event> {
        self.backlog
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
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

    /// The configured symbols.
    pub fn symbols(&self) -> &[String] {
        &self.ctx.symbols
    }

    pub fn risk(&self) -> &RiskFile {
        &self.ctx.risk
    }

    pub fn paths(&self) -> &Paths {
        &self.ctx.paths
    }
}
