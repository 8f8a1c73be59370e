//! The rigid shell of the trading host: sandbox runtime, market data, money
//! (portfolio, fills, risk), storage, and the services built on them.

pub mod bench;
pub mod config;
pub mod dropdir;
pub mod shell;
