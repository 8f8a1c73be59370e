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

/// One part of the host whose health is checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "part", content = "symbol")]
pub enum HealthPart {
    /// The scan loop: the last scan's age against the strategy's interval.
    ScanLoop,
    /// One symbol's market data: its newest candle's age.
    Feed(String),
    /// The database takes a write.
    Database,
    /// A strategy is active, not paused, not failing.
    Strategy,
    /// The last orchestrator cycle (hosts run with `--orchestrate`).
    Orchestrator,
}

/// The health of one part: `ok`, and why not (or a figure) in `detail`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthCheck {
    #[serde(flatten)]
    pub part: HealthPart,
    pub ok: bool,
    /// Seconds since the thing checked last happened, where that applies.
    pub age_secs: Option<i64>,
    pub detail: String,
}

/// What `/api/v1/health` and `host status` report: healthy only when every check is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub healthy: bool,
    pub checks: Vec<HealthCheck>,
}

impl Health {
    pub fn new(checks: Vec<HealthCheck>) -> Health {
        Health {
            healthy: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

/// A candidate in its forward shadow beside the incumbent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShadowStatus {
    pub id: i64,
    pub run_id: String,
    pub origin: String,
    pub started_at: i64,
    /// When it is promoted or refused.
    pub until: i64,
    pub candidate_return_pct: Option<f64>,
    /// The incumbent's replica on its own paper account over the same bars.
    pub incumbent_return_pct: Option<f64>,
    pub candidate_max_drawdown_pct: f64,
    pub signals: u64,
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
    /// A running host's health (None for a stored account).
    #[serde(default)]
    pub health: Option<Health>,
    /// Candidates running in shadow (signals recorded, never sent).
    #[serde(default)]
    pub shadows: Vec<ShadowStatus>,
}

/// What the kill switch did (the `kill` event's own type).
pub use host_store::payloads::KillOutcome;
