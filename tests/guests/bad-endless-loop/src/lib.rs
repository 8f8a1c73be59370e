//! Test guest: `analyze` spins forever (the host must stop it with fuel or
//! its deadline).

use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

#[derive(Default)]
pub struct EndlessLoop {
    symbols: Vec<String>,
}

impl Strategy for EndlessLoop {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        let mut i = black_box(self.symbols.len() as u64);
        loop {
            i = black_box(i.wrapping_add(1));
        }
    }
}

guest_sdk::export_strategy!(EndlessLoop);
