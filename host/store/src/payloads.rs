//! The typed payload of every event kind the host writes, one struct (or
//! engine type) per kind, and the venue records the live account reports
//! (they live here, below host-trading, so the event log can name them).
//! Invariants: each struct serialises to the JSON the kind has always stored
//! (field names unchanged), so old rows read back into the same types; fields
//! added since are `#[serde(default)]`. Nothing here is a `serde_json::Value`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use trading_core::{CancelReason, HaltReason, OrderSide, Signal};

/// `startup`: the scan loop began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Startup {
    /// `paper` or `live`.
    pub mode: String,
    pub paused: Option<String>,
    pub version: Option<i64>,
}

/// `shutdown`: the scan loop stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    pub scans: i64,
    pub cancelled_orders: usize,
    pub positions: usize,
}

/// `alert`: something a person should read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub message: String,
}

/// Where an `error` happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorSite {
    /// The account could not be written.
    Account,
    /// The engine refused a bar.
    Engine,
}

/// `error`: a failure the host survived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    #[serde(rename = "where")]
    pub site: ErrorSite,
    pub error: String,
}

/// `deploy_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployFailed {
    pub reason: String,
}

/// `deploy`: a version became the active one (hot swap, or offline activation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    pub version: i64,
    pub previous: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_scan: Option<i64>,
    /// Activated by `host deploy` with no host running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
}

impl Deploy {
    /// Whether this deploy went back to an older version.
    pub fn is_rollback(&self) -> bool {
        self.origin
            .as_deref()
            .is_some_and(|o| o.contains("rollback"))
    }
}

/// `halt`: a person latched a halt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Halt {
    pub by: String,
    pub reason: String,
    pub newly: bool,
}

/// `resume`: a person cleared halts and the kill switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub by: String,
    pub halt: Option<String>,
    pub killed: bool,
}

/// What the kill switch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillOutcome {
    pub cancelled_orders: usize,
    /// Positions whose market close is queued for the next bar.
    pub closing: Vec<String>,
}

/// `kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    pub by: String,
    pub outcome: KillOutcome,
}

/// `tuning_trigger`: a manual review request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningTrigger {
    /// Always `manual` today.
    pub kind: String,
    pub by: String,
    pub reason: String,
}

/// `telegram_unauthorized`: a message the bot did not obey (the only kind a
/// control client may record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelegramUnauthorized {
    pub chat: i64,
    pub from: Option<i64>,
    /// `chat` (another chat) or `sender` (may not steer).
    pub reason: String,
    #[serde(default)]
    pub suppressed: u64,
    #[serde(default)]
    pub over_budget: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// `strategy_paused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyPaused {
    pub reason: String,
}

/// `orders_cancelled` at the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrdersCancelled {
    pub count: usize,
    pub why: String,
}

/// `review_started`: the orchestrator's cycle began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewStarted {
    pub kind: String,
    pub detail: String,
    pub due: usize,
}

/// `strategy_fallback` / `strategy_loaded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyLoaded {
    pub version: i64,
    pub source: crate::archive::BytesSource,
}

/// `backfill`: candles fetched at startup, per symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub stored: Vec<BackfillCount>,
    pub failed: Vec<String>,
}

/// How many candles a backfill stored: per symbol and tier (since every
/// tier is backfilled), or per symbol (rows written before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackfillCount {
    /// (symbol, tier name, candles).
    Tier(String, String, usize),
    /// (symbol, candles).
    Symbol(String, usize),
}

/// `gap_fill`: after the venue feed reconnected, the 5m bars that closed
/// while it was down were fetched and fed through the per-bar path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapFill {
    pub bars: usize,
    pub failed: Vec<String>,
}

/// `future_candle`: a wall clock refused a candle that closes in the future
/// (a venue or feed bug).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FutureCandle {
    pub interval: String,
    /// The candle's opening time.
    pub ts: i64,
    /// When it would close.
    pub close: i64,
    /// The wall clock then.
    pub now: i64,
}

/// `fee_schedule`: the venue's taker fee now sizes orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeeSchedule {
    pub fee_bps: Decimal,
    pub was: Decimal,
    pub changed: bool,
}

/// `bars_missing`: the scan at `close` ran without these symbols' bars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarsMissing {
    pub symbols: Vec<String>,
    pub close: i64,
    pub at: i64,
}

/// `stale_data` / `data_fresh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataState {
    pub symbols: Vec<String>,
    pub at: i64,
}

/// `order_cancelled` (engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: u64,
    pub symbol: String,
    pub reason: CancelReason,
}

/// `order_expired` (engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderExpired {
    pub order_id: u64,
    pub symbol: String,
}

/// `halted`: the risk manager latched a halt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Halted {
    #[serde(flatten)]
    pub reason: HaltReason,
    pub message: String,
}

/// `order_sent` to the venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSent {
    pub client_order_id: String,
    pub venue_order_id: String,
}

/// `order_send_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSendFailed {
    pub client_order_id: String,
    pub error: String,
    pub ambiguous: bool,
}

/// `order_abandoned`: too old to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderAbandoned {
    pub client_order_id: String,
    pub age_secs: i64,
}

/// A refusal as the log keeps it: its kind (the risk manager's name for it)
/// and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl RefusalRecord {
    pub fn of(r: &trading_core::risk::Refusal) -> RefusalRecord {
        #[derive(Deserialize)]
        struct Tag {
            kind: String,
        }
        // the risk manager's own serde name of the variant
        let kind = serde_json::to_string(r)
            .ok()
            .and_then(|s| serde_json::from_str::<Tag>(&s).ok())
            .map_or_else(|| "unknown".to_string(), |t| t.kind);
        RefusalRecord {
            kind,
            message: Some(r.to_string()),
        }
    }
}

/// `counterfactual`: an entry the risk manager refused, at its decision price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedEntry {
    pub symbol: String,
    pub time: i64,
    pub price: Decimal,
    pub qty: Decimal,
    pub refusal: RefusalRecord,
    #[serde(default)]
    pub stop_loss: Option<Decimal>,
    #[serde(default)]
    pub take_profit: Option<Decimal>,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub intent: Option<trading_core::Intent>,
    #[serde(default)]
    pub confidence: Option<Decimal>,
    /// The row of the `counterfactuals` table that follows it (None before it was kept).
    #[serde(default)]
    pub shadow_id: Option<i64>,
}

impl From<&trading_core::risk::Counterfactual> for RefusedEntry {
    fn from(c: &trading_core::risk::Counterfactual) -> Self {
        RefusedEntry {
            symbol: c.symbol.clone(),
            time: c.time,
            price: c.price,
            qty: c.qty,
            refusal: RefusalRecord::of(&c.refusal),
            stop_loss: c.stop_loss,
            take_profit: c.take_profit,
            tag: c.tag.clone(),
            intent: Some(c.intent),
            confidence: c.confidence,
            shadow_id: None,
        }
    }
}

/// `counterfactual_closed`: a refused entry reached its would-be exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowClosed {
    pub shadow_id: i64,
    pub refusal_kind: String,
    pub exit: trading_core::shadow::ShadowExit,
}

/// `risk_decision`: one signal and what the risk manager made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskDecision {
    pub scan: i64,
    pub signal: Signal,
    /// `approved`, `modify` or `refused`.
    pub decision: String,
    pub reason: Option<String>,
}

/// `module_error`: a strategy call failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleErrorEvent {
    pub version: i64,
    pub error: String,
    pub failures: u32,
}

/// `orchestrator_run`: a review ended (written by `host orchestrate` too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrchestratorRun {
    pub run_id: String,
    pub outcome: String,
    pub decision: String,
}

/// `shadow_started`: a candidate that passed its checks runs beside the
/// incumbent on live bars (written when a cycle stages it, and again when
/// the running host picks it up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowStarted {
    pub shadow_id: i64,
    pub origin: String,
    /// The cycle that staged it (None when the host picked it up).
    #[serde(default)]
    pub run_id: Option<String>,
    /// How long it shadows (None when the host picked it up: see `until`).
    #[serde(default)]
    pub days: Option<f64>,
    /// When its shadow ends (clock seconds; None when only staged).
    #[serde(default)]
    pub until: Option<i64>,
    /// Written by the running host as it started the shadow.
    #[serde(default)]
    pub picked_up: bool,
}

/// `shadow_promoted`: the shadow kept up and became the active version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowPromoted {
    pub shadow_id: i64,
    pub version: i64,
    pub detail: String,
}

/// `shadow_refused`: the shadow fell short, or could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRefused {
    pub shadow_id: i64,
    pub detail: String,
}

/// How a deployed version has done since its deploy (`auto_rollback`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    pub days: f64,
    /// Trades closed since the deploy.
    pub trades: u64,
    pub return_pct: f64,
    pub max_drawdown_pct: f64,
}

/// What the backtest (and shadow) promised for a deployed version.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Promise {
    /// Backtest return per day, percent.
    pub return_pct_per_day: f64,
    pub max_drawdown_pct: f64,
}

/// Why a version is rolled back (percentage points).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RollbackCause {
    TrailsBacktest {
        expected_pct: f64,
        live_pct: f64,
        allowed_pct: f64,
    },
    DeeperDrawdown {
        expected_pct: f64,
        live_pct: f64,
        allowed_pct: f64,
    },
}

/// `auto_rollback`: a deployed version trailed what it promised by more
/// than the tolerance, so the version before it is restored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoRollback {
    pub version: i64,
    pub reason: RollbackCause,
    pub live: LiveRecord,
    pub expected: Promise,
    /// The sentence a person reads.
    pub message: String,
}

/// `regime_change`: the market-analysis module labels a symbol's regime
/// differently from its last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeChange {
    /// None the first time a regime is seen.
    pub from: Option<String>,
    pub to: String,
}

/// A configuration file the host reads at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigFile {
    Settings,
    RiskLimits,
}

/// `config_change`: a configuration file differs from the last run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub file: ConfigFile,
    /// sha256 of the effective configuration (JSON) at the last run.
    pub previous: String,
    pub current: String,
    /// The top-level keys whose values differ (best effort; empty when unknown).
    #[serde(default)]
    pub changed: Vec<String>,
}

/// `pause_symbol` / `resume_symbol`: no new entries on the symbol (exits still run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolToggle {
    pub by: String,
    /// Whether the state changed (false: it was paused/resumed already).
    pub changed: bool,
}

/// `force_exit`: a person closed a position at market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForceExit {
    pub by: String,
    pub qty: Decimal,
    pub order_id: u64,
}

/// `heartbeat`: the host is alive (every `[safety] heartbeat_minutes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub scans: i64,
    pub equity: Decimal,
    pub positions: usize,
    pub open_orders: usize,
    pub paused_symbols: Vec<String>,
    pub strategy_version: Option<i64>,
}

/// A venue fill the ledger did not take: no host order made it (a manual
/// trade on the same account), or the ledger refused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalFill {
    pub venue_fill_id: String,
    pub symbol: String,
    pub side: OrderSide,
    pub qty: Decimal,
    pub price: Decimal,
    pub reason: String,
}

/// What the live account changed to make the ledger equal the venue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrueUp {
    /// Held assets the venue had less of: (asset, ledger, venue), sold off the ledger.
    pub assets: Vec<(String, Decimal, Decimal)>,
    /// Quote cash (ledger, venue) before the adjustment, when it differed.
    pub cash: Option<(Decimal, Decimal)>,
    /// Held assets the venue has more of (not the host's): reported only.
    pub outside: Vec<(String, Decimal, Decimal)>,
    #[serde(skip)]
    pub events: Vec<trading_core::EngineEvent>,
}

/// What the startup reconciliation with the venue did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VenueReconciliation {
    /// Written-ahead orders the venue knew: adopted.
    pub adopted: Vec<String>,
    /// Written-ahead orders the venue never saw, sent now.
    pub resent: Vec<String>,
    /// Written-ahead orders the venue never saw, too old to send.
    pub abandoned: Vec<String>,
    /// Venue fills booked now (made while the host was down or before it wrote them).
    pub fills_booked: usize,
    /// Stop-loss / take-profit orders the venue no longer had, placed again.
    pub exits_replaced: Vec<String>,
    /// Ledger vs venue balances after booking (asset, ledger, venue), when they differ.
    pub balance_mismatches: Vec<(String, Decimal, Decimal)>,
    /// Venue fills that were not the host's (or the ledger refused).
    pub external_fills: Vec<ExternalFill>,
    /// What was booked to make the ledger equal the venue, when it differed.
    pub true_up: Option<TrueUp>,
}
