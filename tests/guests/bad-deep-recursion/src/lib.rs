//! Test guest: `analyze` recurses without bound, each frame holding a small
//! buffer, and uses the result after the call (no tail call to optimise away).

use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

#[derive(Default)]
pub struct DeepRecursion {
    symbols: Vec<String>,
}

#[inline(never)]
fn dive(depth: u64) -> u64 {
    let frame = black_box([depth; 16]);
    // Never true at run time; keeps the compiler from calling this infinite.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = dive(black_box(depth + 1));
    black_box(below).wrapping_add(frame[(depth % 16) as usize])
}

impl Strategy for DeepRecursion {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        black_box(dive(black_box(self.symbols.len() as u64)));
        Vec::new()
    }
}

guest_sdk::export_strategy!(DeepRecursion);
