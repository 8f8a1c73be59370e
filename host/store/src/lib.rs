//! Everything the host keeps in its SQLite database, one module per table
//! family: the connection and migrations (`db`), the hash-chained event log
//! (`events`), the trading account persisted per bar (`account`), the candle
//! store in three tiers (`candles`), the archive of strategy versions
//! (`archive`), the truth queries over the recorded history (`truth_db`),
//! the read queries the services share (`queries`), honest selection's
//! trials, shadows and deploy expectations (`selection`) and the one-writer
//! lock on the data directory (`lock`).
//! Depends on trading-core for money and on host-sandbox only for a module's
//! identity (hash, contract); it never runs a module, a venue or a clock.

pub mod account;
pub mod archive;
pub mod candles;
pub mod db;
pub mod events;
pub mod lock;
pub mod queries;
pub mod selection;
pub mod truth_db;
