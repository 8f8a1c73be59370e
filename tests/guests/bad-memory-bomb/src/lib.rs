//! Test guest: `analyze` allocates 1 MiB chunks, writes to every page of each
//! and keeps them all, forever (the host must stop it at its memory cap).

use guest_sdk::{Init, MarketView, Portfolio, Signal, Strategy};
use std::hint::black_box;

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4_096;

#[derive(Default)]
pub struct MemoryBomb {
    symbols: Vec<String>,
}

impl Strategy for MemoryBomb {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn analyze(&mut self, _now: i64, _portfolio: &Portfolio, _market: &dyn MarketView) -> Vec<Signal> {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; black_box(CHUNK)];
            for (i, b) in chunk.iter_mut().step_by(PAGE).enumerate() {
                *b = black_box(i as u8 | 1);
            }
            kept.push(black_box(chunk));
            black_box(&mut kept);
        }
    }
}

guest_sdk::export_strategy!(MemoryBomb);
