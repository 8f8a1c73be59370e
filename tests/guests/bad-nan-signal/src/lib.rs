//! Test guest: `analyze` returns one buy for the first symbol (or "BTC-USD"
//! when initialize got none) whose `size_pct` is NaN.

use guest_sdk::{signal, Action, Init, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

#[derive(Default)]
pub struct NanSignal {
    symbols: Vec<String>,
}

impl Strategy for NanSignal {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        let symbol = self.symbols.first().map_or("BTC-USD", String::as_str);
        let mut s = signal(symbol, Action::Buy, black_box(f64::NAN));
        s.tag = "nan-size".into();
        vec![s]
    }
}

guest_sdk::export_strategy!(NanSignal);
