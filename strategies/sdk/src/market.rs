use crate::{Candle, ClosedTrade, Interval, SymbolData};
use std::collections::HashMap;

/// What a strategy can see of the market: pull-based, never newer than `now`.
pub trait MarketView {
    fn symbol(&self, symbol: &str) -> Option<SymbolData>;
    /// Up to `n` most recent closed candles, oldest first.
    fn candles(&self, symbol: &str, interval: Interval, n: u32) -> Vec<Candle>;
    fn recent_trades(&self, n: u32) -> Vec<ClosedTrade>;
}

/// The view the host provides inside the sandbox.
pub struct HostMarket;

#[cfg(target_arch = "wasm32")]
impl MarketView for HostMarket {
    fn symbol(&self, symbol: &str) -> Option<SymbolData> {
        crate::bindings::trading::contract::market::symbol(symbol)
    }
    fn candles(&self, symbol: &str, interval: Interval, n: u32) -> Vec<Candle> {
        crate::bindings::trading::contract::market::candles(symbol, interval, n)
    }
    fn recent_trades(&self, n: u32) -> Vec<ClosedTrade> {
        crate::bindings::trading::contract::market::recent_trades(n)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl MarketView for HostMarket {
    fn symbol(&self, _symbol: &str) -> Option<SymbolData> {
        None
    }
    fn candles(&self, _symbol: &str, _interval: Interval, _n: u32) -> Vec<Candle> {
        Vec::new()
    }
    fn recent_trades(&self, _n: u32) -> Vec<ClosedTrade> {
        Vec::new()
    }
}

/// An in-memory view for native unit tests: candles per symbol and interval,
/// cut at `now` the way the host cuts them.
#[derive(Default, Clone)]
pub struct TestMarket {
    pub now: i64,
    pub candles: HashMap<(String, u8), Vec<Candle>>,
    pub trades: Vec<ClosedTrade>,
}

pub(crate) fn interval_secs(interval: Interval) -> i64 {
    match interval {
        Interval::M5 => 300,
        Interval::H1 => 3_600,
        Interval::D1 => 86_400,
    }
}

fn key(interval: Interval) -> u8 {
    match interval {
        Interval::M5 => 0,
        Interval::H1 => 1,
        Interval::D1 => 2,
    }
}

impl TestMarket {
    /// Builds hourly candles from closes, one hour apart starting at `start`.
    pub fn from_closes(symbol: &str, start: i64, closes: &[f64]) -> Self {
        let candles = closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Candle { ts: start + i as i64 * 3_600, open: c, high: c, low: c, close: c, volume: 1.0 })
            .collect();
        let mut m = TestMarket::default();
        m.candles.insert((symbol.to_string(), key(Interval::H1)), candles);
        m.now = start + closes.len() as i64 * 3_600;
        m
    }

    pub fn insert(&mut self, symbol: &str, interval: Interval, candles: Vec<Candle>) {
        self.candles.insert((symbol.to_string(), key(interval)), candles);
    }

    fn visible(&self, symbol: &str, interval: Interval) -> &[Candle] {
        let Some(all) = self.candles.get(&(symbol.to_string(), key(interval))) else { return &[] };
        let secs = interval_secs(interval);
        let end = all.partition_point(|c| c.ts + secs <= self.now);
        &all[..end]
    }
}

impl MarketView for TestMarket {
    fn symbol(&self, symbol: &str) -> Option<SymbolData> {
        let last = self.visible(symbol, Interval::H1).last()?;
        Some(SymbolData { symbol: symbol.to_string(), price: last.close, spread: 0.0, volume_24h: last.volume })
    }
    fn candles(&self, symbol: &str, interval: Interval, n: u32) -> Vec<Candle> {
        let v = self.visible(symbol, interval);
        v[v.len().saturating_sub(n as usize)..].to_vec()
    }
    fn recent_trades(&self, n: u32) -> Vec<ClosedTrade> {
        self.trades[self.trades.len().saturating_sub(n as usize)..].to_vec()
    }
}
