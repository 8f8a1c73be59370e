//! The karma scorecard (seed 002): how a strategy's signals turned out,
//! grouped by strategy version, signal tag, symbol and intent: the hit rate,
//! the average and total P&L, and how well the signal's `confidence` was
//! calibrated against the outcomes (reliability bins and the Brier score).
//! Pure: the caller gathers one [`KarmaTrade`] per closed trade.
//!
//! Conventions: a hit is a trade with pnl > 0 (breakeven is a miss, as in
//! the truth metrics); the hit rate is hits / trades. Calibration uses only
//! trades whose confidence is finite and in [0, 1]: bin `i` of [`BINS`]
//! holds confidences in [i/BINS, (i+1)/BINS) (1.0 falls in the last bin); a
//! bin reports its count, mean confidence and observed hit rate. Brier =
//! mean((confidence − hit)²) with hit ∈ {0, 1}. Every figure that is
//! undefined for its group (no trades, no calibrated trade) is `None`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reliability bins over [0, 1].
pub const BINS: usize = 10;

/// One closed trade with what the signal that opened it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KarmaTrade {
    /// The strategy version that opened it (None: unknown, e.g. before versions were recorded).
    pub version: Option<i64>,
    pub tag: String,
    pub symbol: String,
    /// `day`, `swing` or `position`.
    pub intent: String,
    /// The opening signal's confidence (None: unknown or not a number).
    pub confidence: Option<f64>,
    pub pnl: Decimal,
}

/// One reliability bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Lower edge (inclusive) and upper edge (exclusive, but 1.0 in the last bin).
    pub from: f64,
    pub to: f64,
    pub count: u64,
    pub mean_confidence: Option<f64>,
    pub hit_rate: Option<f64>,
}

/// The score of one group of trades.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub trades: u64,
    pub hits: u64,
    pub hit_rate: Option<f64>,
    pub total_pnl: Decimal,
    pub avg_pnl: Option<Decimal>,
    /// Trades with a usable confidence (the calibration's sample).
    pub calibrated: u64,
    pub brier: Option<f64>,
    pub bins: Vec<Bin>,
}

/// The scorecard: every trade together, and per dimension per value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    pub overall: Score,
    /// Keyed by version number (`unknown` when not recorded).
    pub by_version: BTreeMap<String, Score>,
    pub by_tag: BTreeMap<String, Score>,
    pub by_symbol: BTreeMap<String, Score>,
    pub by_intent: BTreeMap<String, Score>,
}

fn usable(c: Option<f64>) -> Option<f64> {
    c.filter(|c| c.is_finite() && (0.0..=1.0).contains(c))
}

fn bin_of(c: f64) -> usize {
    ((c * BINS as f64) as usize).min(BINS - 1)
}

/// The score of `trades`.
pub fn score<'a>(trades: impl IntoIterator<Item = &'a KarmaTrade>) -> Score {
    let mut n = 0u64;
    let mut hits = 0u64;
    let mut total = Decimal::ZERO;
    let mut cal = 0u64;
    let mut brier_sum = 0.0;
    let mut bins = vec![(0u64, 0.0f64, 0u64); BINS];
    for t in trades {
        let hit = t.pnl > Decimal::ZERO;
        n += 1;
        hits += u64::from(hit);
        total = total.saturating_add(t.pnl);
        if let Some(c) = usable(t.confidence) {
            let o = if hit { 1.0 } else { 0.0 };
            cal += 1;
            brier_sum += (c - o) * (c - o);
            let b = &mut bins[bin_of(c)];
            b.0 += 1;
            b.1 += c;
            b.2 += u64::from(hit);
        }
    }
    let frac = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    Score {
        trades: n,
        hits,
        hit_rate: frac(hits, n),
        total_pnl: total,
        avg_pnl: (n > 0).then(|| total / Decimal::from(n)),
        calibrated: cal,
        brier: (cal > 0).then(|| brier_sum / cal as f64),
        bins: bins
            .into_iter()
            .enumerate()
            .map(|(i, (count, sum, h))| Bin {
                from: i as f64 / BINS as f64,
                to: (i + 1) as f64 / BINS as f64,
                count,
                mean_confidence: (count > 0).then(|| sum / count as f64),
                hit_rate: frac(h, count),
            })
            .collect(),
    }
}

fn grouped(trades: &[KarmaTrade], key: impl Fn(&KarmaTrade) -> String) -> BTreeMap<String, Score> {
    let mut groups: BTreeMap<String, Vec<&KarmaTrade>> = BTreeMap::new();
    for t in trades {
        groups.entry(key(t)).or_default().push(t);
    }
    groups.into_iter().map(|(k, ts)| (k, score(ts))).collect()
}

/// The scorecard of `trades`.
pub fn scorecard(trades: &[KarmaTrade]) -> Scorecard {
    Scorecard {
        overall: score(trades),
        by_version: grouped(trades, |t| t.version.map_or_else(|| "unknown".to_string(), |v| v.to_string())),
        by_tag: grouped(trades, |t| t.tag.clone()),
        by_symbol: grouped(trades, |t| t.symbol.clone()),
        by_intent: grouped(trades, |t| t.intent.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn t(version: i64, tag: &str, symbol: &str, confidence: Option<f64>, pnl: Decimal) -> KarmaTrade {
        KarmaTrade {
            version: Some(version),
            tag: tag.into(),
            symbol: symbol.into(),
            intent: "swing".into(),
            confidence,
            pnl,
        }
    }

    /// The fixture, by hand:
    ///
    /// | # | v | tag   | sym | conf | pnl   | hit | (c − o)²  |
    /// |---|---|-------|-----|------|-------|-----|-----------|
    /// | 1 | 1 | cross | BTC | 0.9  | 10    | 1   | 0.01      |
    /// | 2 | 1 | cross | BTC | 0.8  | -4    | 0   | 0.64      |
    /// | 3 | 1 | dip   | ETH | 0.3  | -2    | 0   | 0.09      |
    /// | 4 | 2 | dip   | ETH | 0.35 | 6     | 1   | 0.4225    |
    /// | 5 | 2 | cross | BTC | NaN  | 0     | 0   | (skipped) |
    ///
    /// overall: 5 trades, 2 hits (0.4), total 10, avg 2; calibrated 4,
    /// Brier (0.01 + 0.64 + 0.09 + 0.4225) / 4 = 1.1625 / 4 = 0.290625;
    /// bin 3 [0.3, 0.4): #3, #4: mean 0.325, hit rate 0.5; bin 8: #2 (0.8, 0);
    /// bin 9: #1 (0.9, 1). v1: 3 trades, 1 hit, total 4, avg 4/3, Brier
    /// 0.74 / 3; v2: 2 trades, 1 hit, total 6, avg 3, Brier 0.4225.
    /// cross: 3 trades (#1 #2 #5), 1 hit, total 6, avg 2; dip: 2, 1 hit, total 4.
    #[test]
    fn the_scorecard_matches_the_hand_computed_fixture() {
        let trades = vec![
            t(1, "cross", "BTC", Some(0.9), dec!(10)),
            t(1, "cross", "BTC", Some(0.8), dec!(-4)),
            t(1, "dip", "ETH", Some(0.3), dec!(-2)),
            t(2, "dip", "ETH", Some(0.35), dec!(6)),
            t(2, "cross", "BTC", Some(f64::NAN), dec!(0)),
        ];
        let s = scorecard(&trades);
        let close = |a: Option<f64>, b: f64| assert!(a.is_some_and(|a| (a - b).abs() < 1e-12), "{a:?} vs {b}");
        assert_eq!((s.overall.trades, s.overall.hits), (5, 2));
        close(s.overall.hit_rate, 0.4);
        assert_eq!(s.overall.total_pnl, dec!(10));
        assert_eq!(s.overall.avg_pnl, Some(dec!(2)));
        assert_eq!(s.overall.calibrated, 4);
        close(s.overall.brier, 0.290625);
        let b = &s.overall.bins;
        assert_eq!(b.len(), BINS);
        assert_eq!(b[3].count, 2);
        close(b[3].mean_confidence, 0.325);
        close(b[3].hit_rate, 0.5);
        assert_eq!((b[8].count, b[9].count), (1, 1));
        close(b[8].hit_rate, 0.0);
        close(b[9].hit_rate, 1.0);
        assert_eq!(b[0].count, 0);
        assert_eq!(b[0].hit_rate, None);
        assert_eq!(b[0].mean_confidence, None);
        let v1 = &s.by_version["1"];
        assert_eq!((v1.trades, v1.hits, v1.total_pnl), (3, 1, dec!(4)));
        assert_eq!(v1.avg_pnl, Some(dec!(4) / dec!(3)));
        close(v1.brier, 0.74 / 3.0);
        let v2 = &s.by_version["2"];
        assert_eq!((v2.trades, v2.hits, v2.total_pnl, v2.avg_pnl), (2, 1, dec!(6), Some(dec!(3))));
        close(v2.brier, 0.4225);
        assert_eq!(v2.calibrated, 1);
        let cross = &s.by_tag["cross"];
        assert_eq!((cross.trades, cross.hits, cross.total_pnl, cross.avg_pnl), (3, 1, dec!(6), Some(dec!(2))));
        assert_eq!(s.by_tag["dip"].total_pnl, dec!(4));
        assert_eq!(s.by_symbol["ETH"].trades, 2);
        assert_eq!(s.by_intent["swing"].trades, 5);
    }

    #[test]
    fn an_empty_scorecard_has_no_rates() {
        let s = scorecard(&[]);
        assert_eq!(s.overall.trades, 0);
        assert_eq!(s.overall.hit_rate, None);
        assert_eq!(s.overall.avg_pnl, None);
        assert_eq!(s.overall.brier, None);
        assert!(s.by_version.is_empty());
    }

    #[test]
    fn confidence_one_falls_in_the_last_bin_and_out_of_range_is_skipped() {
        let s = score(&[t(1, "a", "X", Some(1.0), dec!(1)), t(1, "a", "X", Some(1.5), dec!(1))]);
        assert_eq!(s.calibrated, 1);
        assert_eq!(s.bins[BINS - 1].count, 1);
        assert_eq!(s.brier, Some(0.0));
    }
}
