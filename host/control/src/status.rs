//! What `host status`, the API and the bot show about a running host, and
//! what the kill switch reports.

use host_trading::risk_file::RiskFile;
use host_trading::Mode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The active strategy as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StrategyStatus {
    pub version: i64,
    pub hash: String,
    pub scan_minutes: u32,
    pub failures: u32,
}

/// One open position, marked at the last price.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PositionStatus {
    pub symbol: String,
    pub qty: Decimal,
    pub avg_entry: Decimal,
    pub mark: Option<Decimal>,
    pub value: Decimal,
    pub unrealized_pnl: Decimal,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub opened_at: i64,
    pub intent: String,
    pub tag: String,
}

/// Everything `host status`, the API and the bot show about a running host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub running: bool,
    pub mode: Mode,
    pub paused: Option<String>,
    pub strategy: Option<StrategyStatus>,
    pub scan_seq: i64,
    pub last_scan_ts: Option<i64>,
    /// The injected clock: the close of the last bar (replay) or wall time (live).
    pub clock: i64,
    pub starting_capital: Decimal,
    pub cash: Decimal,
    pub equity: Decimal,
    pub total_pnl: Decimal,
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
    pub daily_pnl: Decimal,
    pub fees_paid: Decimal,
    pub drawdown_pct: Decimal,
    pub positions: Vec<PositionStatus>,
    pub open_orders: usize,
    /// Symbols paused by a person (no new entries; exits still run).
    #[serde(default)]
    pub paused_symbols: Vec<String>,
    pub closed_trades: usize,
    pub halt: Option<String>,
    pub killed: bool,
    pub limits: RiskFile,
}

/// What the kill switch did (the `kill` event's own type).
pub use host_store::payloads::KillOutcome;
