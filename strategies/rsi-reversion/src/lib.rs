//! RSI mean reversion on hourly candles: buy when RSI(`period`) drops below
//! `oversold`, close when it recovers above `exit`. Each entry carries a
//! stop-loss `atr_stop` ATR(`period`) below the entry close.
//!
//! Params: `period` (14 bars), `oversold` (30), `exit` (55), `size_pct`
//! (percent of portfolio value per entry, default: the user's default trade
//! size) and `atr_stop` (2.0).

use guest_sdk::indicators::{atr, closes, rsi};
use guest_sdk::{signal, state::State, Action, Init, Interval, MarketView, Portfolio, Signal, Strategy};

/// Wilder smoothing needs history to settle: bars fetched per `period`.
const HISTORY_PER_PERIOD: usize = 10;

#[derive(Default)]
pub struct RsiReversion {
    /// The candles read and the scan period (`interval`: 5m, 1h or 1d; default 1h).
    interval: Option<Interval>,
    period: usize,
    oversold: f64,
    exit: f64,
    size_pct: f64,
    atr_stop: f64,
    symbols: Vec<String>,
    scans: u64,
}

impl RsiReversion {
    fn bars(&self) -> u32 {
        (self.period * HISTORY_PER_PERIOD + 1) as u32
    }
}

impl RsiReversion {
    fn interval(&self) -> Interval {
        self.interval.unwrap_or(Interval::H1)
    }
}

impl Strategy for RsiReversion {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.interval = Some(init.params.interval_or("interval", Interval::H1)?);
        let p = &init.params;
        self.period = p.usize_or("period", 14)?;
        self.oversold = p.f64_or("oversold", 30.0)?;
        self.exit = p.f64_or("exit", 55.0)?;
        self.size_pct = p.f64_or("size_pct", init.limits.default_trade_pct)?;
        self.atr_stop = p.f64_or("atr_stop", 2.0)?;
        if self.period > 1_000 {
            return Err(format!("period ({}) must be at most 1000 bars", self.period));
        }
        if !(0.0 < self.oversold && self.oversold < self.exit && self.exit < 100.0) {
            return Err(format!("need 0 < oversold ({}) < exit ({}) < 100", self.oversold, self.exit));
        }
        if self.size_pct <= 0.0 {
            return Err(format!("size_pct ({}) must be positive", self.size_pct));
        }
        if self.atr_stop <= 0.0 {
            return Err(format!("atr_stop ({}) must be positive", self.atr_stop));
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
            let (Some(r), Some(&price)) = (rsi(&c, self.period), c.last()) else { continue };
            let held = portfolio.position(sym).is_some();
            if !held && r < self.oversold {
                let Some(a) = atr(&candles, self.period) else { continue };
                let mut s = signal(sym, Action::Buy, self.size_pct);
                let stop = price - self.atr_stop * a;
                s.stop_loss = (stop > 0.0 && stop < price).then_some(stop);
                s.tag = "rsi-oversold".into();
                s.confidence = (0.5 + 0.5 * (self.oversold - r) / self.oversold).clamp(0.0, 1.0);
                s.reasoning = format!(
                    "RSI({}) {r:.1} < {:.1}; stop {stop:.2} ({} x ATR {a:.2})",
                    self.period, self.oversold, self.atr_stop
                );
                out.push(s);
            } else if held && r > self.exit {
                let mut s = signal(sym, Action::Close, 100.0);
                s.tag = "rsi-exit".into();
                s.reasoning = format!("RSI({}) {r:.1} > exit {:.1}", self.period, self.exit);
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

guest_sdk::export_strategy!(RsiReversion);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::{candle, holding, init, long, portfolio};
    use guest_sdk::TestMarket;

    const T0: i64 = 1_700_000_000;
    const SYM: &str = "ETH-USD";

    fn strategy(params: &[(&str, &str)]) -> RsiReversion {
        let mut s = RsiReversion::default();
        s.initialize(&init(&[SYM], params)).expect("valid params");
        s
    }

    /// `n` closes falling by 1 from 200 (RSI 0).
    fn falling(n: usize) -> Vec<f64> {
        (0..n).map(|i| 200.0 - i as f64).collect()
    }

    #[test]
    fn oversold_buys_with_an_atr_stop() {
        let mut s = strategy(&[("size_pct", "4")]);
        // 30 bars falling 1 per bar, flat candles: RSI(14) = 0. True ranges are
        // 0 for the first bar and 1 after, so ATR = 1 - (1/14)(13/14)^16.
        let c = falling(30);
        let m = TestMarket::from_closes(SYM, T0, &c);
        let sig = s.analyze(m.now, &portfolio(1_000.0), &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        let b = &sig[0];
        assert_eq!((b.action, b.size_pct, b.tag.as_str()), (Action::Buy, 4.0, "rsi-oversold"));
        let atr = 1.0 - (13.0f64 / 14.0).powi(16) / 14.0;
        let want = 171.0 - 2.0 * atr;
        let stop = b.stop_loss.expect("a stop-loss");
        assert!((stop - want).abs() < 1e-9, "stop {stop}, want {want}");
        assert_eq!(b.take_profit, None);
        assert!(b.confidence > 0.5 && b.confidence <= 1.0);
    }

    #[test]
    fn stop_uses_true_ranges_of_real_candles() {
        // period 2, atr_stop 1.5. Closes 10, 9, 8 (RSI 0). Bars 11..9, 10..7,
        // 9..8 -> TR 2, max(3, 0, 3) = 3, max(1, 0, 1) = 1. ATR seed (2 + 3) / 2
        // = 2.5, then (2.5 + 1) / 2 = 1.75. Stop 8 - 1.5 * 1.75 = 5.375.
        let mut s = strategy(&[("period", "2"), ("oversold", "30"), ("exit", "55"), ("atr_stop", "1.5")]);
        let mut m = TestMarket::default();
        let bars = vec![
            candle(T0, 10.0, 11.0, 9.0, 10.0),
            candle(T0 + 3_600, 10.0, 10.0, 7.0, 9.0),
            candle(T0 + 7_200, 9.0, 9.0, 8.0, 8.0),
        ];
        m.insert(SYM, Interval::H1, bars);
        m.now = T0 + 3 * 3_600;
        let sig = s.analyze(m.now, &portfolio(1_000.0), &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        assert!((sig[0].stop_loss.unwrap() - 5.375).abs() < 1e-12, "{sig:?}");
    }

    #[test]
    fn recovery_closes_a_held_position() {
        let mut s = strategy(&[]);
        // A fall, then a strong bounce: RSI(14) well above 55.
        let mut c = falling(30);
        c.extend((1..=15).map(|i| 171.0 + 2.0 * i as f64));
        let m = TestMarket::from_closes(SYM, T0, &c);
        let held = holding(0.0, vec![long(SYM, 1.0, 171.0)]);
        let sig = s.analyze(m.now, &held, &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        assert_eq!((sig[0].action, sig[0].tag.as_str()), (Action::Close, "rsi-exit"));
        // Not held and not oversold: nothing to do.
        assert!(s.analyze(m.now, &portfolio(1_000.0), &m).is_empty());
    }

    #[test]
    fn held_while_oversold_or_too_little_data_gives_nothing() {
        let mut s = strategy(&[]);
        let m = TestMarket::from_closes(SYM, T0, &falling(30));
        let held = holding(0.0, vec![long(SYM, 1.0, 190.0)]);
        assert!(s.analyze(m.now, &held, &m).is_empty());
        let short = TestMarket::from_closes(SYM, T0, &falling(14));
        assert!(s.analyze(short.now, &portfolio(1_000.0), &short).is_empty());
        let other = TestMarket::from_closes("BTC-USD", T0, &falling(30));
        assert!(s.analyze(other.now, &portfolio(1_000.0), &other).is_empty());
    }

    #[test]
    fn defaults() {
        let s = strategy(&[]);
        assert_eq!((s.period, s.oversold, s.exit, s.size_pct, s.atr_stop), (14, 30.0, 55.0, 5.0, 2.0));
        assert_eq!(s.scan_interval_minutes(), 60);
    }

    #[test]
    fn bad_params_are_refused() {
        for params in [
            &[("period", "0")][..],
            &[("period", "fourteen")],
            &[("period", "5000")],
            &[("oversold", "60")],
            &[("oversold", "55")],
            &[("oversold", "0")],
            &[("exit", "100")],
            &[("exit", "x")],
            &[("size_pct", "0")],
            &[("atr_stop", "-1")],
            &[("atr_stop", "inf")],
        ] {
            let mut s = RsiReversion::default();
            assert!(s.initialize(&init(&[SYM], params)).is_err(), "accepted {params:?}");
        }
    }

    #[test]
    fn state_round_trips() {
        let mut s = strategy(&[]);
        let m = TestMarket::from_closes(SYM, T0, &falling(30));
        for _ in 0..5 {
            s.analyze(m.now, &portfolio(1_000.0), &m);
        }
        let mut next = strategy(&[]);
        next.load_state(&s.save_state()).unwrap();
        assert_eq!(next.scans, 5);
        assert!(next.load_state(b"garbage").is_err());
    }
}
