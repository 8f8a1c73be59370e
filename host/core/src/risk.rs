//! The risk manager: turns a strategy's float signal into an exact, sized
//! order or a reasoned refusal. Entries (Buy) are sized by `size_pct` of
//! portfolio value (0 means `default_trade_pct`), clipped to `max_trade_pct`
//! and to free cash, and refused while a halt (drawdown, daily loss or loss
//! streak at or beyond its limit) is latched until [`RiskManager::resume`].
//! Exits (Sell, Close) and Modify are always allowed except after
//! [`RiskManager::kill`], which refuses everything. Spot only: selling what
//! is not held is refused, never turned into a short.

use crate::fill::{affordable_qty, size_qty};
use crate::money::{self, NumError};
use crate::portfolio::{CloseReason, OrderSide, Portfolio};
use crate::types::{Action, Intent, OrderType, RiskLimitsView, Signal};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

fn default_deviation() -> Decimal {
    Decimal::from(50)
}

/// The user's hard limits. Percentages are in percent (10 = 10%).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskConfig {
    /// Largest entry, as a percent of portfolio value at decision time.
    pub max_trade_pct: Decimal,
    /// Entry size when a signal says 0.
    pub default_trade_pct: Decimal,
    pub max_open_positions: u32,
    /// Halt entries when today's loss reaches this percent of the day's start equity.
    pub max_daily_loss_pct: Decimal,
    /// Halt entries when equity is this percent below its peak.
    pub max_drawdown_pct: Decimal,
    /// Halt entries after this many losing trades in a row.
    pub max_consecutive_losses: u32,
    /// Symbols that may be entered; `None` allows any the market knows.
    pub allowed_symbols: Option<Vec<String>>,
    /// A limit or stop price further than this percent from the market is refused.
    #[serde(default = "default_deviation")]
    pub max_price_deviation_pct: Decimal,
    /// Smallest entry notional (quote currency); smaller ones are refused.
    #[serde(default)]
    pub min_order_notional: Decimal,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            max_trade_pct: Decimal::TEN,
            default_trade_pct: Decimal::from(5),
            max_open_positions: 5,
            max_daily_loss_pct: Decimal::from(5),
            max_drawdown_pct: Decimal::from(20),
            max_consecutive_losses: 5,
            allowed_symbols: None,
            max_price_deviation_pct: default_deviation(),
            min_order_notional: Decimal::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RiskConfigError {
    #[error("{field} must be above 0 and at most 100, got {value}")]
    PercentOutOfRange { field: &'static str, value: Decimal },
    #[error("default_trade_pct {default} exceeds max_trade_pct {max}")]
    DefaultAboveMax { default: Decimal, max: Decimal },
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("allowed_symbols is empty: nothing could be traded")]
    EmptyAllowList,
    #[error("allowed_symbols contains an empty name")]
    EmptySymbol,
    #[error("min_order_notional must not be negative, got {0}")]
    NegativeMinNotional(Decimal),
}

impl RiskConfig {
    /// Refuses inconsistent limits: percentages outside (0, 100], a default
    /// above the maximum, zero counts, an empty allow-list or a negative
    /// minimum notional. (`max_price_deviation_pct` may exceed 100.)
    pub fn validate(&self) -> Result<(), RiskConfigError> {
        let pcts = [
            ("max_trade_pct", self.max_trade_pct),
            ("default_trade_pct", self.default_trade_pct),
            ("max_daily_loss_pct", self.max_daily_loss_pct),
            ("max_drawdown_pct", self.max_drawdown_pct),
        ];
        for (field, value) in pcts {
            if value <= Decimal::ZERO || value > Decimal::ONE_HUNDRED {
                return Err(RiskConfigError::PercentOutOfRange { field, value });
            }
        }
        if self.max_price_deviation_pct <= Decimal::ZERO {
            return Err(RiskConfigError::PercentOutOfRange {
                field: "max_price_deviation_pct",
                value: self.max_price_deviation_pct,
            });
        }
        if self.default_trade_pct > self.max_trade_pct {
            return Err(RiskConfigError::DefaultAboveMax { default: self.default_trade_pct, max: self.max_trade_pct });
        }
        if self.max_open_positions == 0 {
            return Err(RiskConfigError::Zero("max_open_positions"));
        }
        if self.max_consecutive_losses == 0 {
            return Err(RiskConfigError::Zero("max_consecutive_losses"));
        }
        match &self.allowed_symbols {
            Some(list) if list.is_empty() => return Err(RiskConfigError::EmptyAllowList),
            Some(list) if list.iter().any(|s| s.is_empty()) => return Err(RiskConfigError::EmptySymbol),
            _ => {}
        }
        if self.min_order_notional < Decimal::ZERO {
            return Err(RiskConfigError::NegativeMinNotional(self.min_order_notional));
        }
        Ok(())
    }

    /// The read-only view handed to strategy modules.
    pub fn view(&self) -> RiskLimitsView {
        RiskLimitsView {
            max_trade_pct: money::to_f64(self.max_trade_pct),
            default_trade_pct: money::to_f64(self.default_trade_pct),
            max_positions: self.max_open_positions,
            max_daily_loss_pct: money::to_f64(self.max_daily_loss_pct),
            max_drawdown_pct: money::to_f64(self.max_drawdown_pct),
        }
    }

    fn allows(&self, symbol: &str) -> bool {
        self.allowed_symbols.as_ref().is_none_or(|l| l.iter().any(|s| s == symbol))
    }
}

/// Why entries are halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HaltReason {
    Drawdown {
        pct: Decimal,
        limit: Decimal,
    },
    DailyLoss {
        pct: Decimal,
        limit: Decimal,
    },
    ConsecutiveLosses {
        count: u32,
        limit: u32,
    },
    /// A person halted entries (CLI, API, Telegram).
    Manual,
}

impl fmt::Display for HaltReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltReason::Drawdown { pct, limit } => {
                write!(f, "drawdown {}% reached the {limit}% limit", pct.round_dp(2))
            }
            HaltReason::DailyLoss { pct, limit } => {
                write!(f, "daily loss {}% reached the {limit}% limit", pct.round_dp(2))
            }
            HaltReason::ConsecutiveLosses { count, limit } => {
                write!(f, "{count} losing trades in a row reached the limit of {limit}")
            }
            HaltReason::Manual => write!(f, "halted by hand"),
        }
    }
}

/// Why a signal was not turned into an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Refusal {
    #[error("kill switch engaged: nothing is traded")]
    Killed,
    #[error("entries halted: {0}")]
    Halted(HaltReason),
    #[error("{field} is not a finite number")]
    NonFinite { field: &'static str },
    #[error("{field} is out of range")]
    OutOfRange { field: &'static str },
    #[error("size_pct is negative")]
    NegativeSize,
    #[error("no market price for {0}")]
    UnknownSymbol(String),
    #[error("the newest bar of {0} is missing or stale: no entry on an old price")]
    StaleData(String),
    #[error("{0} is paused: no new entry until it is resumed")]
    SymbolPaused(String),
    #[error("{0} is not in the allowed symbols")]
    NotAllowed(String),
    #[error("market price must be positive")]
    BadMarketPrice,
    #[error("a {0:?} order needs limit_price (the limit or stop trigger)")]
    MissingOrderPrice(OrderType),
    #[error("{field} must be positive")]
    NonPositivePrice { field: &'static str },
    #[error("{field} {price} is more than {max_pct}% away from the market price {market}")]
    AbsurdPrice { field: &'static str, price: Decimal, market: Decimal, max_pct: Decimal },
    #[error("invalid exits: {0}")]
    InvalidExits(&'static str),
    #[error("no open position in {0}")]
    NoPosition(String),
    #[error("selling {0} without a position would be a short, which spot trading does not support")]
    ShortingNotSupported(String),
    #[error("a {side:?} order for {symbol} is already pending")]
    OrderPending { symbol: String, side: OrderSide },
    #[error("{open} positions open or pending, the maximum is {max}")]
    MaxPositions { open: u32, max: u32 },
    #[error("insufficient cash: {available} free")]
    InsufficientCash { available: Decimal },
    #[error("order too small: qty {qty}, notional {notional}")]
    TooSmall { qty: Decimal, notional: Decimal },
    #[error("modify gives neither stop_loss nor take_profit")]
    NothingToModify,
}

/// What reduced an order's quantity below the requested one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipReason {
    /// The requested percent exceeded `max_trade_pct`.
    MaxTradePct,
    /// Free cash could not pay for it (fee included).
    Cash,
    /// A sell asked for more than the position holds.
    Position,
}

/// The quantity asked for before clipping, and the binding limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clip {
    pub requested_qty: Decimal,
    pub reason: ClipReason,
}

/// An approved, exactly sized order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub symbol: String,
    /// The signal's action (Buy, Sell or Close).
    pub action: Action,
    pub side: OrderSide,
    pub order_type: OrderType,
    /// Quantity, rounded down to 8 places. For Close it is the position at
    /// decision time; the venue closes whatever is held when it fills.
    pub qty: Decimal,
    /// Limit price (limit orders) or trigger (stop orders).
    pub trigger_price: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub intent: Intent,
    pub tag: String,
    pub decided_at: i64,
    /// The market price the order was sized at.
    pub decision_price: Decimal,
    /// Reason recorded on the closed trade when a sell fills.
    pub close_reason: CloseReason,
    pub clipped_from: Option<Clip>,
}

/// New exits for an open position (`None` keeps the current one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifyRequest {
    pub symbol: String,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
}

/// The risk manager's answer to one signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "detail", rename_all = "snake_case")]
pub enum Decision {
    Approved(OrderRequest),
    Modify(ModifyRequest),
    Refused(Refusal),
}

impl Decision {
    pub fn is_approved(&self) -> bool {
        matches!(self, Decision::Approved(_) | Decision::Modify(_))
    }
}

/// What a refused entry would have done, for the caller's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counterfactual {
    pub symbol: String,
    pub time: i64,
    pub price: Decimal,
    /// Quantity the entry would have had (requested size, clipped to `max_trade_pct`).
    pub qty: Decimal,
    pub refusal: Refusal,
    /// The signal's exits, tag, intent and confidence (to follow it, and score it).
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub tag: String,
    pub intent: Intent,
    /// None when the signal's confidence is not a finite number.
    pub confidence: Option<Decimal>,
}

/// Orders queued but not yet filled, as the risk manager must count them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Cash reserved by each pending buy (qty × sizing price × (1 + fee rate)).
    pub buys: BTreeMap<String, Decimal>,
    /// Quantity of each pending sell.
    pub sells: BTreeMap<String, Decimal>,
}

impl Pending {
    pub fn reserved_cash(&self) -> Decimal {
        self.buys.values().fold(Decimal::ZERO, |a, v| a.saturating_add(*v))
    }
}

static NO_PENDING: Pending = Pending { buys: BTreeMap::new(), sells: BTreeMap::new() };

/// The account as the risk manager sees it: the ledger (marked at decision
/// prices), the orders still pending, and the venue's fee rate.
#[derive(Debug, Clone, Copy)]
pub struct PortfolioState<'a> {
    pub portfolio: &'a Portfolio,
    pub pending: &'a Pending,
    pub fee_rate: Decimal,
}

impl<'a> PortfolioState<'a> {
    /// A state with no pending orders and no fees.
    pub fn new(portfolio: &'a Portfolio) -> Self {
        PortfolioState { portfolio, pending: &NO_PENDING, fee_rate: Decimal::ZERO }
    }
}

/// Levels recorded at `resume()`: halts are then measured from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Baseline {
    trade_count: usize,
    day: Option<i64>,
    equity: Decimal,
    high_water: Decimal,
    peak_at_resume: Decimal,
}

/// Applies [`RiskConfig`] to signals and keeps the halt and kill states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskManager {
    config: RiskConfig,
    halt: Option<HaltReason>,
    killed: bool,
    baseline: Option<Baseline>,
    #[serde(skip)]
    counterfactuals: Vec<Counterfactual>,
}

fn dec(field: &'static str, x: f64) -> Result<Decimal, Refusal> {
    money::to_decimal(x).map_err(|e| match e {
        NumError::NonFinite => Refusal::NonFinite { field },
        NumError::OutOfRange | NumError::Unrepresentable => Refusal::OutOfRange { field },
    })
}

fn opt_price(field: &'static str, x: Option<f64>) -> Result<Option<Decimal>, Refusal> {
    match x {
        None => Ok(None),
        Some(x) => {
            let d = money::round_price(dec(field, x)?);
            if d <= Decimal::ZERO {
                return Err(Refusal::NonPositivePrice { field });
            }
            Ok(Some(d))
        }
    }
}

/// A signal's numbers, converted and checked.
struct Parsed {
    size: Decimal,
    price: Decimal,
    trigger: Option<Decimal>,
    stop_loss: Option<Decimal>,
    take_profit: Option<Decimal>,
}

impl RiskManager {
    /// A manager with validated limits, not halted, not killed.
    pub fn new(config: RiskConfig) -> Result<Self, RiskConfigError> {
        config.validate()?;
        Ok(RiskManager { config, halt: None, killed: false, baseline: None, counterfactuals: Vec::new() })
    }

    pub fn config(&self) -> &RiskConfig {
        &self.config
    }

    /// Replaces the limits (validated); halt, kill and baseline are kept.
    pub fn set_config(&mut self, config: RiskConfig) -> Result<(), RiskConfigError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The latched halt, if entries are halted.
    pub fn halt(&self) -> Option<HaltReason> {
        self.halt
    }

    pub fn is_killed(&self) -> bool {
        self.killed
    }

    /// True when a new entry would be refused by a halt or the kill switch.
    pub fn entries_blocked(&self) -> bool {
        self.killed || self.halt.is_some()
    }

    /// Looks at the account and latches a halt if a limit is reached; returns
    /// the halt only when it is newly latched.
    pub fn observe(&mut self, portfolio: &Portfolio) -> Option<HaltReason> {
        let equity = portfolio.equity();
        if let Some(b) = &mut self.baseline {
            b.high_water = b.high_water.max(equity);
        }
        if self.halt.is_some() {
            return None;
        }
        self.halt = self.halt_condition(portfolio, equity);
        self.halt
    }

    /// Clears a halt. Limits are then measured from this moment: drawdown from
    /// the equity now (or any later high), today's loss from the equity now,
    /// and the loss streak counts only trades closed after it.
    pub fn resume(&mut self, portfolio: &Portfolio) {
        let equity = portfolio.equity();
        self.halt = None;
        self.baseline = Some(Baseline {
            trade_count: portfolio.closed_trades().len(),
            day: portfolio.today().map(|(d, _)| d),
            equity,
            high_water: equity,
            peak_at_resume: portfolio.peak_equity(),
        });
    }

    /// Engages the kill switch: every later signal is refused. Returns the
    /// market orders that close every open position, which the caller must
    /// execute.
    pub fn kill(&mut self, portfolio: &Portfolio, now: i64) -> Vec<OrderRequest> {
        self.killed = true;
        portfolio
            .positions()
            .values()
            .map(|p| OrderRequest {
                symbol: p.symbol.clone(),
                action: Action::Close,
                side: OrderSide::Sell,
                order_type: OrderType::Market,
                qty: p.qty,
                trigger_price: None,
                stop_loss: None,
                take_profit: None,
                intent: p.intent,
                tag: p.tag.clone(),
                decided_at: now,
                decision_price: portfolio.mark_price(&p.symbol).unwrap_or(p.avg_entry),
                close_reason: CloseReason::Kill,
                clipped_from: None,
            })
            .collect()
    }

    /// Latches a manual halt (kept until [`RiskManager::resume`]); returns
    /// false when entries were already halted.
    pub fn halt_manually(&mut self) -> bool {
        if self.halt.is_some() {
            return false;
        }
        self.halt = Some(HaltReason::Manual);
        true
    }

    /// Disengages the kill switch (halts are untouched).
    pub fn clear_kill(&mut self) {
        self.killed = false;
    }

    /// Counterfactual records of refused entries since the last call.
    pub fn take_counterfactuals(&mut self) -> Vec<Counterfactual> {
        std::mem::take(&mut self.counterfactuals)
    }

    /// Decides one signal at `now`, with `price_now` the symbol's market price.
    /// The portfolio should already be marked at current prices.
    pub fn evaluate(&mut self, signal: &Signal, state: &PortfolioState, price_now: f64, now: i64) -> Decision {
        let parsed = match self.parse(signal, price_now) {
            Ok(p) => p,
            Err(_) if self.killed => return Decision::Refused(Refusal::Killed),
            Err(r) => return Decision::Refused(r),
        };
        let decision = match signal.action {
            _ if self.killed => Err(Refusal::Killed),
            Action::Buy => self.entry(signal, &parsed, state, now),
            Action::Sell | Action::Close => self.exit(signal, &parsed, state, now),
            Action::Modify => self.modify(signal, &parsed, state),
        };
        match decision {
            Ok(d) => d,
            Err(refusal) => {
                if signal.action == Action::Buy {
                    let max = self.config.max_trade_pct;
                    let pct = if parsed.size.is_zero() { self.config.default_trade_pct } else { parsed.size.min(max) };
                    let sizing = parsed.trigger.map_or(parsed.price, |t| t.max(parsed.price));
                    self.counterfactuals.push(Counterfactual {
                        symbol: signal.symbol.clone(),
                        time: now,
                        price: parsed.price,
                        qty: size_qty(state.portfolio.equity(), pct, sizing),
                        refusal: refusal.clone(),
                        stop_loss: parsed.stop_loss,
                        take_profit: parsed.take_profit,
                        tag: signal.tag.clone(),
                        intent: signal.intent,
                        confidence: money::to_decimal(signal.confidence).ok(),
                    });
                }
                Decision::Refused(refusal)
            }
        }
    }

    fn parse(&self, s: &Signal, price_now: f64) -> Result<Parsed, Refusal> {
        let size = dec("size_pct", s.size_pct)?;
        if size < Decimal::ZERO {
            return Err(Refusal::NegativeSize);
        }
        let price = money::round_price(dec("price", price_now)?);
        if price <= Decimal::ZERO {
            return Err(Refusal::BadMarketPrice);
        }
        let trigger = match s.order_type {
            OrderType::Market => None,
            t => Some(opt_price("limit_price", s.limit_price)?.ok_or(Refusal::MissingOrderPrice(t))?),
        };
        if let Some(t) = trigger {
            let away = money::pct((t - price).abs(), price).unwrap_or(Decimal::ZERO);
            if away > self.config.max_price_deviation_pct {
                return Err(Refusal::AbsurdPrice {
                    field: "limit_price",
                    price: t,
                    market: price,
                    max_pct: self.config.max_price_deviation_pct,
                });
            }
        }
        Ok(Parsed {
            size,
            price,
            trigger,
            stop_loss: opt_price("stop_loss", s.stop_loss)?,
            take_profit: opt_price("take_profit", s.take_profit)?,
        })
    }

    fn entry(&mut self, s: &Signal, p: &Parsed, state: &PortfolioState, now: i64) -> Result<Decision, Refusal> {
        let c = &self.config;
        if !c.allows(&s.symbol) {
            return Err(Refusal::NotAllowed(s.symbol.clone()));
        }
        let reference = p.trigger.unwrap_or(p.price);
        if p.stop_loss.is_some_and(|sl| sl >= reference) {
            return Err(Refusal::InvalidExits("stop_loss must be below the entry price"));
        }
        if p.take_profit.is_some_and(|tp| tp <= reference) {
            return Err(Refusal::InvalidExits("take_profit must be above the entry price"));
        }
        let portfolio = state.portfolio;
        if self.halt.is_none() {
            self.halt = self.halt_condition(portfolio, portfolio.equity());
        }
        if let Some(h) = self.halt {
            return Err(Refusal::Halted(h));
        }
        let c = &self.config;
        if state.pending.buys.contains_key(&s.symbol) {
            return Err(Refusal::OrderPending { symbol: s.symbol.clone(), side: OrderSide::Buy });
        }
        if portfolio.position(&s.symbol).is_none() {
            let pending_new = state.pending.buys.keys().filter(|k| portfolio.position(k).is_none()).count();
            let open = u32::try_from(portfolio.positions().len() + pending_new).unwrap_or(u32::MAX);
            if open >= c.max_open_positions {
                return Err(Refusal::MaxPositions { open, max: c.max_open_positions });
            }
        }
        let requested_pct = if p.size.is_zero() { c.default_trade_pct } else { p.size };
        // size at the worse of the market and the order price, so neither exceeds the budget
        let sizing = reference.max(p.price);
        let equity = portfolio.equity();
        let requested = size_qty(equity, requested_pct, sizing);
        let mut qty = size_qty(equity, requested_pct.min(c.max_trade_pct), sizing);
        let mut clip = (qty < requested).then_some(ClipReason::MaxTradePct);
        let free = portfolio.cash().saturating_sub(state.pending.reserved_cash()).max(Decimal::ZERO);
        let affordable = affordable_qty(free, sizing, state.fee_rate);
        if affordable < qty {
            qty = affordable;
            clip = Some(ClipReason::Cash);
        }
        let notional = qty.saturating_mul(sizing);
        if qty.is_zero() && clip == Some(ClipReason::Cash) {
            return Err(Refusal::InsufficientCash { available: free });
        }
        if qty.is_zero() || notional < c.min_order_notional {
            return Err(Refusal::TooSmall { qty, notional });
        }
        Ok(Decision::Approved(OrderRequest {
            symbol: s.symbol.clone(),
            action: Action::Buy,
            side: OrderSide::Buy,
            order_type: s.order_type,
            qty,
            trigger_price: p.trigger,
            stop_loss: p.stop_loss,
            take_profit: p.take_profit,
            intent: s.intent,
            tag: s.tag.clone(),
            decided_at: now,
            decision_price: p.price,
            close_reason: CloseReason::Signal,
            clipped_from: clip.map(|reason| Clip { requested_qty: requested, reason }),
        }))
    }

    fn exit(&self, s: &Signal, p: &Parsed, state: &PortfolioState, now: i64) -> Result<Decision, Refusal> {
        let Some(pos) = state.portfolio.position(&s.symbol) else {
            return Err(if s.action == Action::Close {
                Refusal::NoPosition(s.symbol.clone())
            } else {
                Refusal::ShortingNotSupported(s.symbol.clone())
            });
        };
        if state.pending.sells.contains_key(&s.symbol) {
            return Err(Refusal::OrderPending { symbol: s.symbol.clone(), side: OrderSide::Sell });
        }
        let (qty, clipped_from) = if s.action == Action::Close {
            (pos.qty, None)
        } else {
            let pct = if p.size.is_zero() { self.config.default_trade_pct } else { p.size };
            let requested = size_qty(state.portfolio.equity(), pct, p.price);
            if requested > pos.qty {
                (pos.qty, Some(Clip { requested_qty: requested, reason: ClipReason::Position }))
            } else {
                (requested, None)
            }
        };
        if qty.is_zero() {
            return Err(Refusal::TooSmall { qty, notional: Decimal::ZERO });
        }
        Ok(Decision::Approved(OrderRequest {
            symbol: s.symbol.clone(),
            action: s.action,
            side: OrderSide::Sell,
            order_type: s.order_type,
            qty,
            trigger_price: p.trigger,
            stop_loss: None,
            take_profit: None,
            intent: pos.intent,
            tag: s.tag.clone(),
            decided_at: now,
            decision_price: p.price,
            close_reason: CloseReason::Signal,
            clipped_from,
        }))
    }

    fn modify(&self, s: &Signal, p: &Parsed, state: &PortfolioState) -> Result<Decision, Refusal> {
        if state.portfolio.position(&s.symbol).is_none() {
            return Err(Refusal::NoPosition(s.symbol.clone()));
        }
        if p.stop_loss.is_none() && p.take_profit.is_none() {
            return Err(Refusal::NothingToModify);
        }
        if p.stop_loss.is_some_and(|sl| sl >= p.price) {
            return Err(Refusal::InvalidExits("stop_loss must be below the market price"));
        }
        if p.take_profit.is_some_and(|tp| tp <= p.price) {
            return Err(Refusal::InvalidExits("take_profit must be above the market price"));
        }
        Ok(Decision::Modify(ModifyRequest {
            symbol: s.symbol.clone(),
            stop_loss: p.stop_loss,
            take_profit: p.take_profit,
        }))
    }

    /// The first limit `p` (worth `equity`) breaks, if any.
    fn halt_condition(&self, p: &Portfolio, equity: Decimal) -> Option<HaltReason> {
        let c = &self.config;
        let (drawdown, daily, streak) = match &self.baseline {
            None => (loss_pct(p.peak_equity(), equity), p.daily_loss_pct(), p.consecutive_losses()),
            Some(b) => {
                let peak = if p.peak_equity() > b.peak_at_resume {
                    p.peak_equity().max(b.high_water)
                } else {
                    b.high_water.max(equity)
                };
                let today = p.today().map(|(d, _)| d);
                let daily =
                    if today.is_some() && today == b.day { loss_pct(b.equity, equity) } else { p.daily_loss_pct() };
                let since = p.closed_trades().len().saturating_sub(b.trade_count);
                let streak = p.consecutive_losses().min(u32::try_from(since).unwrap_or(u32::MAX));
                (loss_pct(peak, equity), daily, streak)
            }
        };
        if drawdown >= c.max_drawdown_pct {
            return Some(HaltReason::Drawdown { pct: drawdown, limit: c.max_drawdown_pct });
        }
        if daily >= c.max_daily_loss_pct {
            return Some(HaltReason::DailyLoss { pct: daily, limit: c.max_daily_loss_pct });
        }
        if streak >= c.max_consecutive_losses {
            return Some(HaltReason::ConsecutiveLosses { count: streak, limit: c.max_consecutive_losses });
        }
        None
    }
}

/// How far `now` is below `from`, in percent (0 if not below).
fn loss_pct(from: Decimal, now: Decimal) -> Decimal {
    let gap = from.saturating_sub(now);
    if gap <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    money::pct(gap, from).unwrap_or(Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portfolio::{Fill, FillKind};
    use rust_decimal_macros::dec;

    const T0: i64 = 1_700_000_000;

    fn cfg() -> RiskConfig {
        RiskConfig {
            max_trade_pct: dec!(10),
            default_trade_pct: dec!(5),
            max_open_positions: 2,
            max_daily_loss_pct: dec!(5),
            max_drawdown_pct: dec!(20),
            max_consecutive_losses: 3,
            allowed_symbols: None,
            max_price_deviation_pct: dec!(50),
            min_order_notional: dec!(0),
        }
    }

    fn sig(symbol: &str, action: Action, size_pct: f64) -> Signal {
        Signal {
            symbol: symbol.into(),
            action,
            size_pct,
            order_type: OrderType::Market,
            limit_price: None,
            stop_loss: None,
            take_profit: None,
            intent: Intent::Swing,
            tag: "tag".into(),
            confidence: 0.5,
            reasoning: String::new(),
            slippage_tolerance: None,
        }
    }

    fn fill(symbol: &str, qty: Decimal, price: Decimal, buy: bool, t: i64) -> Fill {
        let kind = if buy {
            FillKind::Buy { intent: Intent::Swing, stop_loss: None, take_profit: None, tag: String::new() }
        } else {
            FillKind::Sell { reason: CloseReason::Signal }
        };
        Fill { symbol: symbol.into(), qty, price, fee: dec!(0), time: t, kind }
    }

    fn approved(d: Decision) -> OrderRequest {
        match d {
            Decision::Approved(o) => o,
            other => panic!("expected approval, got {other:?}"),
        }
    }

    fn refused(d: Decision) -> Refusal {
        match d {
            Decision::Refused(r) => r,
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    #[test]
    fn config_validation() {
        assert!(cfg().validate().is_ok());
        assert!(RiskConfig::default().validate().is_ok());
        let bad = |c: RiskConfig| c.validate().unwrap_err();
        assert!(matches!(
            bad(RiskConfig { default_trade_pct: dec!(11), ..cfg() }),
            RiskConfigError::DefaultAboveMax { .. }
        ));
        assert!(matches!(
            bad(RiskConfig { max_trade_pct: dec!(101), ..cfg() }),
            RiskConfigError::PercentOutOfRange { .. }
        ));
        assert!(matches!(
            bad(RiskConfig { max_drawdown_pct: dec!(-1), ..cfg() }),
            RiskConfigError::PercentOutOfRange { .. }
        ));
        assert!(matches!(
            bad(RiskConfig { max_daily_loss_pct: dec!(0), ..cfg() }),
            RiskConfigError::PercentOutOfRange { .. }
        ));
        assert!(matches!(bad(RiskConfig { max_open_positions: 0, ..cfg() }), RiskConfigError::Zero(_)));
        assert!(matches!(bad(RiskConfig { max_consecutive_losses: 0, ..cfg() }), RiskConfigError::Zero(_)));
        assert!(matches!(bad(RiskConfig { allowed_symbols: Some(vec![]), ..cfg() }), RiskConfigError::EmptyAllowList));
        assert!(matches!(
            bad(RiskConfig { allowed_symbols: Some(vec![String::new()]), ..cfg() }),
            RiskConfigError::EmptySymbol
        ));
        assert!(matches!(
            bad(RiskConfig { min_order_notional: dec!(-1), ..cfg() }),
            RiskConfigError::NegativeMinNotional(_)
        ));
        assert!(RiskManager::new(RiskConfig { max_open_positions: 0, ..cfg() }).is_err());
        let v = cfg().view();
        assert_eq!((v.max_trade_pct, v.default_trade_pct, v.max_positions), (10.0, 5.0, 2));
        // config loads from JSON numbers or strings, with defaults for the optional fields
        let json = r#"{"max_trade_pct": 10, "default_trade_pct": "5", "max_open_positions": 2,
            "max_daily_loss_pct": 5, "max_drawdown_pct": 20, "max_consecutive_losses": 3, "allowed_symbols": null}"#;
        let c: RiskConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c, cfg());
    }

    #[test]
    fn entries_are_sized_and_clipped() {
        let p = Portfolio::new(dec!(1000)).unwrap();
        let mut rm = RiskManager::new(cfg()).unwrap();
        let st = PortfolioState::new(&p);
        // size 0 → default 5% of 1000 = 50 at 20 → 2.5
        let o = approved(rm.evaluate(&sig("BTC", Action::Buy, 0.0), &st, 20.0, T0));
        assert_eq!((o.qty, o.side, o.decision_price, o.decided_at), (dec!(2.5), OrderSide::Buy, dec!(20), T0));
        assert_eq!(o.clipped_from, None);
        // 50% is clipped to 10%: 100 / 3 = 33.33333333 (requested 500 / 3 = 166.66666666)
        let o = approved(rm.evaluate(&sig("BTC", Action::Buy, 50.0), &st, 3.0, T0));
        assert_eq!(o.qty, dec!(33.33333333));
        assert_eq!(o.clipped_from, Some(Clip { requested_qty: dec!(166.66666666), reason: ClipReason::MaxTradePct }));
        // cash clip: 40 cash free after a pending buy reserving 960, fee 0.1%
        let pending = Pending { buys: BTreeMap::from([("ETH".to_string(), dec!(960))]), sells: BTreeMap::new() };
        let st2 = PortfolioState { portfolio: &p, pending: &pending, fee_rate: dec!(0.001) };
        let o = approved(rm.evaluate(&sig("BTC", Action::Buy, 10.0), &st2, 10.0, T0));
        // (40 − 1e-8) / 10.01 = 3.99600399... → 3.99600399
        assert_eq!(o.qty, dec!(3.99600399));
        assert_eq!(o.clipped_from.unwrap().reason, ClipReason::Cash);
        let pending = Pending { buys: BTreeMap::from([("ETH".to_string(), dec!(1000))]), sells: BTreeMap::new() };
        let st3 = PortfolioState { portfolio: &p, pending: &pending, fee_rate: dec!(0.001) };
        assert!(matches!(
            refused(rm.evaluate(&sig("BTC", Action::Buy, 10.0), &st3, 10.0, T0)),
            Refusal::InsufficientCash { .. }
        ));
        // a limit buy is sized at the worse of market and limit: max(20, 22) = 22 → 50 / 22
        let mut s = sig("BTC", Action::Buy, 5.0);
        s.order_type = OrderType::Limit;
        s.limit_price = Some(22.0);
        let o = approved(rm.evaluate(&s, &st, 20.0, T0));
        assert_eq!((o.qty, o.trigger_price), (dec!(2.27272727), Some(dec!(22))));
        // too small
        assert!(matches!(
            refused(rm.evaluate(&sig("BTC", Action::Buy, 0.0000001), &st, 1e9, T0)),
            Refusal::TooSmall { .. }
        ));
        let mut rm2 = RiskManager::new(RiskConfig { min_order_notional: dec!(100), ..cfg() }).unwrap();
        assert!(matches!(
            refused(rm2.evaluate(&sig("BTC", Action::Buy, 5.0), &st, 20.0, T0)),
            Refusal::TooSmall { .. }
        ));
    }

    #[test]
    fn bad_signals_are_refused() {
        let p = Portfolio::new(dec!(1000)).unwrap();
        let st = PortfolioState::new(&p);
        let mut rm = RiskManager::new(RiskConfig { allowed_symbols: Some(vec!["BTC".into()]), ..cfg() }).unwrap();
        let r = |rm: &mut RiskManager, s: Signal, px: f64| refused(rm.evaluate(&s, &st, px, T0));
        assert_eq!(r(&mut rm, sig("BTC", Action::Buy, f64::NAN), 10.0), Refusal::NonFinite { field: "size_pct" });
        assert_eq!(r(&mut rm, sig("BTC", Action::Buy, 1e300), 10.0), Refusal::OutOfRange { field: "size_pct" });
        assert_eq!(r(&mut rm, sig("BTC", Action::Buy, -1.0), 10.0), Refusal::NegativeSize);
        assert_eq!(r(&mut rm, sig("BTC", Action::Buy, 1.0), f64::INFINITY), Refusal::NonFinite { field: "price" });
        assert_eq!(r(&mut rm, sig("BTC", Action::Buy, 1.0), 0.0), Refusal::BadMarketPrice);
        assert_eq!(r(&mut rm, sig("ETH", Action::Buy, 1.0), 10.0), Refusal::NotAllowed("ETH".into()));
        let mut s = sig("BTC", Action::Buy, 1.0);
        s.order_type = OrderType::Limit;
        assert_eq!(r(&mut rm, s.clone(), 10.0), Refusal::MissingOrderPrice(OrderType::Limit));
        s.limit_price = Some(-1.0);
        assert_eq!(r(&mut rm, s.clone(), 10.0), Refusal::NonPositivePrice { field: "limit_price" });
        s.limit_price = Some(15.01);
        assert!(matches!(r(&mut rm, s.clone(), 10.0), Refusal::AbsurdPrice { .. }));
        s.limit_price = Some(15.0);
        assert!(rm.evaluate(&s, &st, 10.0, T0).is_approved());
        let mut s = sig("BTC", Action::Buy, 1.0);
        s.stop_loss = Some(10.0);
        assert!(matches!(r(&mut rm, s.clone(), 10.0), Refusal::InvalidExits(_)));
        s.stop_loss = Some(f64::NAN);
        assert_eq!(r(&mut rm, s.clone(), 10.0), Refusal::NonFinite { field: "stop_loss" });
        s.stop_loss = Some(9.0);
        s.take_profit = Some(9.5);
        assert!(matches!(r(&mut rm, s.clone(), 10.0), Refusal::InvalidExits(_)));
        s.take_profit = Some(12.0);
        let o = approved(rm.evaluate(&s, &st, 10.0, T0));
        assert_eq!((o.stop_loss, o.take_profit), (Some(dec!(9)), Some(dec!(12))));
        assert_eq!(r(&mut rm, sig("BTC", Action::Sell, 1.0), 10.0), Refusal::ShortingNotSupported("BTC".into()));
        assert_eq!(r(&mut rm, sig("BTC", Action::Close, 1.0), 10.0), Refusal::NoPosition("BTC".into()));
        assert_eq!(r(&mut rm, sig("BTC", Action::Modify, 1.0), 10.0), Refusal::NoPosition("BTC".into()));
        // every refusal explains itself
        assert_eq!(Refusal::NegativeSize.to_string(), "size_pct is negative");
        assert!(Refusal::Halted(HaltReason::ConsecutiveLosses { count: 3, limit: 3 }).to_string().contains("3 losing"));
    }

    #[test]
    fn exits_sells_and_modify() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&fill("BTC", dec!(4), dec!(10), true, T0)).unwrap();
        let mut rm = RiskManager::new(cfg()).unwrap();
        let st = PortfolioState::new(&p);
        // Sell 2% of value 1000 at 10 = 2 units
        let o = approved(rm.evaluate(&sig("BTC", Action::Sell, 2.0), &st, 10.0, T0));
        assert_eq!((o.qty, o.side, o.close_reason), (dec!(2), OrderSide::Sell, CloseReason::Signal));
        // 50% would be 50 units: clipped to the 4 held
        let o = approved(rm.evaluate(&sig("BTC", Action::Sell, 50.0), &st, 10.0, T0));
        assert_eq!(o.qty, dec!(4));
        assert_eq!(o.clipped_from, Some(Clip { requested_qty: dec!(50), reason: ClipReason::Position }));
        let o = approved(rm.evaluate(&sig("BTC", Action::Close, 0.0), &st, 10.0, T0));
        assert_eq!((o.qty, o.action), (dec!(4), Action::Close));
        let pending = Pending { buys: BTreeMap::new(), sells: BTreeMap::from([("BTC".to_string(), dec!(4))]) };
        let st2 = PortfolioState { pending: &pending, ..st };
        assert!(matches!(
            refused(rm.evaluate(&sig("BTC", Action::Close, 0.0), &st2, 10.0, T0)),
            Refusal::OrderPending { .. }
        ));
        let mut m = sig("BTC", Action::Modify, 0.0);
        assert_eq!(refused(rm.evaluate(&m, &st, 10.0, T0)), Refusal::NothingToModify);
        m.stop_loss = Some(11.0);
        assert!(matches!(refused(rm.evaluate(&m, &st, 10.0, T0)), Refusal::InvalidExits(_)));
        m.stop_loss = Some(9.0);
        assert_eq!(
            rm.evaluate(&m, &st, 10.0, T0),
            Decision::Modify(ModifyRequest { symbol: "BTC".into(), stop_loss: Some(dec!(9)), take_profit: None })
        );
    }

    #[test]
    fn max_positions_counts_pending_entries() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&fill("A", dec!(1), dec!(10), true, T0)).unwrap();
        let mut rm = RiskManager::new(cfg()).unwrap();
        let pending = Pending { buys: BTreeMap::from([("B".to_string(), dec!(10))]), sells: BTreeMap::new() };
        let st = PortfolioState { portfolio: &p, pending: &pending, fee_rate: dec!(0) };
        assert_eq!(
            refused(rm.evaluate(&sig("C", Action::Buy, 1.0), &st, 10.0, T0)),
            Refusal::MaxPositions { open: 2, max: 2 }
        );
        // adding to a held position is fine
        assert!(rm.evaluate(&sig("A", Action::Buy, 1.0), &st, 10.0, T0).is_approved());
        assert!(matches!(
            refused(rm.evaluate(&sig("B", Action::Buy, 1.0), &st, 10.0, T0)),
            Refusal::OrderPending { .. }
        ));
        // the refused entry left a counterfactual: 1% of 1000 at 10 = 1 unit
        let cf = rm.take_counterfactuals();
        assert_eq!(cf.len(), 2);
        assert_eq!((cf[0].symbol.as_str(), cf[0].price, cf[0].qty, cf[0].time), ("C", dec!(10), dec!(1), T0));
        assert_eq!(cf[0].refusal, Refusal::MaxPositions { open: 2, max: 2 });
        assert!(rm.take_counterfactuals().is_empty());
    }

    #[test]
    fn loss_streak_halts_until_resume() {
        let mut p = Portfolio::new(dec!(10000)).unwrap();
        for i in 0..3 {
            p.apply_fill(&fill("A", dec!(1), dec!(10), true, T0 + i)).unwrap();
            p.apply_fill(&fill("A", dec!(1), dec!(9), false, T0 + i)).unwrap();
        }
        let mut rm = RiskManager::new(cfg()).unwrap();
        assert_eq!(rm.observe(&p), Some(HaltReason::ConsecutiveLosses { count: 3, limit: 3 }));
        assert_eq!(rm.observe(&p), None, "already latched");
        let st = PortfolioState::new(&p);
        assert!(matches!(refused(rm.evaluate(&sig("A", Action::Buy, 1.0), &st, 10.0, T0)), Refusal::Halted(_)));
        assert_eq!(rm.take_counterfactuals().len(), 1);
        rm.resume(&p);
        assert_eq!(rm.halt(), None);
        let st = PortfolioState::new(&p);
        assert!(rm.evaluate(&sig("A", Action::Buy, 1.0), &st, 10.0, T0).is_approved());
        // two more losses since resume: still under 3; a third halts again
        for i in 0..3 {
            p.apply_fill(&fill("A", dec!(1), dec!(10), true, T0 + 10 + i)).unwrap();
            p.apply_fill(&fill("A", dec!(1), dec!(9), false, T0 + 10 + i)).unwrap();
            let newly = rm.observe(&p);
            assert_eq!(newly.is_some(), i == 2, "step {i}");
        }
    }

    #[test]
    fn drawdown_and_daily_loss_halt_but_exits_pass() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&fill("A", dec!(50), dec!(10), true, T0)).unwrap();
        // A falls to 8: equity 500 + 400 = 900: a 10% daily loss (limit 5%)
        p.mark(T0 + 60, [("A", dec!(8))]);
        let mut rm = RiskManager::new(cfg()).unwrap();
        assert_eq!(rm.observe(&p), Some(HaltReason::DailyLoss { pct: dec!(10), limit: dec!(5) }));
        let st = PortfolioState::new(&p);
        assert!(matches!(refused(rm.evaluate(&sig("B", Action::Buy, 1.0), &st, 10.0, T0)), Refusal::Halted(_)));
        assert!(rm.evaluate(&sig("A", Action::Sell, 1.0), &st, 8.0, T0).is_approved());
        assert!(rm.evaluate(&sig("A", Action::Close, 0.0), &st, 8.0, T0).is_approved());
        // resume: today's loss now counts from 900
        rm.resume(&p);
        assert_eq!(rm.observe(&p), None);
        // next day, A falls to 4: equity 700; drawdown is measured from the
        // resume high-water 900, not the old 1000 peak: 200 / 900 = 22.2% ≥ 20%
        let next = (crate::portfolio::utc_day(T0) + 1) * crate::portfolio::DAY_SECS;
        p.mark(next, [("A", dec!(8))]);
        p.mark(next + 60, [("A", dec!(4))]);
        match rm.observe(&p) {
            Some(HaltReason::Drawdown { pct, .. }) => assert_eq!(pct.round_dp(2), dec!(22.22)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decisions_serialise_for_logs() {
        let d = Decision::Refused(Refusal::Halted(HaltReason::DailyLoss { pct: dec!(6), limit: dec!(5) }));
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["decision"], "refused");
        assert_eq!(j["detail"]["kind"], "halted");
        assert_eq!(j["detail"]["detail"]["reason"], "daily_loss");
        let j = serde_json::to_value(Decision::Refused(Refusal::UnknownSymbol("X".into()))).unwrap();
        assert_eq!(j["detail"]["detail"], "X");
    }

    #[test]
    fn kill_refuses_everything_and_closes_all() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&fill("B", dec!(2), dec!(10), true, T0)).unwrap();
        p.apply_fill(&fill("A", dec!(1), dec!(10), true, T0)).unwrap();
        let mut rm = RiskManager::new(cfg()).unwrap();
        let closes = rm.kill(&p, T0 + 5);
        assert!(rm.is_killed() && rm.entries_blocked());
        assert_eq!(
            closes.iter().map(|o| (o.symbol.as_str(), o.qty)).collect::<Vec<_>>(),
            vec![("A", dec!(1)), ("B", dec!(2))]
        );
        assert!(closes.iter().all(|o| o.close_reason == CloseReason::Kill && o.side == OrderSide::Sell));
        let st = PortfolioState::new(&p);
        assert_eq!(refused(rm.evaluate(&sig("A", Action::Close, 0.0), &st, 10.0, T0)), Refusal::Killed);
        assert_eq!(refused(rm.evaluate(&sig("C", Action::Buy, 1.0), &st, 10.0, T0)), Refusal::Killed);
        assert_eq!(refused(rm.evaluate(&sig("C", Action::Buy, f64::NAN), &st, 10.0, T0)), Refusal::Killed);
        // the refused entry is still recorded: 1% of 1000 at 10
        let cf = rm.take_counterfactuals();
        assert_eq!((cf.len(), cf[0].qty), (1, dec!(1)));
        rm.clear_kill();
        assert!(rm.evaluate(&sig("A", Action::Close, 0.0), &st, 10.0, T0).is_approved());
    }
}
