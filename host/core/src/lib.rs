//! Pure trading logic with no I/O and no clock: the market view, and (in the
//! modules below) the portfolio ledger, fill model, risk manager and truth
//! metrics. Backtests, paper and live trading all use this one copy.

pub mod market;
pub mod types;

pub use market::{MarketData, MarketView, Quote, SymbolFacts};
pub use types::*;
