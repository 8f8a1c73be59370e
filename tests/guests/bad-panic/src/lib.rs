//! Test guest: `analyze` panics with "boom: deliberate panic" (the SDK's
//! panic hook logs it to the host before the guest traps).

use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

#[derive(Default)]
pub struct Panics {
    symbols: Vec<String>,
}

impl Strategy for Panics {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        if black_box(true) {
            panic!("boom: deliberate panic");
        }
        black_box(self.symbols.len());
        Vec::new()
    }
}

guest_sdk::export_strategy!(Panics);
