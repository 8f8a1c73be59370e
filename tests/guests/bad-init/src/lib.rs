//! Test guest: `initialize` refuses with "refuses to start: deliberate".

use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

#[derive(Default)]
pub struct BadInit {
    symbols: Vec<String>,
}

impl Strategy for BadInit {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = black_box(init.symbols.clone());
        Err("refuses to start: deliberate".into())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        Vec::new()
    }
}

guest_sdk::export_strategy!(BadInit);
