//! Test guest: a strategy whose `analyze` makes the host do the work, chosen
//! by the `mode` parameter of `initialize`:
//! - `log-flood`: builds one string of `bytes` bytes (default 8 MiB) and
//!   passes it to `host.log` forever (the host must charge fuel for it);
//! - `candle-flood`: calls `market.candles(first symbol, h1, u32::MAX)`
//!   forever (the host must charge fuel per candle returned);
//! - `forge`: logs one line carrying newlines, ANSI escapes and bidi
//!   controls that would forge host log lines, then returns no signals.

use guest_sdk::bindings::trading::contract::{host, market};
use guest_sdk::{Init, Interval, LogLevel, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

/// The forged text `forge` logs.
pub const FORGED: &str = "ok\n2026-01-01T00:00:00.000000Z  INFO host: FORGED fill BTCUSD qty=100\r\x1b[2K\x1b[31mred\x1b[0m\u{202e}desrever\u{7}";

#[derive(Default)]
pub struct ImportFlood {
    symbol: String,
    mode: String,
    bytes: usize,
}

impl Strategy for ImportFlood {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbol = init.symbols.first().cloned().unwrap_or_else(|| "BTCUSD".into());
        self.mode = init.params.raw("mode").unwrap_or("forge").to_string();
        self.bytes = init.params.usize_or("bytes", 8 << 20).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        match self.mode.as_str() {
            "log-flood" => {
                let big = "x".repeat(black_box(self.bytes));
                loop {
                    host::log(LogLevel::Info, black_box(&big));
                }
            }
            "candle-flood" => loop {
                let c = market::candles(black_box(&self.symbol), Interval::H1, black_box(u32::MAX));
                black_box(c);
            },
            _ => {
                host::log(LogLevel::Warn, FORGED);
                Vec::new()
            }
        }
    }
}

guest_sdk::export_strategy!(ImportFlood);
