//! Pure trading logic with no I/O that never reads a clock (time is always
//! passed in as Unix seconds; `clock` holds the one seam the shell uses): the market view, the exact-money portfolio ledger, fill
//! model, risk manager, simulated venue, truth metrics, the karma scorecard,
//! the counterfactuals of refused entries (`shadow`) and CSV/walk-forward
//! helpers. Backtests, paper and live trading all use this one copy.

pub mod clock;
pub mod csv;
pub mod engine;
pub mod fill;
pub mod karma;
pub mod market;
pub mod money;
pub mod portfolio;
pub mod report;
pub mod risk;
pub mod series;
pub mod shadow;
pub mod truth;
pub mod types;

pub use clock::{Clock, ManualClock, WallClock};
pub use engine::{CancelReason, Engine, EngineConfig, EngineError, EngineEvent, FillRecord, PendingOrder};
pub use fill::{Bar, FillConfig};
pub use market::{roll_up, MarketData, MarketView, Quote, SymbolFacts};
pub use portfolio::{
    utc_day, CloseReason, ClosedTrade, DailyStats, Fill, FillKind, LedgerError, OrderSide, Portfolio, Position,
};
pub use risk::{
    Clip, ClipReason, Counterfactual, Decision, HaltReason, ModifyRequest, OrderRequest, PortfolioState, Refusal,
    RiskConfig, RiskConfigError, RiskManager,
};
pub use series::{error_chain, format_ts, name_parts, Series};
pub use truth::{Counters, EquityPoint, TruthInput, TruthReport};
pub use types::*;
