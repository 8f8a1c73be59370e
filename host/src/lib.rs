//! The rigid shell of the trading host: sandbox runtime, market data, money
//! (portfolio, fills, risk), storage, and the services built on them.

pub mod account;
pub mod api;
pub mod archive;
pub mod backtest;
pub mod bench;
pub mod candles;
pub mod config;
pub mod control;
pub mod db;
pub mod dropdir;
pub mod events;
pub mod exchange;
pub mod failpoint;
pub mod handle;
pub mod live;
pub mod orchestrator;
pub mod runtime;
pub mod shell;
pub mod telegram;
pub mod trader;
pub mod truth_db;
