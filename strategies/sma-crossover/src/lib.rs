//! Moving-average crossover on hourly closes: buy when the fast SMA crosses
//! above the slow one, close when it crosses back below. Params: `fast`,
//! `slow` (bars) and `size_pct` (percent of portfolio value per entry).

use guest_sdk::{signal, state::State, Action, Init, Interval, MarketView, Portfolio, Signal, Strategy};

#[derive(Default)]
pub struct SmaCrossover {
    fast: usize,
    slow: usize,
    size_pct: f64,
    symbols: Vec<String>,
    scans: u64,
}

fn sma(c: &[guest_sdk::Candle]) -> f64 {
    c.iter().map(|c| c.close).sum::<f64>() / c.len() as f64
}

impl Strategy for SmaCrossover {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.fast = init.params.usize_or("fast", 10)?;
        self.slow = init.params.usize_or("slow", 30)?;
        self.size_pct = init.params.f64_or("size_pct", init.limits.default_trade_pct)?;
        if self.fast >= self.slow {
            return Err(format!("fast ({}) must be shorter than slow ({})", self.fast, self.slow));
        }
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn scan_interval_minutes(&self) -> u32 {
        60
    }

    fn analyze(&mut self, _now: i64, portfolio: &Portfolio, market: &dyn MarketView) -> Vec<Signal> {
        self.scans += 1;
        let mut out = Vec::new();
        for sym in &self.symbols {
            let c = market.candles(sym, Interval::H1, self.slow as u32 + 1);
            if c.len() < self.slow + 1 {
                continue;
            }
            let (prev, cur) = (&c[..self.slow], &c[1..]);
            let fast_prev = sma(&prev[prev.len() - self.fast..]);
            let fast_cur = sma(&cur[cur.len() - self.fast..]);
            let (slow_prev, slow_cur) = (sma(prev), sma(cur));
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
        let mut s = State::default();
        s.set("scans", self.scans as f64);
        s.encode()
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        self.scans = State::decode(state)?.get("scans").unwrap_or(0.0) as u64;
        Ok(())
    }
}

guest_sdk::export_strategy!(SmaCrossover);
