//! Momentum on hourly candles: buy when the rate of change over `lookback`
//! bars exceeds `threshold` percent and the close is above EMA(`trend`);
//! close when the rate of change turns negative or the close drops below the
//! EMA. Entries carry a stop-loss `atr_stop` and a take-profit `atr_take`
//! ATR(`atr_period`) away from the entry close.
//!
//! Params: `lookback` (12 bars), `threshold` (2.0 %), `trend` (50 bars),
//! `size_pct` (default: the user's default trade size), `atr_period` (14),
//! `atr_stop` (2.0), `atr_take` (3.0).

use guest_sdk::indicators::{atr, closes, ema, roc};
use guest_sdk::{signal, state::State, Action, Init, Interval, MarketView, Portfolio, Signal, Strategy};

/// The trend EMA is fetched over this many times its period so the seed washes out.
const HISTORY_PER_TREND: usize = 3;
const MAX_PERIOD: usize = 1_000;

#[derive(Default)]
pub struct Momentum {
    /// The candles read and the scan period (`interval`: 5m, 1h or 1d; default 1h).
    interval: Option<Interval>,
    lookback: usize,
    threshold: f64,
    trend: usize,
    size_pct: f64,
    atr_period: usize,
    atr_stop: f64,
    atr_take: f64,
    symbols: Vec<String>,
    scans: u64,
}

impl Momentum {
    fn bars(&self) -> u32 {
        (self.trend * HISTORY_PER_TREND).max(self.lookback + 1).max(self.atr_period) as u32
    }
}

impl Momentum {
    fn interval(&self) -> Interval {
        self.interval.unwrap_or(Interval::H1)
    }
}

impl Strategy for Momentum {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.interval = Some(init.params.interval_or("interval", Interval::H1)?);
        let p = &init.params;
        self.lookback = p.usize_or("lookback", 12)?;
        self.threshold = p.f64_or("threshold", 2.0)?;
        self.trend = p.usize_or("trend", 50)?;
        self.size_pct = p.f64_or("size_pct", init.limits.default_trade_pct)?;
        self.atr_period = p.usize_or("atr_period", 14)?;
        self.atr_stop = p.f64_or("atr_stop", 2.0)?;
        self.atr_take = p.f64_or("atr_take", 3.0)?;
        for (name, v) in [("lookback", self.lookback), ("trend", self.trend), ("atr_period", self.atr_period)] {
            if v > MAX_PERIOD {
                return Err(format!("{name} ({v}) must be at most {MAX_PERIOD} bars"));
            }
        }
        if self.threshold < 0.0 {
            return Err(format!("threshold ({}) must not be negative", self.threshold));
        }
        for (name, v) in [("size_pct", self.size_pct), ("atr_stop", self.atr_stop), ("atr_take", self.atr_take)] {
            if v <= 0.0 {
                return Err(format!("{name} ({v}) must be positive"));
            }
        }
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn scan_interval_minutes(&self) -> u32 {
        guest_sdk::interval_minutes(self.interval())
    }

    fn analyze(&mut self, _now: i64, portfolio: &Portfolio, market: &dyn MarketView) -> Vec<Signal> {
        self.scans += 1;
        let mut out = Vec::new();
        for sym in &self.symbols {
            let candles = market.candles(sym, self.interval(), self.bars());
            let c = closes(&candles);
            let (Some(change), Some(trend), Some(&price)) = (roc(&c, self.lookback), ema(&c, self.trend), c.last())
            else {
                continue;
            };
            let held = portfolio.position(sym).is_some();
            if !held && change > self.threshold && price > trend {
                let Some(a) = atr(&candles, self.atr_period) else { continue };
                let stop = price - self.atr_stop * a;
                let take = price + self.atr_take * a;
                let mut s = signal(sym, Action::Buy, self.size_pct);
                s.stop_loss = (stop > 0.0 && stop < price).then_some(stop);
                s.take_profit = (take > price).then_some(take);
                s.tag = "momentum-up".into();
                s.confidence = (0.5 + 0.5 * (change - self.threshold) / (change.abs() + 1.0)).clamp(0.0, 1.0);
                s.reasoning = format!(
                    "ROC({}) {change:.2}% > {:.2}% and close {price:.2} > EMA({}) {trend:.2}; stop {stop:.2}, target {take:.2}",
                    self.lookback, self.threshold, self.trend
                );
                out.push(s);
            } else if held && (change < 0.0 || price < trend) {
                let mut s = signal(sym, Action::Close, 100.0);
                s.tag = "momentum-exit".into();
                s.reasoning =
                    format!("ROC({}) {change:.2}%, close {price:.2} vs EMA({}) {trend:.2}", self.lookback, self.trend);
                out.push(s);
            }
        }
        out
    }

    fn save_state(&self) -> Vec<u8> {
        State::scans(self.scans)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        self.scans = State::decode_scans(state)?;
        Ok(())
    }
}

guest_sdk::export_strategy!(Momentum);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::{candle, holding, init, long, portfolio};
    use guest_sdk::TestMarket;

    const T0: i64 = 1_700_000_000;
    const SYM: &str = "SOL-USD";
    /// Small periods so the numbers can be followed by hand.
    const PARAMS: [(&str, &str); 6] = [
        ("lookback", "3"),
        ("threshold", "5"),
        ("trend", "4"),
        ("atr_period", "2"),
        ("atr_stop", "2"),
        ("atr_take", "3"),
    ];

    fn strategy(params: &[(&str, &str)]) -> Momentum {
        let mut s = Momentum::default();
        s.initialize(&init(&[SYM], params)).expect("valid params");
        s
    }

    fn market(candles: Vec<guest_sdk::Candle>) -> TestMarket {
        let mut m = TestMarket { now: candles.last().map_or(T0, |c| c.ts + 3_600), ..TestMarket::default() };
        m.insert(SYM, Interval::H1, candles);
        m
    }

    /// Candles one hour apart with a fixed range of ±`half` around each close.
    fn bars(closes: &[f64], half: f64) -> Vec<guest_sdk::Candle> {
        closes.iter().enumerate().map(|(i, &c)| candle(T0 + i as i64 * 3_600, c, c + half, c - half, c)).collect()
    }

    #[test]
    fn breakout_above_trend_buys_with_atr_stop_and_target() {
        let mut s = strategy(&PARAMS);
        // 12 flat bars at 100, then 102, 104, 108: ROC(3) = 8% > 5%, EMA(4)
        // = 104.448 < 108. The strategy reads the last 12 bars (3 x trend).
        // Ranges ±1: TR = 2, except |high - previous close| = 3, 3, 5 on the
        // last three bars. ATR(2): 2 ... 2, then 2.5, 2.75, 3.875.
        let mut c = vec![100.0; 12];
        c.extend([102.0, 104.0, 108.0]);
        let m = market(bars(&c, 1.0));
        let sig = s.analyze(m.now, &portfolio(10_000.0), &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        let b = &sig[0];
        assert_eq!((b.action, b.size_pct, b.tag.as_str()), (Action::Buy, 5.0, "momentum-up"));
        assert!((b.stop_loss.unwrap() - (108.0 - 2.0 * 3.875)).abs() < 1e-9, "{b:?}");
        assert!((b.take_profit.unwrap() - (108.0 + 3.0 * 3.875)).abs() < 1e-9, "{b:?}");
    }

    #[test]
    fn weak_move_or_below_trend_does_not_buy() {
        let mut s = strategy(&PARAMS);
        // +3% over 3 bars: under the 5% threshold.
        let mut weak = vec![100.0; 12];
        weak.extend([101.0, 102.0, 103.0]);
        let m = market(bars(&weak, 1.0));
        assert!(s.analyze(m.now, &portfolio(10_000.0), &m).is_empty());
        // A bounce of 6% after a long fall: ROC(3) is above the threshold but
        // the close (106) is still under EMA(20) of a series that sat at 150.
        let mut s = strategy(&[("lookback", "3"), ("threshold", "5"), ("trend", "20")]);
        let mut bounce: Vec<f64> = (0..40).map(|i| 150.0 - i as f64 * 1.25).collect();
        bounce.extend([100.0, 102.0, 104.0, 106.0]);
        let m = market(bars(&bounce, 1.0));
        let e = ema(&bounce, 20).unwrap();
        assert!(roc(&bounce, 3).unwrap() > 5.0 && 106.0 < e, "setup: ema {e}");
        assert!(s.analyze(m.now, &portfolio(10_000.0), &m).is_empty());
    }

    #[test]
    fn exits_when_momentum_fades_or_trend_breaks() {
        let held = holding(0.0, vec![long(SYM, 10.0, 100.0)]);
        // ROC turns negative while still above a slower EMA: 100 .. 130, then
        // 133 and a gentle slide to 131.5.
        let mut slow = strategy(&[("lookback", "3"), ("threshold", "5"), ("trend", "10")]);
        let mut c: Vec<f64> = (0..=30).map(|i| 100.0 + i as f64).collect();
        c.extend([133.0, 132.5, 132.0, 131.5]);
        let m = market(bars(&c, 0.5));
        assert!(roc(&c, 3).unwrap() < 0.0 && 131.5 > ema(&c, 10).unwrap());
        let sig = slow.analyze(m.now, &held, &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        assert_eq!((sig[0].action, sig[0].tag.as_str()), (Action::Close, "momentum-exit"));
        // Close under the EMA with ROC still positive: 100 flat, up to 120,
        // back to 104; EMA(4) of the last 12 bars is 109.28.
        let mut s = strategy(&PARAMS);
        let mut c = vec![100.0; 10];
        c.extend([120.0, 120.0, 104.0]);
        let m = market(bars(&c, 0.5));
        assert!(roc(&c, 3).unwrap() > 0.0 && 104.0 < ema(&c, 4).unwrap());
        let sig = s.analyze(m.now, &held, &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        assert_eq!(sig[0].action, Action::Close);
        // Still rising and above trend: keep holding.
        let rising: Vec<f64> = (0..15).map(|i| 100.0 + 2.0 * i as f64).collect();
        let m = market(bars(&rising, 0.5));
        assert!(s.analyze(m.now, &held, &m).is_empty());
    }

    #[test]
    fn too_little_data_gives_nothing() {
        let mut s = strategy(&[]);
        let c: Vec<f64> = (0..49).map(|i| 100.0 + i as f64).collect();
        let m = market(bars(&c, 1.0));
        assert!(s.analyze(m.now, &portfolio(10_000.0), &m).is_empty());
    }

    #[test]
    fn defaults_and_history() {
        let s = strategy(&[]);
        assert_eq!((s.lookback, s.threshold, s.trend, s.size_pct), (12, 2.0, 50, 5.0));
        assert_eq!((s.atr_period, s.atr_stop, s.atr_take), (14, 2.0, 3.0));
        assert_eq!(s.bars(), 150);
        assert_eq!(s.scan_interval_minutes(), 60);
    }

    #[test]
    fn bad_params_are_refused() {
        for params in [
            &[("lookback", "0")][..],
            &[("lookback", "twelve")],
            &[("trend", "-5")],
            &[("trend", "100000")],
            &[("threshold", "-1")],
            &[("threshold", "NaN")],
            &[("size_pct", "0")],
            &[("atr_stop", "0")],
            &[("atr_take", "-2")],
            &[("atr_period", "2.5")],
        ] {
            let mut s = Momentum::default();
            assert!(s.initialize(&init(&[SYM], params)).is_err(), "accepted {params:?}");
        }
    }

    #[test]
    fn state_round_trips() {
        let mut s = strategy(&PARAMS);
        let m = market(bars(&[100.0; 20], 1.0));
        for _ in 0..7 {
            s.analyze(m.now, &portfolio(10_000.0), &m);
        }
        let mut next = strategy(&PARAMS);
        next.load_state(&s.save_state()).unwrap();
        assert_eq!(next.scans, 7);
        assert!(next.load_state(b"scans=").is_err());
    }
}
