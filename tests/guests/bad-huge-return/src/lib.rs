//! Test guest: `analyze` returns 10,000 valid-looking buy signals for the
//! first symbol (or "BTC-USD" when initialize got none).

use guest_sdk::{signal, Action, Init, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

pub const COUNT: usize = 10_000;

#[derive(Default)]
pub struct HugeReturn {
    symbols: Vec<String>,
}

impl Strategy for HugeReturn {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        let symbol = self.symbols.first().map_or("BTC-USD", String::as_str);
        (0..black_box(COUNT))
            .map(|i| {
                let mut s = signal(symbol, Action::Buy, 1.0);
                s.tag = format!("huge-{i}");
                s
            })
            .collect()
    }
}

guest_sdk::export_strategy!(HugeReturn);
