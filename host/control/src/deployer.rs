//! [`Deployer`]: how a service that builds strategies (the orchestrator)
//! gets one live without knowing who runs the host. The scan loop's own
//! reviews hand it their [`HostHandle`] (the swap lands between two scans);
//! `host orchestrate` hands it [`SocketOrOffline`]: the running host's
//! control socket, else the archive for the next start. Either way the
//! candidate is validated and initialised before anything is swapped.

use crate::deploy::{deploy_offline, prepare, DeployError};
use crate::handle::{HandleError, HostHandle};
use crate::socket::{self as control, Reply, Request};
use crate::Paths;
use host_sandbox::{ModuleError, Runtime};
use host_trading::risk_file::RiskFile;
use std::path::Path;
use std::sync::Arc;

/// A strategy to put live: its component (already written to `path`, an
/// absolute path the host can read), its Rust source, the parameters it is
/// initialised with, and who made it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub path: &'a Path,
    pub wasm: &'a [u8],
    pub source: &'a str,
    /// Handed to `initialize` (and archived with the version).
    pub params: &'a [(String, String)],
    pub origin: &'a str,
    /// Unix seconds, for an offline deploy's archive record.
    pub now: i64,
}

/// Where a deployed candidate went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployed {
    pub version: i64,
    /// True when a running host swapped it in; false when it was archived
    /// as the active version for the next start.
    pub live: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployFailure {
    /// The running host refused it (its reason).
    #[error("the host refused it: {0}")]
    Refused(#[from] HandleError),
    /// It could not be loaded or initialised.
    #[error("the candidate does not start: {0}")]
    Module(#[from] ModuleError),
    #[error(transparent)]
    Offline(#[from] DeployError),
}

/// Gets a candidate live.
pub trait Deployer: Send + Sync {
    fn deploy(&self, c: &Candidate<'_>) -> Result<Deployed, DeployFailure>;
}

impl Deployer for HostHandle {
    fn deploy(&self, c: &Candidate<'_>) -> Result<Deployed, DeployFailure> {
        let o = self.deploy_candidate(c.path, c.params, c.source, c.origin)?;
        Ok(Deployed {
            version: o.version,
            live: true,
        })
    }
}

/// The running host's control socket; when no host answers, an offline
/// deploy into the archive (validated with this runtime first).
pub struct SocketOrOffline {
    pub paths: Paths,
    pub runtime: Arc<Runtime>,
    pub risk: RiskFile,
    pub symbols: Vec<String>,
}

impl Deployer for SocketOrOffline {
    fn deploy(&self, c: &Candidate<'_>) -> Result<Deployed, DeployFailure> {
        let req = Request::Deploy {
            path: c.path.to_path_buf(),
            params: c.params.to_vec(),
            source: Some(c.source.to_string()),
            origin: Some(c.origin.to_string()),
        };
        match control::request(&self.paths.socket(), &req) {
            Ok(Some(Reply::Deployed(o))) => Ok(Deployed {
                version: o.version,
                live: true,
            }),
            Ok(Some(Reply::Error { message })) => Err(HandleError::Refused(message).into()),
            Ok(Some(Reply::Refused(r))) => Err(HandleError::Control(r).into()),
            Ok(Some(other)) => Err(HandleError::Protocol(format!("{other:?}")).into()),
            // no host listening (or it went away): archive it for the next start
            Ok(None) | Err(_) => {
                let mut prepared = prepare(
                    &self.runtime,
                    c.wasm.to_vec(),
                    &self.risk,
                    &self.symbols,
                    c.params.to_vec(),
                    c.origin,
                )?;
                prepared.code = Some(c.source.to_string());
                let o = deploy_offline(&self.paths, prepared, c.now)?;
                Ok(Deployed {
                    version: o.version,
                    live: false,
                })
            }
        }
    }
}
