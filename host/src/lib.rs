//! The rigid shell of the trading host: sandbox runtime, market data, money
//! (portfolio, fills, risk), storage, and the services built on them.

pub mod runtime;
pub mod archive;
pub mod db;
pub mod events;
