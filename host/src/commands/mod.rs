//! One file per `host` command.

pub(crate) mod backtest;
pub(crate) mod data;
pub(crate) mod deploy;
pub(crate) mod orchestrate;
pub(crate) mod run;
pub(crate) mod status;
