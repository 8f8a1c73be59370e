//! The one clock seam. Nothing in this crate reads it: the engine, the
//! portfolio and risk take `now` as an argument. The shell, the feeds, the
//! exchange clients and the commands hold a [`Clock`] and ask it;
//! [`WallClock`] is the only place in the workspace that reads the system
//! time, [`ManualClock`] is the injected one (tests, replays, benches).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now(&self) -> i64 {
        self.now_micros().div_euclid(1_000_000)
    }

    /// Seconds since the Unix epoch with a fraction.
    fn now_f64(&self) -> f64 {
        self.now_micros() as f64 / 1e6
    }
}

/// The system's wall clock. Before the epoch (a badly set machine) it reads 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_micros(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The wall clock, shared.
pub fn wall() -> Arc<dyn Clock> {
    Arc::new(WallClock)
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// At `secs` Unix seconds.
    pub fn at(secs: i64) -> ManualClock {
        ManualClock { micros: AtomicI64::new(secs.saturating_mul(1_000_000)) }
    }

    pub fn set(&self, secs: i64) {
        self.micros.store(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }

    pub fn advance(&self, secs: i64) {
        self.micros.fetch_add(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::at(1_700_000_000);
        assert_eq!(c.now(), 1_700_000_000);
        c.advance(-5);
        assert_eq!(c.now(), 1_699_999_995);
        c.set(10);
        assert_eq!(c.now_micros(), 10_000_000);
        assert!(WallClock.now() > 1_700_000_000);
    }
}
