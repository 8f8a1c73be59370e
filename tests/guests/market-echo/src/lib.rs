//! Test guest: each scan logs, per symbol, what `market.latest` returns for
//! the hourly interval: `latest <symbol> none`, or
//! `latest <symbol> <ts> <open> <high> <low> <close> <volume>` with every
//! float as the hex of its bits, so the host can check the lowering bit for bit.

use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};

#[derive(Default)]
pub struct MarketEcho {
    symbols: Vec<String>,
}

impl Strategy for MarketEcho {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        #[cfg(target_arch = "wasm32")]
        for sym in &self.symbols {
            use guest_sdk::bindings::trading::contract::market;
            let line = match market::latest(sym, guest_sdk::Interval::H1) {
                None => format!("latest {sym} none"),
                Some(c) => format!(
                    "latest {sym} {} {:x} {:x} {:x} {:x} {:x}",
                    c.ts,
                    c.open.to_bits(),
                    c.high.to_bits(),
                    c.low.to_bits(),
                    c.close.to_bits(),
                    c.volume.to_bits()
                ),
            };
            guest_sdk::log(guest_sdk::LogLevel::Info, &line);
        }
        Vec::new()
    }
}

guest_sdk::export_strategy!(MarketEcho);
