//! In-memory candle series per symbol and interval, and the point-in-time view
//! a strategy sees: only candles that closed at or before `now`. Shared by
//! backtests, paper and live trading.

use crate::types::{Candle, Interval};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Price, spread and 24h volume of one symbol at a view's `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SymbolFacts {
    pub price: f64,
    pub spread: f64,
    pub volume_24h: f64,
}

/// Live quote facts a feed may know beyond candles, as of `ts`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quote {
    pub ts: i64,
    pub price: f64,
    pub spread: f64,
}

/// All candles of one symbol, per interval, sorted by `ts` with no duplicates.
#[derive(Debug, Clone, Default)]
pub struct SymbolSeries {
    pub series: [Vec<Candle>; 3],
    pub quote: Option<Quote>,
}

/// Candle history for a set of symbols.
#[derive(Debug, Clone, Default)]
pub struct MarketData {
    symbols: BTreeMap<String, SymbolSeries>,
}

impl MarketData {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces one series; candles are sorted and de-duplicated by `ts`.
    pub fn set_series(&mut self, symbol: &str, interval: Interval, mut candles: Vec<Candle>) {
        candles.sort_by_key(|c| c.ts);
        candles.dedup_by_key(|c| c.ts);
        self.symbols.entry(symbol.to_string()).or_default().series[interval.index()] = candles;
    }

    /// Appends (or replaces the last) candle of a series, keeping order.
    pub fn push(&mut self, symbol: &str, interval: Interval, candle: Candle) {
        let s = &mut self.symbols.entry(symbol.to_string()).or_default().series[interval.index()];
        match s.last() {
            Some(last) if last.ts == candle.ts => *s.last_mut().expect("non-empty") = candle,
            Some(last) if last.ts > candle.ts => {
                let i = s.partition_point(|c| c.ts < candle.ts);
                if s.get(i).map(|c| c.ts) == Some(candle.ts) {
                    s[i] = candle;
                } else {
                    s.insert(i, candle);
                }
            }
            _ => s.push(candle),
        }
    }

    /// Builds `symbol`'s coarser tiers from its finer ones (1h from 5m, then
    /// 1d from 1h) for the buckets that ended by `horizon` and are newer
    /// than the coarse tier's newest candle, by [`roll_up`]; appends them
    /// and returns them (for the store). A live feed calls it after every
    /// fine bar (a bucket closes as its last candle arrives, visible to the
    /// next scan); a backtest once over its whole data. Each call costs the
    /// buckets in progress, not the history.
    pub fn roll_up_from(&mut self, symbol: &str, horizon: i64) -> Vec<(Interval, Candle)> {
        let mut out = Vec::new();
        for (fine, coarse) in [(Interval::M5, Interval::H1), (Interval::H1, Interval::D1)] {
            let from = self.series(symbol, coarse).last().map_or(i64::MIN, |c| c.ts.saturating_add(coarse.secs()));
            let series = self.series(symbol, fine);
            let start = series.partition_point(|c| c.ts < from);
            let built = roll_up(&series[start..], coarse, horizon);
            for c in built {
                self.push(symbol, coarse, c);
                out.push((coarse, c));
            }
        }
        out
    }

    pub fn set_quote(&mut self, symbol: &str, quote: Quote) {
        self.symbols.entry(symbol.to_string()).or_default().quote = Some(quote);
    }

    pub fn series(&self, symbol: &str, interval: Interval) -> &[Candle] {
        self.symbols.get(symbol).map(|s| s.series[interval.index()].as_slice()).unwrap_or(&[])
    }

    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.symbols.keys().map(|s| s.as_str())
    }

    pub fn contains(&self, symbol: &str) -> bool {
        self.symbols.contains_key(symbol)
    }

    /// Candles of `symbol`/`interval` that closed at or before `now`.
    pub fn closed_at(&self, symbol: &str, interval: Interval, now: i64) -> &[Candle] {
        let s = self.series(symbol, interval);
        &s[..count_open_at_or_before(s, now.saturating_sub(interval.secs()), interval.secs())]
    }

    /// The finest series that has any candle for `symbol`.
    pub fn finest(&self, symbol: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|&i| !self.series(symbol, i).is_empty())
    }
}

/// Builds `coarse` candles from `fine` ones, for the buckets that ended by
/// `horizon` (the candle store's `aggregate` rule: a coarse candle covers the
/// bucket `[B, B + len)` aligned to Unix time, built once it holds a finer
/// candle and has ended by `horizon`; open of the first, close of the last,
/// extremes, summed volume; a bucket without finer candles stays a gap).
pub fn roll_up(fine: &[Candle], coarse: Interval, horizon: i64) -> Vec<Candle> {
    let secs = coarse.secs();
    let mut out: Vec<Candle> = Vec::new();
    for c in fine {
        let bucket = c.ts.div_euclid(secs) * secs;
        if bucket + secs > horizon {
            break;
        }
        match out.last_mut() {
            Some(b) if b.ts == bucket => {
                b.high = b.high.max(c.high);
                b.low = b.low.min(c.low);
                b.close = c.close;
                b.volume += c.volume;
            }
            _ => out.push(Candle { ts: bucket, ..*c }),
        }
    }
    out
}

/// How many candles of `s` (sorted by `ts`, no duplicates) opened at or
/// before `t`: `s.partition_point(|c| c.ts <= t)`. Candles are usually
/// `step` seconds apart, so the search starts where that spacing puts `t`
/// counting back from the newest candle (exact wherever no gap follows `t`:
/// a live feed, most of a backtest) and gallops from there, so it costs
/// O(log d) comparisons for a guess `d` candles off.
pub fn count_open_at_or_before(s: &[Candle], t: i64, step: i64) -> usize {
    let n = s.len();
    let (Some(first), Some(last)) = (s.first(), s.last()) else {
        return 0;
    };
    if last.ts <= t {
        return n;
    }
    if first.ts > t {
        return 0;
    }
    // from here the answer is in 1..n: s[answer - 1].ts <= t < s[answer].ts
    let back = last.ts.abs_diff(t) / step.max(1).unsigned_abs();
    let guess = n.saturating_sub(usize::try_from(back).unwrap_or(n)).clamp(1, n - 1);
    // bracket the answer in lo..=hi with s[lo - 1].ts <= t < s[hi].ts
    let (mut lo, mut hi);
    let mut stride = 1;
    if s[guess - 1].ts <= t {
        lo = guess;
        loop {
            let probe = (lo + stride - 1).min(n - 1);
            if s[probe].ts > t {
                hi = probe;
                break;
            }
            lo = probe + 1;
            stride *= 2;
        }
    } else {
        hi = guess - 1;
        loop {
            let probe = hi.saturating_sub(stride);
            if s[probe].ts <= t {
                lo = probe + 1;
                break;
            }
            hi = probe;
            stride *= 2;
        }
    }
    lo + s[lo..hi].partition_point(|c| c.ts <= t)
}

/// What a strategy may see at one instant: the data, cut at `now`.
#[derive(Debug, Clone)]
pub struct MarketView {
    pub data: Arc<MarketData>,
    pub now: i64,
}

impl MarketView {
    pub fn new(data: Arc<MarketData>, now: i64) -> Self {
        MarketView { data, now }
    }

    /// Up to `n` most recent candles closed at or before `now`, oldest first.
    pub fn candles(&self, symbol: &str, interval: Interval, n: usize) -> &[Candle] {
        let v = self.data.closed_at(symbol, interval, self.now);
        &v[v.len().saturating_sub(n)..]
    }

    /// Price (last close, or a live quote not newer than `now`), spread and
    /// 24h volume at `now`, from the finest interval with a candle closed by
    /// `now` (never chosen by looking at later data).
    pub fn symbol_data(&self, symbol: &str) -> Option<SymbolFacts> {
        let series = self.data.symbols.get(symbol)?;
        let closed =
            Interval::ALL.into_iter().map(|i| self.data.closed_at(symbol, i, self.now)).find(|c| !c.is_empty())?;
        let last = closed.last()?;
        let since = self.now - 86_400;
        let volume_24h = closed.iter().rev().take_while(|c| c.ts >= since).map(|c| c.volume).sum();
        let (price, spread) = match series.quote {
            Some(q) if q.ts <= self.now => (q.price, q.spread),
            _ => (last.close, 0.0),
        };
        Some(SymbolFacts { price, spread, volume_24h })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ts: i64, close: f64) -> Candle {
        Candle { ts, open: close, high: close, low: close, close, volume: 1.0 }
    }

    #[test]
    fn view_shows_only_closed_candles() {
        let mut d = MarketData::new();
        d.set_series("BTCUSD", Interval::H1, vec![c(0, 1.0), c(3600, 2.0), c(7200, 3.0)]);
        let v = MarketView::new(Arc::new(d), 7199);
        // the candle opened at 3600 closes at 7200: not yet visible
        assert_eq!(v.candles("BTCUSD", Interval::H1, 10).len(), 1);
        let v = MarketView { now: 7200, ..v };
        assert_eq!(v.candles("BTCUSD", Interval::H1, 10).iter().map(|c| c.close).collect::<Vec<_>>(), vec![1.0, 2.0]);
        assert_eq!(v.candles("BTCUSD", Interval::H1, 1)[0].close, 2.0);
        assert_eq!(v.symbol_data("BTCUSD").unwrap().price, 2.0);
        assert!(v.symbol_data("ETHUSD").is_none());
    }

    /// Regression: the interval and the quote were chosen from the whole data
    /// set, so a view at `now` could depend on data after `now`.
    #[test]
    fn symbol_data_never_depends_on_later_data() {
        let mut d = MarketData::new();
        d.set_series("BTCUSD", Interval::H1, vec![c(0, 1.0), c(3600, 2.0)]);
        // 5-minute data only starts later
        d.set_series("BTCUSD", Interval::M5, vec![c(36_000, 9.0)]);
        d.set_quote("BTCUSD", Quote { ts: 40_000, price: 10.0, spread: 0.1 });
        let early = MarketView::new(Arc::new(d.clone()), 7200);
        assert_eq!(early.symbol_data("BTCUSD").unwrap().price, 2.0);
        let later = MarketView::new(Arc::new(d), 40_000);
        assert_eq!(later.symbol_data("BTCUSD").unwrap().price, 10.0);
    }

    #[test]
    fn push_keeps_order_and_replaces_same_ts() {
        let mut d = MarketData::new();
        d.push("X", Interval::H1, c(7200, 3.0));
        d.push("X", Interval::H1, c(0, 1.0));
        d.push("X", Interval::H1, c(7200, 4.0));
        d.push("X", Interval::H1, c(3600, 2.0));
        let closes: Vec<f64> = d.series("X", Interval::H1).iter().map(|c| c.close).collect();
        assert_eq!(closes, vec![1.0, 2.0, 4.0]);
    }
}
