//! The host's one integration-test binary: the real `host` binary and the library driven as a user drives them.

mod common;
mod people_host;

mod analysis_modules;
mod api;
mod backtest;
mod control_socket;
mod dashboard;
mod data_import;
mod deploy;
mod hostile_compile;
mod live;
mod live_coinbase;
mod live_feed;
mod orchestrator;
mod paper;
mod parsers;
mod review_schedule;
mod sandbox;
mod selection;
mod telegram;
