//! The trading side that backtest, paper and live share, above the sandbox,
//! the store and the venues and below the shell: the [`trader::Trader`] that
//! drives a strategy (sandboxed or native) through the one engine of
//! trading-core; the live account that books a venue's fills (`live`); the
//! bar feeds (`feed`: replay; `live::ExchangeFeed`: a venue's websocket);
//! backtests, walk-forward and sweeps (`backtest`); forward shadows on their
//! own paper accounts (`shadow`); the user's hard limits (`risk_file`);
//! failpoints for crash tests (`failpoint`). It never reads the host's
//! settings file nor talks to the control plane.

pub mod backtest;
pub mod failpoint;
pub mod feed;
pub mod live;
pub mod risk_file;
pub mod shadow;
pub mod trader;

/// Paper (the bars fill orders) or live (a venue fills them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Paper,
    Live,
}
