use crate::{Candle, ClosedTrade, Interval, SymbolData};
use std::collections::HashMap;
use std::ops::Deref;
use std::rc::Rc;

/// What a strategy can see of the market: pull-based, never newer than `now`.
pub trait MarketView {
    fn symbol(&self, symbol: &str) -> Option<SymbolData>;
    /// Up to `n` most recent closed candles, oldest first.
    fn candles(&self, symbol: &str, interval: Interval, n: u32) -> Vec<Candle>;
    /// The closes of [`MarketView::candles`]. Inside the sandbox they are
    /// shared with the SDK's candle cache, neither copied nor allocated.
    fn closes(&self, symbol: &str, interval: Interval, n: u32) -> Closes {
        Closes::from(self.candles(symbol, interval, n).iter().map(|c| c.close).collect::<Vec<f64>>())
    }
    fn recent_trades(&self, n: u32) -> Vec<ClosedTrade>;
}

/// Closing prices, oldest first; dereferences to `[f64]`. Either owned, or a
/// window of the candle cache's close column, shared and never copied: the
/// cache copies its column before changing it only while a `Closes` of it is
/// still held (copy on write), so a `Closes` never changes under its holder.
#[derive(Clone)]
pub struct Closes(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Vec<f64>),
    Shared { column: Rc<Vec<f64>>, start: usize },
}

impl Deref for Closes {
    type Target = [f64];
    #[inline]
    fn deref(&self) -> &[f64] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { column, start } => &column[*start..],
        }
    }
}

impl From<Vec<f64>> for Closes {
    fn from(v: Vec<f64>) -> Self {
        Closes(Repr::Owned(v))
    }
}

impl std::fmt::Debug for Closes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Closes {
    fn eq(&self, other: &Closes) -> bool {
        **self == **other
    }
}

impl<'a> IntoIterator for &'a Closes {
    type Item = &'a f64;
    type IntoIter = std::slice::Iter<'a, f64>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The view the host provides inside the sandbox.
pub struct HostMarket;

#[cfg(target_arch = "wasm32")]
thread_local! {
    static CANDLES: std::cell::RefCell<CandleCache> = std::cell::RefCell::new(CandleCache::default());
}

#[cfg(target_arch = "wasm32")]
impl MarketView for HostMarket {
    fn symbol(&self, symbol: &str) -> Option<SymbolData> {
        crate::bindings::trading::contract::market::symbol(symbol)
    }
    fn candles(&self, symbol: &str, interval: Interval, n: u32) -> Vec<Candle> {
        use crate::bindings::trading::contract::market;
        CANDLES.with(|c| c.borrow_mut().window(symbol, interval, n, market::latest, market::candles).to_vec())
    }
    fn closes(&self, symbol: &str, interval: Interval, n: u32) -> Closes {
        use crate::bindings::trading::contract::market;
        CANDLES.with(|c| c.borrow_mut().closes(symbol, interval, n, market::latest, market::candles))
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

/// The candles a strategy already pulled, per symbol and interval, so a scan
/// asks the host for the newest candle only (`market.latest`, no list to
/// allocate on either side) and appends it when it directly
/// follows the cached ones; across a gap in the data, a two-candle probe
/// tells the gap from a missed candle. A missed candle, a first call, a
/// deeper request or a clock that moved backwards fetches the full window
/// again. It only ever holds
/// candles the host returned, so it can never show more than the host shows.
#[derive(Default)]
pub struct CandleCache {
    /// One entry per (symbol, interval) a strategy has asked for; a strategy
    /// trades a handful, so a scan finds its entry without hashing or
    /// allocating.
    series: Vec<Cached>,
}

struct Cached {
    symbol: String,
    interval: Interval,
    /// Candles oldest first.
    candles: Vec<Candle>,
    /// Their closes, the column [`Closes`] share (changed through
    /// `Rc::make_mut`: in place unless a `Closes` still holds it).
    closes: Rc<Vec<f64>>,
    /// Whether `candles` is the whole history.
    complete: bool,
}

impl Cached {
    fn set_last(&mut self, c: Candle) {
        if let (Some(last), Some(close)) = (self.candles.last_mut(), Rc::make_mut(&mut self.closes).last_mut()) {
            *last = c;
            *close = c.close;
        }
    }
    fn push(&mut self, c: Candle) {
        self.candles.push(c);
        Rc::make_mut(&mut self.closes).push(c.close);
    }
    fn replace(&mut self, candles: Vec<Candle>) {
        let closes = Rc::make_mut(&mut self.closes);
        closes.clear();
        closes.extend(candles.iter().map(|c| c.close));
        self.candles = candles;
    }
    fn drop_oldest(&mut self, k: usize) {
        self.candles.drain(..k);
        Rc::make_mut(&mut self.closes).drain(..k);
    }
}

/// `a == b` for short strings without a call to `memcmp`, which inside the
/// sandbox is a byte loop behind a call.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

impl CandleCache {
    /// Up to `n` most recent candles, pulling the newest through
    /// `latest(symbol, interval)` and, when the cache cannot answer, the
    /// window through `fetch(symbol, interval, n)`.
    pub fn window(
        &mut self,
        symbol: &str,
        interval: Interval,
        n: u32,
        latest: impl FnMut(&str, Interval) -> Option<Candle>,
        fetch: impl FnMut(&str, Interval, u32) -> Vec<Candle>,
    ) -> &[Candle] {
        match self.refresh(symbol, interval, n, latest, fetch) {
            Some(at) => {
                let c = &self.series[at].candles;
                &c[c.len().saturating_sub(n as usize)..]
            }
            None => &[],
        }
    }

    /// The closes of [`CandleCache::window`], sharing the cache's column.
    pub fn closes(
        &mut self,
        symbol: &str,
        interval: Interval,
        n: u32,
        latest: impl FnMut(&str, Interval) -> Option<Candle>,
        fetch: impl FnMut(&str, Interval, u32) -> Vec<Candle>,
    ) -> Closes {
        match self.refresh(symbol, interval, n, latest, fetch) {
            Some(at) => {
                let column = Rc::clone(&self.series[at].closes);
                let start = column.len().saturating_sub(n as usize);
                Closes(Repr::Shared { column, start })
            }
            None => Closes::from(Vec::new()),
        }
    }

    /// Brings the series of (`symbol`, `interval`) up to date for a request
    /// of `n` candles; its index, none when `n` is 0.
    fn refresh(
        &mut self,
        symbol: &str,
        interval: Interval,
        n: u32,
        mut latest: impl FnMut(&str, Interval) -> Option<Candle>,
        mut fetch: impl FnMut(&str, Interval, u32) -> Vec<Candle>,
    ) -> Option<usize> {
        let want = n as usize;
        if want == 0 {
            return None;
        }
        let at = match self.series.iter().position(|c| c.interval == interval && same(&c.symbol, symbol)) {
            Some(i) => i,
            None => {
                self.series.push(Cached {
                    symbol: symbol.to_string(),
                    interval,
                    candles: Vec::new(),
                    closes: Rc::default(),
                    complete: false,
                });
                self.series.len() - 1
            }
        };
        let s = &mut self.series[at];
        let newest = latest(symbol, interval);
        let follows = match (s.candles.last(), newest) {
            (Some(last), Some(new)) if new.ts == last.ts => {
                s.set_last(new);
                true
            }
            (Some(last), Some(new)) if new.ts == last.ts + interval_secs(interval) => {
                s.push(new);
                true
            }
            (None, None) => {
                s.complete = true;
                true
            }
            // A gap in the data or a missed candle: the last two candles
            // tell which (a gap keeps the cache; a miss refetches).
            (Some(last), Some(new)) if new.ts > last.ts => {
                let last = last.ts;
                match fetch(symbol, interval, 2)[..] {
                    [prev, cur] if prev.ts == last && cur.ts == new.ts => {
                        s.set_last(prev);
                        s.push(cur);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !follows || (s.candles.len() < want && !s.complete) {
            s.replace(fetch(symbol, interval, n));
            s.complete = s.candles.len() < want;
        }
        // keep a bounded window: twice the deepest request, trimmed in
        // batches so the copy is rare
        let keep = want.max(64) * 2;
        if s.candles.len() > 2 * keep {
            s.drop_oldest(s.candles.len() - keep);
            s.complete = false;
        }
        Some(at)
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

#[cfg(test)]
mod cache_tests {
    use super::*;

    /// The cache answers exactly what the host view answers, at every `now`,
    /// through gaps, deeper requests and a clock that jumps back, while asking
    /// for one candle per call once warm.
    #[test]
    fn cache_equals_the_view_it_caches() {
        let mut closes: Vec<f64> = (0..400).map(|i| 100.0 + (i as f64 * 0.37).sin() * 5.0).collect();
        closes[10] = 1.0;
        let mut m = TestMarket::from_closes("BTCUSD", 0, &closes);
        // a 5-hour gap in the middle
        m.candles
            .get_mut(&("BTCUSD".to_string(), key(Interval::H1)))
            .unwrap()
            .retain(|c| !(100 * 3_600..105 * 3_600).contains(&c.ts));
        let mut cache = CandleCache::default();
        let pulled = std::cell::Cell::new(0usize);
        let nows: Vec<i64> = (1..400).chain([50, 51, 52]).chain(380..400).map(|h| h * 3_600).collect();
        for (i, now) in nows.into_iter().enumerate() {
            m.now = now;
            let n = if i % 50 == 0 { 120 } else { 31 };
            let got = cache.window(
                "BTCUSD",
                Interval::H1,
                n,
                |s, iv| {
                    pulled.set(pulled.get() + 1);
                    m.candles(s, iv, 1).pop()
                },
                |s, iv, k| {
                    let v = m.candles(s, iv, k);
                    pulled.set(pulled.get() + v.len());
                    v
                },
            );
            let key = |v: &[Candle]| v.iter().map(|c| (c.ts, c.close.to_bits())).collect::<Vec<_>>();
            assert_eq!(key(got), key(&m.candles("BTCUSD", Interval::H1, n)), "at now {now}, n {n}");
        }
        let pulled = pulled.get();
        assert!(pulled < 420 * 6, "the cache should pull about one candle per call, pulled {pulled}");
    }

    /// The closes a cache hands out are its close column, shared: equal to
    /// the window's closes at every step, and unchanged while held when the
    /// cache moves on and trims (it copies its column then, never the
    /// holder's).
    #[test]
    fn shared_closes_follow_the_window_and_never_change_while_held() {
        let closes: Vec<f64> = (0..600).map(|i| 100.0 + i as f64).collect();
        let mut m = TestMarket::from_closes("BTCUSD", 0, &closes);
        let mut cache = CandleCache::default();
        let mut held: Vec<(i64, Closes)> = Vec::new();
        for h in 40..600 {
            m.now = h * 3_600;
            let got = cache.closes(
                "BTCUSD",
                Interval::H1,
                31,
                |s, iv| m.candles(s, iv, 1).pop(),
                |s, iv, k| m.candles(s, iv, k),
            );
            assert_eq!(got, m.closes("BTCUSD", Interval::H1, 31), "at hour {h}");
            if h % 97 == 0 {
                held.push((h, got));
            }
        }
        for (h, c) in &held {
            let want: Vec<f64> = (h - 31..*h).map(|i| 100.0 + i as f64).collect();
            assert_eq!(**c, want[..], "held since hour {h}");
        }
        let mut empty = CandleCache::default();
        assert!(empty.closes("BTCUSD", Interval::H1, 0, |_, _| unreachable!(), |_, _, _| unreachable!()).is_empty());
    }

    /// Across a gap in the data the cache asks for two candles, not the
    /// window; when a scan skipped a candle (it lies before the gap) the probe
    /// shows it and the window is fetched again.
    #[test]
    fn a_gap_is_probed_with_two_candles_and_a_missed_candle_refetches() {
        let closes: Vec<f64> = (0..60).map(|i| 100.0 + i as f64).collect();
        let mut m = TestMarket::from_closes("BTCUSD", 0, &closes);
        // candles open at hours 0..=29 and 35..=59: a gap of five hours
        m.candles
            .get_mut(&("BTCUSD".to_string(), key(Interval::H1)))
            .unwrap()
            .retain(|c| !(30..35).contains(&(c.ts / 3_600)));
        let mut cache = CandleCache::default();
        let mut scan = |now_h: i64| {
            m.now = now_h * 3_600;
            let mut fetches = Vec::new();
            let got: Vec<i64> = cache
                .window(
                    "BTCUSD",
                    Interval::H1,
                    10,
                    |s, iv| m.candles(s, iv, 1).pop(),
                    |s, iv, k| {
                        fetches.push(k);
                        m.candles(s, iv, k)
                    },
                )
                .iter()
                .map(|c| c.ts)
                .collect();
            let want: Vec<i64> = m.candles("BTCUSD", Interval::H1, 10).iter().map(|c| c.ts).collect();
            assert_eq!(got, want, "at hour {now_h}");
            fetches
        };
        assert_eq!(scan(20), vec![10], "a first call fetches the window");
        for h in 21..=30 {
            assert!(scan(h).is_empty(), "hour {h}: the next candle follows");
        }
        assert_eq!(scan(36), vec![2], "across the gap: a probe, no refetch");
        // skip the scan at hour 37: candle 36 is missed, the probe sees it
        assert_eq!(scan(38), vec![2, 10]);
        assert!(scan(39).is_empty());
    }
}
