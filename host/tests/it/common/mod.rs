//! Helpers shared by the integration tests: guest components and data slices.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A guest component built by `deploy/build-guests.sh`.
pub fn guest(name: &str) -> Vec<u8> {
    let p = guest_path(name);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run deploy/build-guests.sh first)", p.display()))
}

pub fn guest_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("wasm").join(format!("{name}.wasm"))
}

/// The shared data directory: `HOST_SHARED_DATA` when set (a worktree that
/// does not sit beside `shared/`), else `../shared/data` of the repository.
pub fn shared_data() -> PathBuf {
    std::env::var_os("HOST_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().parent().unwrap().join("shared/data"))
}

/// The first `rows` data rows of a shared data file, as candles.
pub fn shared_candles(file: &str, skip: usize, rows: usize) -> Vec<trading_core::Candle> {
    let p = shared_data().join(file);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .skip(1 + skip)
        .take(rows)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            trading_core::Candle {
                ts: f[0] as i64,
                open: f[1],
                high: f[2],
                low: f[3],
                close: f[4],
                volume: f[5],
            }
        })
        .collect()
}

/// Risk limits loose enough that a test strategy keeps trading through a whole slice.
pub const LOOSE_RISK_LIMITS: &str =
    "max_trade_pct = 20.0\ndefault_trade_pct = 10.0\nmax_open_positions = 3\n\
     max_daily_loss_pct = 50.0\nmax_drawdown_pct = 90.0\nmax_consecutive_losses = 1000\n";

/// Writes `candles` as an OHLCV CSV (`ts,open,high,low,close,volume`).
pub fn write_csv(path: &std::path::Path, candles: &[trading_core::Candle]) {
    let rows = candles.iter().map(|c| {
        format!(
            "{},{},{},{},{},{}",
            c.ts, c.open, c.high, c.low, c.close, c.volume
        )
    });
    let text: Vec<String> = std::iter::once("ts,open,high,low,close,volume".to_string())
        .chain(rows)
        .collect();
    std::fs::write(path, text.join("\n")).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

pub fn limits() -> host_sandbox::bindings::RiskLimits {
    host_sandbox::bindings::RiskLimits {
        max_trade_pct: 10.0,
        default_trade_pct: 5.0,
        max_positions: 3,
        max_daily_loss_pct: 5.0,
        max_drawdown_pct: 20.0,
    }
}

pub fn empty_portfolio() -> host_sandbox::bindings::Portfolio {
    host_sandbox::bindings::Portfolio {
        cash: 10_000.0,
        total_value: 10_000.0,
        positions: vec![],
        daily_pnl: 0.0,
        total_pnl: 0.0,
        fees_paid: 0.0,
        closed_trade_count: 0,
    }
}
