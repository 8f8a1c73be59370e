//! Crash points for restart tests: with `HOST_FAILPOINT=name:n` set, the
//! process aborts (as a crash would: no destructors, no flush) the n-th time
//! the point `name` is reached. Unset, a point costs one relaxed load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let v = std::env::var("HOST_FAILPOINT").ok()?;
        let (name, n) = v.rsplit_once(':')?;
        Some((name.to_string(), n.parse().ok()?))
    })
}

/// Aborts the process if this is the configured point's n-th hit.
pub fn hit(name: &str) {
    if let Some((point, n)) = spec() {
        if point == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("failpoint {name}:{n}: aborting");
            std::process::abort();
        }
    }
}
