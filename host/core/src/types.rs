//! Plain data types of the trading domain, mirroring the WIT contract's.

use serde::{Deserialize, Serialize};

/// One OHLCV candle; `ts` is its open time (Unix seconds, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Interval {
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    pub const ALL: [Interval; 3] = [Interval::M5, Interval::H1, Interval::D1];

    pub fn secs(self) -> i64 {
        match self {
            Interval::M5 => 300,
            Interval::H1 => 3_600,
            Interval::D1 => 86_400,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Interval::M5 => "5m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }

    pub fn parse(s: &str) -> Option<Interval> {
        Interval::ALL.into_iter().find(|i| i.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Long,
    Short,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Day,
    Swing,
    Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Buy,
    Sell,
    Close,
    Modify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Market,
    Limit,
    Stop,
}

/// A strategy's decision, as returned through the contract (floats as the
/// module produced them; the risk manager turns them into exact orders).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub symbol: String,
    pub action: Action,
    pub size_pct: f64,
    pub order_type: OrderType,
    pub limit_price: Option<f64>,
    pub stop_loss: Option<f64>,
    pub take_profit: Option<f64>,
    pub intent: Intent,
    pub tag: String,
    pub confidence: f64,
    pub reasoning: String,
    pub slippage_tolerance: Option<f64>,
}

impl Signal {
    fn market(symbol: &str, action: Action, size_pct: f64, intent: Intent) -> Signal {
        Signal {
            symbol: symbol.to_string(),
            action,
            size_pct,
            order_type: OrderType::Market,
            limit_price: None,
            stop_loss: None,
            take_profit: None,
            intent,
            tag: String::new(),
            confidence: 1.0,
            reasoning: String::new(),
            slippage_tolerance: None,
        }
    }

    /// A market buy of `size_pct` percent of portfolio value.
    pub fn buy(symbol: &str, size_pct: f64, intent: Intent) -> Signal {
        Signal::market(symbol, Action::Buy, size_pct, intent)
    }

    /// A market close of the whole position.
    pub fn close(symbol: &str) -> Signal {
        Signal::market(symbol, Action::Close, 100.0, Intent::Day)
    }
}

/// The user's hard limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskLimitsView {
    pub max_trade_pct: f64,
    pub default_trade_pct: f64,
    pub max_positions: u32,
    pub max_daily_loss_pct: f64,
    pub max_drawdown_pct: f64,
}
