//! Moving-average crossover on the closes of one interval (hourly unless
//! `interval` says `5m` or `1d`; it scans at that interval too): buy when the
//! fast SMA crosses above the slow one, close when it crosses back below.
//! Params: `fast`, `slow` (bars), `size_pct` (percent of portfolio value per
//! entry) and `interval`.

use guest_sdk::indicators::sma_prev_last;
use guest_sdk::{signal, state::State, Action, Init, Interval, MarketView, Portfolio, Signal, Strategy};

#[derive(Default)]
pub struct SmaCrossover {
    /// The candles read and the scan period (`interval`: 5m, 1h or 1d; default 1h).
    interval: Option<Interval>,
    fast: usize,
    slow: usize,
    size_pct: f64,
    symbols: Vec<String>,
    scans: u64,
}

impl SmaCrossover {
    fn interval(&self) -> Interval {
        self.interval.unwrap_or(Interval::H1)
    }
}

impl Strategy for SmaCrossover {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.interval = Some(init.params.interval_or("interval", Interval::H1)?);
        self.fast = init.params.usize_or("fast", 10)?;
        self.slow = init.params.usize_or("slow", 30)?;
        self.size_pct = init.params.f64_or("size_pct", init.limits.default_trade_pct)?;
        if self.fast >= self.slow {
            return Err(format!("fast ({}) must be shorter than slow ({})", self.fast, self.slow));
        }
        if self.size_pct <= 0.0 {
            return Err(format!("size_pct ({}) must be positive", self.size_pct));
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
            let c = market.closes(sym, self.interval(), self.slow as u32 + 1);
            let (Some((fast_prev, fast_cur)), Some((slow_prev, slow_cur))) =
                (sma_prev_last(&c, self.fast), sma_prev_last(&c, self.slow))
            else {
                continue;
            };
            let held = portfolio.position(sym).is_some();
            if !held && fast_prev <= slow_prev && fast_cur > slow_cur {
                let mut s = signal(sym, Action::Buy, self.size_pct);
                s.tag = "sma-cross-up".into();
                s.reasoning = format!("fast {fast_cur:.2} crossed above slow {slow_cur:.2}");
                out.push(s);
            } else if held && fast_prev >= slow_prev && fast_cur < slow_cur {
                let mut s = signal(sym, Action::Close, 100.0);
                s.tag = "sma-cross-down".into();
                s.reasoning = format!("fast {fast_cur:.2} crossed below slow {slow_cur:.2}");
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

guest_sdk::export_strategy!(SmaCrossover);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::{holding, init, long, portfolio};
    use guest_sdk::TestMarket;

    const T0: i64 = 1_700_000_000;

    fn strategy(params: &[(&str, &str)]) -> SmaCrossover {
        let mut s = SmaCrossover::default();
        s.initialize(&init(&["BTC-USD"], params)).expect("valid params");
        s
    }

    // fast 2 / slow 4 over the last 5 closes.
    // up:   prev [10,10,10,9]  fast 9.5  <= slow 9.75;  cur [10,10,9,12] fast 10.5 > slow 10.25
    // down: prev [10,10,10,11] fast 10.5 >= slow 10.25; cur [10,10,11,8] fast 9.5  < slow 9.75
    const UP: [f64; 6] = [10.0, 10.0, 10.0, 10.0, 9.0, 12.0];
    const DOWN: [f64; 6] = [10.0, 10.0, 10.0, 10.0, 11.0, 8.0];
    const PARAMS: [(&str, &str); 3] = [("fast", "2"), ("slow", "4"), ("size_pct", "3")];

    #[test]
    fn cross_up_buys() {
        let mut s = strategy(&PARAMS);
        let m = TestMarket::from_closes("BTC-USD", T0, &UP);
        let sig = s.analyze(m.now, &portfolio(1_000.0), &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        assert_eq!(sig[0].symbol, "BTC-USD");
        assert_eq!(sig[0].action, Action::Buy);
        assert_eq!(sig[0].size_pct, 3.0);
        assert_eq!(sig[0].tag, "sma-cross-up");
        // Already long: no second entry.
        let held = holding(0.0, vec![long("BTC-USD", 1.0, 12.0)]);
        assert!(s.analyze(m.now, &held, &m).is_empty());
    }

    #[test]
    fn cross_down_closes_a_held_position() {
        let mut s = strategy(&PARAMS);
        let m = TestMarket::from_closes("BTC-USD", T0, &DOWN);
        let held = holding(0.0, vec![long("BTC-USD", 1.0, 10.0)]);
        let sig = s.analyze(m.now, &held, &m);
        assert_eq!(sig.len(), 1, "{sig:?}");
        assert_eq!(sig[0].action, Action::Close);
        assert_eq!(sig[0].tag, "sma-cross-down");
        // Nothing to close when flat.
        assert!(s.analyze(m.now, &portfolio(1_000.0), &m).is_empty());
    }

    #[test]
    fn no_cross_or_too_little_data_gives_nothing() {
        let mut s = strategy(&PARAMS);
        let flat = TestMarket::from_closes("BTC-USD", T0, &[10.0; 10]);
        assert!(s.analyze(flat.now, &portfolio(1_000.0), &flat).is_empty());
        let short = TestMarket::from_closes("BTC-USD", T0, &UP[2..]);
        assert!(s.analyze(short.now, &portfolio(1_000.0), &short).is_empty());
        // The cross is not visible before its bar closes.
        let mut early = TestMarket::from_closes("BTC-USD", T0, &UP);
        early.now -= 3_600;
        assert!(s.analyze(early.now, &portfolio(1_000.0), &early).is_empty());
    }

    #[test]
    fn the_interval_param_picks_the_candles_read_and_the_scan_period() {
        let mut daily = PARAMS.to_vec();
        daily.push(("interval", "1d"));
        let mut s = strategy(&daily);
        assert_eq!(s.scan_interval_minutes(), 1_440);
        // hourly candles only: a daily strategy sees nothing to cross
        let hourly = TestMarket::from_closes("BTC-USD", T0, &UP);
        assert!(s.analyze(hourly.now, &portfolio(1_000.0), &hourly).is_empty());
        // the same closes as days: it buys
        let mut m = TestMarket::default();
        let days = UP
            .iter()
            .enumerate()
            .map(|(i, &c)| guest_sdk::Candle {
                ts: T0 + i as i64 * 86_400,
                open: c,
                high: c,
                low: c,
                close: c,
                volume: 1.0,
            })
            .collect();
        m.insert("BTC-USD", Interval::D1, days);
        m.now = T0 + UP.len() as i64 * 86_400;
        assert_eq!(s.analyze(m.now, &portfolio(1_000.0), &m)[0].action, Action::Buy);
        let bad = SmaCrossover::default().initialize(&init(&["BTC-USD"], &[("interval", "2h")]));
        assert!(bad.unwrap_err().contains("5m, 1h or 1d"));
    }

    #[test]
    fn defaults_come_from_params_and_limits() {
        let s = strategy(&[]);
        assert_eq!((s.fast, s.slow, s.size_pct), (10, 30, 5.0));
        assert_eq!(s.scan_interval_minutes(), 60);
    }

    #[test]
    fn bad_params_are_refused() {
        for params in [
            &[("fast", "30"), ("slow", "30")][..],
            &[("fast", "40"), ("slow", "30")],
            &[("fast", "ten")],
            &[("slow", "1.5")],
            &[("fast", "0")],
            &[("size_pct", "lots")],
            &[("size_pct", "NaN")],
            &[("size_pct", "-1")],
        ] {
            let mut s = SmaCrossover::default();
            assert!(s.initialize(&init(&["BTC-USD"], params)).is_err(), "accepted {params:?}");
        }
    }

    #[test]
    fn state_round_trips() {
        let mut s = strategy(&PARAMS);
        let m = TestMarket::from_closes("BTC-USD", T0, &UP);
        for _ in 0..3 {
            s.analyze(m.now, &portfolio(1_000.0), &m);
        }
        let saved = s.save_state();
        let mut next = strategy(&PARAMS);
        next.load_state(&saved).unwrap();
        assert_eq!(next.scans, 3);
        assert_eq!(next.save_state(), saved);
        next.load_state(&[]).unwrap();
        assert_eq!(next.scans, 0);
        assert!(next.load_state(b"scans=many").is_err());
    }
}
