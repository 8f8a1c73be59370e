//! Market analysis ("what game are we playing"): per symbol, from the
//! `candles` table at the finest stored interval up to `now` — volatility
//! (ATR %, stdev of returns, expansion vs its longer average), trend strength
//! (efficiency ratio, SMA slope) and a regime label, data quality (gaps,
//! coverage, freshness), and the correlation of returns between symbols.

use guest_sdk::indicators::{atr, correlation, sma};
use guest_sdk::{Analysis, Candle, Database, DbValue, Report};
use std::collections::BTreeMap;

pub const SERIES: &str =
    "SELECT symbol, interval, COUNT(*) FROM candles WHERE ts <= ?1 GROUP BY symbol, interval ORDER BY symbol, interval";
pub const RECENT: &str = "SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = ?1 AND interval = ?2 AND ts + ?3 <= ?4 ORDER BY ts DESC LIMIT ?5";
pub const QUALITY: &str =
    "SELECT COUNT(*), MIN(ts), MAX(ts) FROM candles WHERE symbol = ?1 AND interval = ?2 AND ts + ?3 <= ?4";
pub const GAPS: &str = "SELECT COUNT(*), MAX(d) FROM (SELECT ts - LAG(ts) OVER (ORDER BY ts) AS d FROM candles \
                        WHERE symbol = ?1 AND interval = ?2 AND ts + ?3 <= ?4) WHERE d > ?3";

/// Bars of recent history analysed per symbol.
pub const WINDOW: usize = 720;

pub fn interval_secs(name: &str) -> Option<i64> {
    match name {
        "5m" => Some(300),
        "1h" => Some(3_600),
        "1d" => Some(86_400),
        _ => None,
    }
}

fn num(v: Option<&DbValue>) -> Option<f64> {
    v.and_then(DbValue::as_f64)
}

/// Simple returns of consecutive closes.
pub fn returns(closes: &[f64]) -> Vec<f64> {
    closes.windows(2).filter(|w| w[0] > 0.0).map(|w| w[1] / w[0] - 1.0).collect()
}

/// Sample standard deviation.
pub fn stdev(x: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let m = x.iter().sum::<f64>() / x.len() as f64;
    Some((x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt())
}

/// Kaufman's efficiency ratio: net move over the path length, 0 (noise) to 1 (straight line).
pub fn efficiency_ratio(closes: &[f64]) -> Option<f64> {
    let (first, last) = (closes.first()?, closes.last()?);
    let path: f64 = closes.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
    (path > 0.0).then(|| (last - first).abs() / path)
}

/// Regime from trend strength, direction and volatility expansion.
pub fn regime(efficiency: f64, direction: f64, expansion: f64) -> &'static str {
    if expansion > 1.5 {
        "volatile"
    } else if efficiency >= 0.3 && direction > 0.0 {
        "trending_up"
    } else if efficiency >= 0.3 && direction < 0.0 {
        "trending_down"
    } else {
        "ranging"
    }
}

/// Facts about one symbol's recent candles (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub last_close: f64,
    pub atr_pct: Option<f64>,
    pub atr_expansion: Option<f64>,
    pub stdev_returns_pct: Option<f64>,
    pub efficiency: Option<f64>,
    pub sma_slope_pct: Option<f64>,
    pub regime: &'static str,
}

pub fn facts(candles: &[Candle]) -> Option<Facts> {
    let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let last_close = *closes.last()?;
    let atr14 = atr(candles, 14);
    let atr_long = atr(candles, 100.min(candles.len().saturating_sub(1)).max(14));
    let atr_pct = atr14.filter(|_| last_close > 0.0).map(|a| a / last_close * 100.0);
    let atr_expansion = atr14.zip(atr_long).filter(|(_, l)| *l > 0.0).map(|(s, l)| s / l);
    let stdev_returns_pct = stdev(&returns(&closes)).map(|s| s * 100.0);
    let tail = &closes[closes.len().saturating_sub(100)..];
    let efficiency = efficiency_ratio(tail);
    let n = 50.min(closes.len());
    let sma_now = sma(&closes, n);
    let sma_before = closes.len().checked_sub(10).and_then(|k| sma(&closes[..k], n));
    let sma_slope_pct = sma_now.zip(sma_before).filter(|(_, b)| *b > 0.0).map(|(a, b)| (a / b - 1.0) * 100.0);
    let direction = tail.last().zip(tail.first()).map_or(0.0, |(l, f)| l - f);
    let regime = regime(efficiency.unwrap_or(0.0), direction, atr_expansion.unwrap_or(1.0));
    Some(Facts { last_close, atr_pct, atr_expansion, stdev_returns_pct, efficiency, sma_slope_pct, regime })
}

fn candle(row: &[DbValue]) -> Option<Candle> {
    let f = |i: usize| num(row.get(i));
    Some(Candle { ts: f(0)? as i64, open: f(1)?, high: f(2)?, low: f(3)?, close: f(4)?, volume: f(5)? })
}

#[derive(Default)]
pub struct MarketAnalysis;

impl Analysis for MarketAnalysis {
    fn analyze(&mut self, now: i64, db: &dyn Database) -> Result<Report, String> {
        let series = db.query(SERIES, &[DbValue::Integer(now)])?;
        // the finest stored interval per symbol
        let mut finest: BTreeMap<String, (String, i64)> = BTreeMap::new();
        for row in &series.rows {
            let (Some(DbValue::Text(sym)), Some(DbValue::Text(iv))) = (row.first(), row.get(1)) else { continue };
            let Some(secs) = interval_secs(iv) else { continue };
            let e = finest.entry(sym.clone()).or_insert((iv.clone(), secs));
            if secs < e.1 {
                *e = (iv.clone(), secs);
            }
        }
        let mut report = Report::new("market-analysis", "");
        let mut rets: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
        let mut regimes = Vec::new();
        for (sym, (iv, secs)) in &finest {
            let section = format!("symbol:{sym}");
            let p =
                [DbValue::Text(sym.clone()), DbValue::Text(iv.clone()), DbValue::Integer(*secs), DbValue::Integer(now)];
            let mut recent_p = p.to_vec();
            recent_p.push(DbValue::Integer(WINDOW as i64));
            let rows = db.query(RECENT, &recent_p)?;
            let mut candles: Vec<Candle> = rows.rows.iter().filter_map(|r| candle(r)).collect();
            candles.reverse();
            report.text(&section, "interval", iv);
            report.number(&section, "bars_analysed", candles.len() as f64);
            if let Some(f) = facts(&candles) {
                report.number(&section, "last_close", f.last_close);
                for (k, v) in [
                    ("atr_pct", f.atr_pct),
                    ("atr_expansion", f.atr_expansion),
                    ("stdev_returns_pct", f.stdev_returns_pct),
                    ("trend_efficiency", f.efficiency),
                    ("sma50_slope_pct", f.sma_slope_pct),
                ] {
                    report.number(&section, k, v.unwrap_or(f64::NAN));
                }
                report.text(&section, "regime", f.regime);
                regimes.push(format!("{sym} {} (ATR {:.2}%)", f.regime, f.atr_pct.unwrap_or(f64::NAN)));
            }
            let r = &mut rets.entry(sym.clone()).or_default();
            for w in candles.windows(2) {
                if w[0].close > 0.0 {
                    r.insert(w[1].ts, w[1].close / w[0].close - 1.0);
                }
            }
            // data quality over the whole stored history
            let q = db.query(QUALITY, &p)?;
            let row = q.rows.first().cloned().unwrap_or_default();
            let (count, first, last) = (num(row.first()), num(row.get(1)), num(row.get(2)));
            let g = db.query(GAPS, &p)?;
            let grow = g.rows.first().cloned().unwrap_or_default();
            if let (Some(count), Some(first), Some(last)) = (count, first, last) {
                let expected = ((last - first) / *secs as f64).floor() + 1.0;
                report.number(&section, "candles", count);
                report.number(&section, "coverage_pct", count / expected * 100.0);
                report.number(&section, "missing_candles", expected - count);
                report.number(&section, "freshness_hours", (now as f64 - (last + *secs as f64)) / 3_600.0);
            }
            report.number(&section, "gaps", num(grow.first()).unwrap_or(0.0));
            report.number(&section, "largest_gap_hours", num(grow.get(1)).map_or(0.0, |d| d / 3_600.0));
        }
        let syms: Vec<&String> = rets.keys().collect();
        for i in 0..syms.len() {
            for j in i + 1..syms.len() {
                let (a, b) = (&rets[syms[i]], &rets[syms[j]]);
                let (x, y): (Vec<f64>, Vec<f64>) = a.iter().filter_map(|(t, r)| b.get(t).map(|s| (*r, *s))).unzip();
                report.number(
                    "correlation",
                    &format!("{}~{}", syms[i], syms[j]),
                    correlation(&x, &y).unwrap_or(f64::NAN),
                );
            }
        }
        report.summary = if regimes.is_empty() { "no candles stored".into() } else { regimes.join("; ") };
        Ok(report)
    }
}

guest_sdk::export_analysis!(MarketAnalysis);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::{rows, MetricValue, TestDatabase};

    fn c(ts: i64, close: f64) -> Candle {
        Candle { ts, open: close, high: close * 1.01, low: close * 0.99, close, volume: 1.0 }
    }

    #[test]
    fn statistics_by_hand() {
        assert_eq!(returns(&[100.0, 110.0, 99.0]), vec![0.10000000000000009, -0.09999999999999998]);
        assert!((stdev(&[1.0, 2.0, 3.0, 4.0]).unwrap() - 1.2909944487358056).abs() < 1e-12);
        assert_eq!(stdev(&[1.0]), None);
        assert!((correlation(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((correlation(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(correlation(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        // 10 → 12 → 11 → 13: net 3 over a path of 2 + 1 + 2
        assert_eq!(efficiency_ratio(&[10.0, 12.0, 11.0, 13.0]), Some(0.6));
        assert_eq!(regime(0.6, 1.0, 1.0), "trending_up");
        assert_eq!(regime(0.6, -1.0, 1.0), "trending_down");
        assert_eq!(regime(0.1, 1.0, 1.0), "ranging");
        assert_eq!(regime(0.9, 1.0, 2.0), "volatile");
    }

    #[test]
    fn a_straight_rise_is_trending_up() {
        let candles: Vec<Candle> = (0..200).map(|i| c(i * 3_600, 100.0 + i as f64)).collect();
        let f = facts(&candles).unwrap();
        assert_eq!(f.regime, "trending_up");
        assert_eq!(f.efficiency, Some(1.0));
        assert!(f.sma_slope_pct.unwrap() > 0.0);
        assert!(f.atr_pct.unwrap() > 0.0);
        assert_eq!(facts(&[]), None);
    }

    #[test]
    fn report_from_the_database() {
        let t = |s: &str| DbValue::Text(s.into());
        let i = DbValue::Integer;
        let r = DbValue::Real;
        let recent: Vec<Vec<DbValue>> = (0..30)
            .rev()
            .map(|k| vec![i(k * 3_600), r(100.0), r(101.0), r(99.0), r(100.0 + k as f64), r(1.0)])
            .collect();
        let db = TestDatabase::default()
            .answer(
                SERIES,
                Ok(rows(
                    &["symbol", "interval", "n"],
                    vec![vec![t("BTCUSD"), t("1h"), i(30)], vec![t("BTCUSD"), t("1d"), i(2)]],
                )),
            )
            .answer(RECENT, Ok(rows(&["ts", "open", "high", "low", "close", "volume"], recent)))
            .answer(QUALITY, Ok(rows(&["n", "min", "max"], vec![vec![i(30), i(0), i(31 * 3_600)]])))
            .answer(GAPS, Ok(rows(&["n", "max"], vec![vec![i(1), i(7_200)]])));
        let rep = MarketAnalysis.analyze(40 * 3_600, &db).unwrap();
        let n = |k: &str| match rep.get("symbol:BTCUSD", k) {
            Some(MetricValue::Number(x)) => *x,
            other => panic!("{k}: {other:?}"),
        };
        assert!(matches!(rep.get("symbol:BTCUSD", "interval"), Some(MetricValue::Text(s)) if s == "1h"));
        assert_eq!(n("bars_analysed"), 30.0);
        assert_eq!(n("last_close"), 129.0);
        assert_eq!(n("candles"), 30.0);
        assert_eq!(n("missing_candles"), 2.0);
        assert_eq!(n("gaps"), 1.0);
        assert_eq!(n("largest_gap_hours"), 2.0);
        assert_eq!(n("freshness_hours"), 8.0);
        assert!(rep.summary.contains("BTCUSD trending_up"), "{}", rep.summary);
        // a failing query fails the report with the database's message
        assert!(MarketAnalysis.analyze(0, &TestDatabase::default()).is_err());
    }
}
