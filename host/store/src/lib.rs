//! Everything the host keeps in its SQLite database, one module per table
//! family: the connection and migrations (`db`), the hash-chained event log
//! (`events`), the trading account persisted per bar (`account`), the candle
//! store in three tiers (`candles`), the archive of strategy versions
//! (`archive`), the truth queries over the recorded history (`truth_db`),
//! the read queries the services share (`queries`: the karma scorecard too),
//! honest selection's trials, shadows and deploy expectations (`selection`),
//! the counterfactuals of refused entries (`shadow_db`), the configuration
//! last run with (`config_log`), the market regimes last seen (`regime_log`)
//! and the one-writer lock on the data directory (`lock`). Events are typed (`events`, `payloads`).
//! Depends on trading-core for money and on host-sandbox only for a module's
//! identity (hash, contract); it never runs a module, a venue or a clock.

pub mod account;
pub mod archive;
pub mod candles;
pub mod config_log;
pub mod db;
pub mod events;
pub mod lock;
pub mod payloads;
pub mod queries;
pub mod regime_log;
pub mod selection;
pub mod shadow_db;
pub mod truth_db;
