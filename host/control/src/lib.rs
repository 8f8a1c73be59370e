//! The control plane, below every service that steers the host: the typed
//! requests and replies of the control socket (`socket`), the [`Command`]s the
//! scan loop applies between two bars, [`HostHandle`] for the API and the bot,
//! the host's [`Paths`], what `status` shows, and getting a strategy ready to
//! swap in (`deploy`: prepare, prepare an archived version, deploy offline),
//! and the [`Deployer`] a strategy-building service is given to get one live.
//! It knows neither the shell nor the services above it.

mod command;
pub mod deploy;
mod deployer;
pub mod handle;
mod paths;
pub mod socket;
mod status;

pub use command::Command;
pub use deploy::{
    deploy_offline, prepare, prepare_archived, Archived, DeployError, DeployOutcome, Prepared,
};
pub use deployer::{Candidate, DeployFailure, Deployed, Deployer, SocketOrOffline};
pub use handle::{HandleError, HostHandle};
pub use paths::Paths;
pub use status::{
    Health, HealthCheck, HealthPart, KillOutcome, PositionStatus, ShadowStatus, Status,
    StrategyStatus,
};
