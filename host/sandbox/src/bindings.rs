//! `bindgen!` for both worlds of the contract, in one place. The analysis world
//! reuses the strategy world's shared interfaces so each WIT type has one Rust type.

pub mod strategy_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "strategy-module",
        additional_derives: [PartialEq],
    });
}

pub mod analysis_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "analysis-module",
        with: {
            "trading:contract/types": super::strategy_world::trading::contract::types,
            "trading:contract/host": super::strategy_world::trading::contract::host,
        },
        additional_derives: [PartialEq],
    });
}

pub use analysis_world::exports::trading::contract::analysis::{Metric, MetricValue, Report};
pub use analysis_world::trading::contract::database::{Rows, Value as DbValue};
pub use strategy_world::trading::contract::types::{
    Action, Candle, ClosedTrade, Fill, Intent, Interval, LogLevel, OpenPosition, OrderType,
    Portfolio, RiskLimits, Side, Signal, SymbolData,
};

/// The contract version this host speaks (the WIT package version).
pub const CONTRACT_VERSION: &str = "1.1.0";
pub const CONTRACT_PACKAGE: &str = "trading:contract";
