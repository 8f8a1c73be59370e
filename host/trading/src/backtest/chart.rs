//! What a backtest report carries for its price picture: per symbol walked,
//! the closes (thinned for long runs: each of at most [`MAX_BUCKETS`] runs
//! of bars keeps its first, lowest, highest and last close, in time order, so
//! the line keeps its extremes) and every fill on it (never thinned: one
//! entry or exit marker per fill, at the fill's time and exact price).

use rust_decimal::Decimal;
use serde::Serialize;
use trading_core::{EngineEvent, Interval, OrderSide};

/// Most buckets a close series is thinned to (at most 4 points each).
pub const MAX_BUCKETS: usize = 500;

/// One close: the bar's close time (Unix seconds) and its close.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClosePoint {
    pub ts: i64,
    pub close: f64,
}

/// One fill: a buy opens or adds (an entry), a sell reduces or closes (an exit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillMark {
    pub ts: i64,
    pub side: OrderSide,
    pub price: Decimal,
    pub qty: Decimal,
}

/// The price picture's data of one symbol.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceChart {
    pub symbol: String,
    pub interval: Interval,
    /// Bars walked (before thinning).
    pub bars: u64,
    pub closes: Vec<ClosePoint>,
    pub fills: Vec<FillMark>,
}

/// `points` thinned to at most `4 × MAX_BUCKETS` points (unchanged when
/// already that short): per bucket its first, lowest, highest and last point.
pub fn thin(points: &[ClosePoint]) -> Vec<ClosePoint> {
    let n = points.len();
    if n <= 4 * MAX_BUCKETS {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(4 * MAX_BUCKETS);
    for b in 0..MAX_BUCKETS {
        let (from, to) = (b * n / MAX_BUCKETS, (b + 1) * n / MAX_BUCKETS);
        let Some(bucket) = points.get(from..to).filter(|s| !s.is_empty()) else {
            continue;
        };
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in bucket.iter().enumerate() {
            if p.close < bucket[lo].close {
                lo = i;
            }
            if p.close > bucket[hi].close {
                hi = i;
            }
        }
        let mut keep = [0, lo, hi, bucket.len() - 1];
        keep.sort_unstable();
        let mut last = None;
        for i in keep {
            if last != Some(i) {
                out.push(bucket[i]);
                last = Some(i);
            }
        }
    }
    out
}

/// Appends the fills among `events` to their symbol's list (`symbols[k]` is
/// the symbol of `fills[k]`).
pub(crate) fn collect_fills(
    events: &[EngineEvent],
    symbols: &[String],
    fills: &mut [Vec<FillMark>],
) {
    for ev in events {
        if let EngineEvent::Filled(rec) = ev {
            let f = &rec.fill;
            if let Some(k) = symbols.iter().position(|s| *s == f.symbol) {
                fills[k].push(FillMark {
                    ts: f.time,
                    side: f.side(),
                    price: f.price,
                    qty: f.qty,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_extremes_and_the_ends_in_order() {
        let pts: Vec<ClosePoint> = (0..70_000)
            .map(|i| ClosePoint {
                ts: i * 3600,
                close: if i == 12_345 { 1e6 } else { (i % 97) as f64 },
            })
            .collect();
        let t = thin(&pts);
        assert!(t.len() <= 4 * MAX_BUCKETS, "{}", t.len());
        assert_eq!(t.first(), pts.first());
        assert_eq!(t.last(), pts.last());
        assert!(t.iter().any(|p| p.close == 1e6), "the spike survives");
        assert!(t.windows(2).all(|w| w[0].ts < w[1].ts));
        let short = &pts[..100];
        assert_eq!(thin(short), short);
    }
}
