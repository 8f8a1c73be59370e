//! Test guest for hot-swaps: a well-behaved strategy that returns no signals,
//! logs nothing and counts its scans in state key "scans", which `get-state`
//! / `load-state` carry across instances.

use guest_sdk::{state::State, Init, MarketView, Portfolio, Signal, Strategy};

#[derive(Default)]
pub struct Counter {
    symbols: Vec<String>,
    scans: u64,
}

impl Strategy for Counter {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        self.scans += 1;
        Vec::new()
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

guest_sdk::export_strategy!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::{init, portfolio};
    use guest_sdk::TestMarket;

    #[test]
    fn counts_scans_across_instances() {
        let mut a = Counter::default();
        a.initialize(&init(&["BTC-USD"], &[])).unwrap();
        let m = TestMarket::default();
        for _ in 0..3 {
            assert!(a.analyze(0, &portfolio(100.0), &m).is_empty());
        }
        let mut b = Counter::default();
        b.initialize(&init(&["BTC-USD"], &[])).unwrap();
        b.load_state(&a.save_state()).unwrap();
        b.analyze(0, &portfolio(100.0), &m);
        assert_eq!(b.save_state(), b"scans=4.0\n");
    }
}
