//! Loopback venue servers for the exchange tests: stateful Kraken and Coinbase look-alikes on
//! 127.0.0.1 that check signatures and JWTs, keep balances, orders and trades, and inject faults.

pub mod coinbase_venue;
pub mod kraken_venue;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

/// A fault injected into the next matching request(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After`; nothing applied.
    RateLimited { retry_after_secs: u64 },
    /// HTTP 500; nothing applied.
    ServerError,
    /// The request is applied, then HTTP 500.
    ServerErrorAfterApply,
    /// No answer ever; nothing applied (the client times out).
    Hang,
    /// The request is applied, then no answer ever.
    HangAfterApply,
    /// The request is applied, then the connection is dropped without an answer.
    DropAfterApply,
}

impl Fault {
    pub fn applies_first(self) -> bool {
        matches!(
            self,
            Fault::ServerErrorAfterApply | Fault::HangAfterApply | Fault::DropAfterApply
        )
    }
}

/// Faults waiting for requests whose endpoint contains `filter`.
#[derive(Debug, Default)]
pub struct Faults(VecDeque<(String, Fault)>);

impl Faults {
    pub fn push(&mut self, filter: &str, fault: Fault, times: usize) {
        for _ in 0..times {
            self.0.push_back((filter.to_string(), fault));
        }
    }

    pub fn take(&mut self, endpoint: &str) -> Option<Fault> {
        let i = self
            .0
            .iter()
            .position(|(f, _)| endpoint.contains(f.as_str()))?;
        self.0.remove(i).map(|(_, f)| f)
    }
}

/// Kills the connection serving the current request without a response: the unwind ends the
/// connection's task (and `resume_unwind` skips the panic hook, so nothing is printed).
pub fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("loopback venue: connection dropped on purpose"))
}

/// Never completes (the client's timeout fires).
pub async fn hang() -> ! {
    std::future::pending::<()>().await;
    unreachable!()
}

pub fn test_data(venue: &str, file: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(venue)
        .join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Polls `cond` until it holds or `secs` pass.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn unix_now() -> f64 {
    use trading_core::Clock as _;
    trading_core::WallClock.now_f64()
}
