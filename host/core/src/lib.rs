//! Pure trading logic with no I/O and no clock: the market view, the
//! portfolio ledger, fill model, risk manager, simulated venue, truth metrics
//! and CSV/walk-forward helpers. Backtests, paper and live trading all use
//! this one copy.

pub mod csv;
pub mod engine;
pub mod fill;
pub mod market;
pub mod money;
pub mod portfolio;
pub mod risk;
pub mod truth;
pub mod types;

pub use market::{MarketData, MarketView, Quote, SymbolFacts};
pub use portfolio::{CloseReason, ClosedTrade, DailyStats, Fill, FillKind, OrderSide, Portfolio, Position};
pub use types::*;
