//! Builders for native unit tests of strategies: an [`Init`], a [`Portfolio`],
//! open positions and candles with sensible defaults.

use crate::{Candle, Init, Intent, OpenPosition, Params, Portfolio, RiskLimits, Side};

/// Generous risk limits: 10% max trade, 5% default, 10 positions.
pub fn limits() -> RiskLimits {
    RiskLimits {
        max_trade_pct: 10.0,
        default_trade_pct: 5.0,
        max_positions: 10,
        max_daily_loss_pct: 5.0,
        max_drawdown_pct: 20.0,
    }
}

/// What `initialize` would receive for `symbols` and `params`, with [`limits`].
pub fn init(symbols: &[&str], params: &[(&str, &str)]) -> Init {
    Init {
        limits: limits(),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        params: Params::new(params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
    }
}

/// An all-cash portfolio.
pub fn portfolio(cash: f64) -> Portfolio {
    Portfolio {
        cash,
        total_value: cash,
        positions: Vec::new(),
        daily_pnl: 0.0,
        total_pnl: 0.0,
        fees_paid: 0.0,
        closed_trade_count: 0,
    }
}

/// A long swing position of `qty` bought at `entry`, marked at `entry`.
pub fn long(symbol: &str, qty: f64, entry: f64) -> OpenPosition {
    OpenPosition {
        symbol: symbol.to_string(),
        side: Side::Long,
        qty,
        avg_entry: entry,
        current_price: entry,
        unrealized_pnl: 0.0,
        unrealized_pnl_pct: 0.0,
        intent: Intent::Swing,
        stop_loss: None,
        take_profit: None,
        opened_at: 0,
        tag: String::new(),
    }
}

/// `portfolio` holding `positions` (cash unchanged, value includes them).
pub fn holding(cash: f64, positions: Vec<OpenPosition>) -> Portfolio {
    let mut p = portfolio(cash);
    p.total_value += positions.iter().map(|x| x.qty * x.current_price).sum::<f64>();
    p.positions = positions;
    p
}

/// A candle at `ts`.
pub fn candle(ts: i64, open: f64, high: f64, low: f64, close: f64) -> Candle {
    Candle { ts, open, high, low, close, volume: 1.0 }
}
