//! Test guest: a strategy built with `wit_bindgen::generate!` against its own
//! copy of the contract stamped 0.9.0, so it exports
//! `trading:contract/strategy@0.9.0`. The bodies are trivial; the host must
//! refuse the module for its contract version before calling any of them.

wit_bindgen::generate!({
    path: "wit",
    world: "strategy-module",
    generate_all,
});

use exports::trading::contract::strategy::{ClosedTrade, Fill, Guest, Portfolio, RiskLimits, Signal};

pub struct OldContract;

impl Guest for OldContract {
    fn initialize(_limits: RiskLimits, _symbols: Vec<String>, _params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }
    fn scan_interval_minutes() -> u32 {
        60
    }
    fn analyze(_now: i64, _portfolio: Portfolio) -> Vec<Signal> {
        Vec::new()
    }
    fn on_fill(_fill: Fill) {}
    fn on_position_closed(_trade: ClosedTrade) {}
    fn get_state() -> Vec<u8> {
        Vec::new()
    }
    fn load_state(_state: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(OldContract);
