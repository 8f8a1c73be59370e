//! Test guest: each scan logs the portfolio it was handed,
//! `portfolio <cash> <total-value> <positions: symbol:qty,..> <daily-pnl>
//! <total-pnl> <fees-paid> <closed-trade-count>`, then, per symbol, what
//! `market.latest` returns for the hourly interval: `latest <symbol> none`,
//! or `latest <symbol> <ts> <open> <high> <low> <close> <volume>`. Every
//! float is the hex of its bits, so the host can check its hand-written
//! lowerings bit for bit.
//!
//! With the parameter `echo = "tiers"` it logs instead, per scan, symbol and
//! interval (5m, 1h, 1d), the newest candle the market view shows:
//! `tier <now> <symbol> <interval> none` or `tier <now> <symbol> <interval>
//! <ts> <open> <high> <low> <close> <volume>` (floats as bit hex).

use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};

#[derive(Default)]
pub struct MarketEcho {
    symbols: Vec<String>,
    tiers: bool,
}

impl Strategy for MarketEcho {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        self.tiers = init.params.raw("echo") == Some("tiers");
        Ok(())
    }

    fn analyze(&mut self, now: i64, portfolio: &Portfolio, market: &dyn MarketView) -> Vec<Signal> {
        if self.tiers {
            for sym in &self.symbols {
                for (name, iv) in
                    [("5m", guest_sdk::Interval::M5), ("1h", guest_sdk::Interval::H1), ("1d", guest_sdk::Interval::D1)]
                {
                    let line = match market.candles(sym, iv, 1).last() {
                        None => format!("tier {now} {sym} {name} none"),
                        Some(c) => format!(
                            "tier {now} {sym} {name} {} {:x} {:x} {:x} {:x} {:x}",
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
            }
            return Vec::new();
        }
        let p = portfolio;
        let positions: Vec<String> =
            p.positions.iter().map(|o| format!("{}:{:x}", o.symbol, o.qty.to_bits())).collect();
        let line = format!(
            "portfolio {:x} {:x} [{}] {:x} {:x} {:x} {}",
            p.cash.to_bits(),
            p.total_value.to_bits(),
            positions.join(","),
            p.daily_pnl.to_bits(),
            p.total_pnl.to_bits(),
            p.fees_paid.to_bits(),
            p.closed_trade_count
        );
        guest_sdk::log(guest_sdk::LogLevel::Info, &line);
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
