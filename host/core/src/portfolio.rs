//! The ledger: cash, open long positions, closed trades and the running
//! statistics the risk manager needs (peak equity, drawdown, P&L per UTC day,
//! loss streak). Every amount is an exact `Decimal`; fills are the only way
//! money moves, and [`Portfolio::check_invariant`] proves the books balance:
//! `cash == starting_capital + net_deposits + realized_pnl − Σ open (cost + entry_fees)`.
//! A fill whose amounts would need rounding to fit `Decimal` is refused.

use crate::money::{self, round_fee};
use crate::types::{Intent, Side};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use thiserror::Error;

/// Seconds in a UTC day.
pub const DAY_SECS: i64 = 86_400;

/// The UTC day number of a Unix time (day 0 is 1970-01-01).
pub fn utc_day(ts: i64) -> i64 {
    ts.div_euclid(DAY_SECS)
}

/// Why a position (or part of one) was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The strategy asked (Sell or Close).
    Signal,
    StopLoss,
    TakeProfit,
    /// The kill switch closed everything.
    Kill,
    /// The venue's state differed from the ledger's.
    Reconcile,
    /// A backtest ran out of data with the position still open.
    EndOfData,
    /// A person closed it (`/forceexit`, `host exit`).
    ForceExit,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] = [
        CloseReason::Signal,
        CloseReason::StopLoss,
        CloseReason::TakeProfit,
        CloseReason::Kill,
        CloseReason::Reconcile,
        CloseReason::EndOfData,
        CloseReason::ForceExit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Signal => "signal",
            CloseReason::StopLoss => "stop_loss",
            CloseReason::TakeProfit => "take_profit",
            CloseReason::Kill => "kill",
            CloseReason::Reconcile => "reconcile",
            CloseReason::EndOfData => "end_of_data",
            CloseReason::ForceExit => "force_exit",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Direction of an order or fill (spot: a buy opens or adds, a sell reduces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderSide {
    Buy,
    Sell,
}

/// What a fill does to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "side", rename_all = "lowercase")]
pub enum FillKind {
    /// Opens or adds to a long. `Some` stops replace the position's; `None` keeps them.
    Buy { intent: Intent, stop_loss: Option<Decimal>, take_profit: Option<Decimal>, tag: String },
    /// Reduces or closes a long.
    Sell { reason: CloseReason },
}

/// One execution: `qty` at `price`, paying `fee` in quote currency, at `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub symbol: String,
    pub qty: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub time: i64,
    pub kind: FillKind,
}

impl Fill {
    pub fn side(&self) -> OrderSide {
        match self.kind {
            FillKind::Buy { .. } => OrderSide::Buy,
            FillKind::Sell { .. } => OrderSide::Sell,
        }
    }

    /// `qty × price`, exact (saturating on absurd input).
    pub fn notional(&self) -> Decimal {
        self.qty.saturating_mul(self.price)
    }
}

/// An open long position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    /// Σ qty × price of the entry fills still held: the exact cost basis before fees.
    pub cost: Decimal,
    /// `cost / qty`, rounded to 12 places (for display; P&L uses `cost`).
    pub avg_entry: Decimal,
    /// Entry fees still attributed to the held quantity.
    pub entry_fees: Decimal,
    pub intent: Intent,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub opened_at: i64,
    pub tag: String,
}

impl Position {
    /// Cost basis including entry fees: what the position took out of cash.
    pub fn basis(&self) -> Decimal {
        self.cost.saturating_add(self.entry_fees)
    }

    /// Market value at `price`.
    pub fn value_at(&self, price: Decimal) -> Decimal {
        self.qty.saturating_mul(price)
    }

    /// P&L if sold at `price` with no exit fee, net of entry fees.
    pub fn unrealized_pnl(&self, price: Decimal) -> Decimal {
        self.value_at(price).saturating_sub(self.basis())
    }
}

/// A closed position, or the closed part of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedTrade {
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub entry_price: Decimal,
    pub exit_price: Decimal,
    /// Exit proceeds (after the exit fee) minus the cost basis and entry fees of `qty`.
    pub pnl: Decimal,
    /// `pnl` over (cost basis + entry fees) of `qty`, in percent, 8 places.
    pub pnl_pct: Decimal,
    /// Entry fees of `qty` plus the exit fee.
    pub fees: Decimal,
    pub intent: Intent,
    pub opened_at: i64,
    pub closed_at: i64,
    pub close_reason: CloseReason,
    pub tag: String,
}

/// Equity and realized results of one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DailyStats {
    /// Equity at the last update before the day began (deposits adjust it).
    pub start_equity: Decimal,
    /// Equity at the day's latest update.
    pub end_equity: Decimal,
    pub realized_pnl: Decimal,
    pub fees: Decimal,
    pub trades_closed: u32,
}

impl DailyStats {
    /// Mark-to-market P&L of the day: `end_equity − start_equity`.
    pub fn pnl(&self) -> Decimal {
        self.end_equity.saturating_sub(self.start_equity)
    }

    /// The day's loss as a percent of its start equity; 0 when it gained.
    pub fn loss_pct(&self) -> Decimal {
        let loss = self.start_equity.saturating_sub(self.end_equity);
        if loss <= Decimal::ZERO {
            return Decimal::ZERO;
        }
        money::pct(loss, self.start_equity).unwrap_or(Decimal::ZERO)
    }
}

/// A fill or cash movement the ledger refused; the ledger is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    #[error("empty symbol")]
    EmptySymbol,
    #[error("quantity must be positive, got {0}")]
    NonPositiveQty(Decimal),
    #[error("price must be positive, got {0}")]
    NonPositivePrice(Decimal),
    #[error("fee must not be negative, got {0}")]
    NegativeFee(Decimal),
    #[error("amount must be positive, got {0}")]
    NonPositiveAmount(Decimal),
    #[error("insufficient cash: need {needed}, have {available}")]
    InsufficientCash { needed: Decimal, available: Decimal },
    #[error("no open position in {0}")]
    NoPosition(String),
    #[error("cannot sell {qty} {symbol}: only {held} held (shorting is not supported)")]
    SellExceedsPosition { symbol: String, qty: Decimal, held: Decimal },
    #[error("amount out of range or too precise to stay exact (28 significant digits)")]
    Inexact,
}

/// A broken ledger identity (a bug, never expected).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvariantViolation {
    #[error("cash {cash} != starting capital + net deposits + realized pnl - open cost basis = {expected}")]
    Cash { cash: Decimal, expected: Decimal },
    #[error("realized pnl {realized} != sum of closed trades' pnl {sum}")]
    Realized { realized: Decimal, sum: Decimal },
    #[error("total fees {total} != closed trades' fees + open entry fees = {sum}")]
    Fees { total: Decimal, sum: Decimal },
    #[error("negative cash {0}")]
    NegativeCash(Decimal),
    #[error("position {0} has a non-positive quantity or negative cost")]
    BadPosition(String),
}

fn ck(v: Option<Decimal>) -> Result<Decimal, LedgerError> {
    v.ok_or(LedgerError::Inexact)
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, LedgerError> {
    ck(money::exact_add(a, b))
}

fn sub(a: Decimal, b: Decimal) -> Result<Decimal, LedgerError> {
    ck(money::exact_sub(a, b))
}

/// The ledger of one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Portfolio {
    starting_capital: Decimal,
    net_deposits: Decimal,
    cash: Decimal,
    positions: BTreeMap<String, Position>,
    /// Last known price of each held symbol (from marks and fills).
    marks: BTreeMap<String, Decimal>,
    closed: Vec<ClosedTrade>,
    realized_pnl: Decimal,
    total_fees: Decimal,
    consecutive_losses: u32,
    peak_equity: Decimal,
    daily: BTreeMap<i64, DailyStats>,
    last_time: Option<i64>,
}

impl Portfolio {
    /// A ledger holding `starting_capital` in cash; refuses a negative amount.
    pub fn new(starting_capital: Decimal) -> Result<Self, LedgerError> {
        if starting_capital < Decimal::ZERO {
            return Err(LedgerError::NonPositiveAmount(starting_capital));
        }
        Ok(Portfolio {
            starting_capital,
            net_deposits: Decimal::ZERO,
            cash: starting_capital,
            positions: BTreeMap::new(),
            marks: BTreeMap::new(),
            closed: Vec::new(),
            realized_pnl: Decimal::ZERO,
            total_fees: Decimal::ZERO,
            consecutive_losses: 0,
            peak_equity: starting_capital,
            daily: BTreeMap::new(),
            last_time: None,
        })
    }

    /// This ledger without its history: no closed trades and only the
    /// latest day's stats. What a per-bar snapshot stores, built without
    /// copying the history, so its cost does not grow with it.
    pub fn compact(&self) -> Portfolio {
        Portfolio {
            starting_capital: self.starting_capital,
            net_deposits: self.net_deposits,
            cash: self.cash,
            positions: self.positions.clone(),
            marks: self.marks.clone(),
            closed: Vec::new(),
            realized_pnl: self.realized_pnl,
            total_fees: self.total_fees,
            consecutive_losses: self.consecutive_losses,
            peak_equity: self.peak_equity,
            daily: self.daily.last_key_value().map(|(d, s)| (*d, *s)).into_iter().collect(),
            last_time: self.last_time,
        }
    }

    pub fn starting_capital(&self) -> Decimal {
        self.starting_capital
    }

    /// Deposits minus withdrawals since the start.
    pub fn net_deposits(&self) -> Decimal {
        self.net_deposits
    }

    pub fn cash(&self) -> Decimal {
        self.cash
    }

    pub fn positions(&self) -> &BTreeMap<String, Position> {
        &self.positions
    }

    pub fn position(&self, symbol: &str) -> Option<&Position> {
        self.positions.get(symbol)
    }

    pub fn closed_trades(&self) -> &[ClosedTrade] {
        &self.closed
    }

    /// Σ pnl of closed trades (net of entry and exit fees).
    pub fn realized_pnl(&self) -> Decimal {
        self.realized_pnl
    }

    /// Every fee paid, on open and closed positions.
    pub fn total_fees(&self) -> Decimal {
        self.total_fees
    }

    /// Losing closed trades in a row, most recent last (a trade with pnl ≥ 0 resets it).
    pub fn consecutive_losses(&self) -> u32 {
        self.consecutive_losses
    }

    pub fn peak_equity(&self) -> Decimal {
        self.peak_equity
    }

    /// P&L by UTC day number (see [`utc_day`]).
    pub fn daily(&self) -> &BTreeMap<i64, DailyStats> {
        &self.daily
    }

    /// The latest UTC day the ledger has seen, with its stats.
    pub fn today(&self) -> Option<(i64, &DailyStats)> {
        self.daily.last_key_value().map(|(d, s)| (*d, s))
    }

    /// Latest time passed to the ledger.
    pub fn last_time(&self) -> Option<i64> {
        self.last_time
    }

    /// Last known price of a held symbol.
    pub fn mark_price(&self, symbol: &str) -> Option<Decimal> {
        self.marks.get(symbol).copied()
    }

    /// Cash plus each position at its last known price (its average entry if none).
    pub fn equity(&self) -> Decimal {
        self.value_with(|_| None)
    }

    /// Marks to market: cash plus each position at `prices[symbol]`, falling
    /// back to its last known price, then to its average entry.
    pub fn value(&self, prices: &BTreeMap<String, Decimal>) -> Decimal {
        self.value_with(|symbol| prices.get(symbol).copied())
    }

    fn value_with(&self, price: impl Fn(&str) -> Option<Decimal>) -> Decimal {
        self.positions.values().fold(self.cash, |acc, p| {
            let price = price(&p.symbol).or_else(|| self.marks.get(&p.symbol).copied()).unwrap_or(p.avg_entry);
            acc.saturating_add(p.value_at(price))
        })
    }

    /// Current drawdown from peak equity, in percent (0 at a peak).
    pub fn drawdown_pct(&self) -> Decimal {
        let gap = self.peak_equity.saturating_sub(self.equity());
        if gap <= Decimal::ZERO {
            return Decimal::ZERO;
        }
        money::pct(gap, self.peak_equity).unwrap_or(Decimal::ZERO)
    }

    /// Today's loss in percent of the day's start equity (0 if none or a gain).
    pub fn daily_loss_pct(&self) -> Decimal {
        self.today().map_or(Decimal::ZERO, |(_, s)| s.loss_pct())
    }

    /// Records the latest prices of held symbols at `now` (others are ignored,
    /// as are non-positive prices), updating peak equity and the day's stats.
    /// Returns the equity.
    pub fn mark<'a>(&mut self, now: i64, prices: impl IntoIterator<Item = (&'a str, Decimal)>) -> Decimal {
        self.roll(now);
        for (symbol, price) in prices {
            if price > Decimal::ZERO && self.positions.contains_key(symbol) {
                match self.marks.get_mut(symbol) {
                    Some(m) => *m = price,
                    None => {
                        self.marks.insert(symbol.to_string(), price);
                    }
                }
            }
        }
        self.settle()
    }

    /// Starts measuring drawdown from the current equity.
    pub fn reset_peak(&mut self) {
        self.peak_equity = self.equity();
    }

    /// Adds cash from outside; peak and day-start equity move with it, so a
    /// deposit is never counted as profit.
    pub fn deposit(&mut self, now: i64, amount: Decimal) -> Result<(), LedgerError> {
        if amount <= Decimal::ZERO {
            return Err(LedgerError::NonPositiveAmount(amount));
        }
        let cash = add(self.cash, amount)?;
        let net = add(self.net_deposits, amount)?;
        self.roll(now);
        self.cash = cash;
        self.net_deposits = net;
        self.peak_equity = self.peak_equity.saturating_add(amount);
        if let Some(day) = self.daily.values_mut().next_back() {
            day.start_equity = day.start_equity.saturating_add(amount);
        }
        self.settle();
        Ok(())
    }

    /// Takes cash out (at most the cash held); peak and day-start equity move with it.
    /// A signed cash correction (a deposit when positive, a withdrawal when
    /// negative; zero changes nothing): the venue's balance moved for a reason
    /// outside the host's trading, so it is not P&L.
    pub fn adjust_cash(&mut self, now: i64, amount: Decimal) -> Result<(), LedgerError> {
        match amount.cmp(&Decimal::ZERO) {
            std::cmp::Ordering::Greater => self.deposit(now, amount),
            std::cmp::Ordering::Less => self.withdraw(now, -amount),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    pub fn withdraw(&mut self, now: i64, amount: Decimal) -> Result<(), LedgerError> {
        if amount <= Decimal::ZERO {
            return Err(LedgerError::NonPositiveAmount(amount));
        }
        if amount > self.cash {
            return Err(LedgerError::InsufficientCash { needed: amount, available: self.cash });
        }
        let cash = sub(self.cash, amount)?;
        let net = sub(self.net_deposits, amount)?;
        self.roll(now);
        self.cash = cash;
        self.net_deposits = net;
        self.peak_equity = self.peak_equity.saturating_sub(amount).max(Decimal::ZERO);
        if let Some(day) = self.daily.values_mut().next_back() {
            day.start_equity = day.start_equity.saturating_sub(amount);
        }
        self.settle();
        Ok(())
    }

    /// Replaces the stop-loss and/or take-profit of an open position (`None` keeps one).
    pub fn set_exits(
        &mut self,
        symbol: &str,
        stop_loss: Option<Decimal>,
        take_profit: Option<Decimal>,
    ) -> Result<(), LedgerError> {
        let p = self.positions.get_mut(symbol).ok_or_else(|| LedgerError::NoPosition(symbol.to_string()))?;
        if stop_loss.is_some() {
            p.stop_loss = stop_loss;
        }
        if take_profit.is_some() {
            p.take_profit = take_profit;
        }
        Ok(())
    }

    /// Books a fill. A buy takes `qty × price + fee` out of cash (refused if
    /// cash is short) and opens or adds to the long; a sell (at most the held
    /// quantity) pays `qty × price − fee` into cash, releases the sold share of
    /// cost basis and entry fees, and returns the closed trade. On error the
    /// ledger is unchanged. Amounts are never rounded silently: a fill whose
    /// arithmetic would exceed `Decimal`'s 28 significant digits is refused
    /// with [`LedgerError::Inexact`] (prices of at most 10 places and amounts
    /// below 1e10 never are).
    pub fn apply_fill(&mut self, fill: &Fill) -> Result<Option<ClosedTrade>, LedgerError> {
        if fill.symbol.is_empty() {
            return Err(LedgerError::EmptySymbol);
        }
        if fill.qty <= Decimal::ZERO {
            return Err(LedgerError::NonPositiveQty(fill.qty));
        }
        if fill.price <= Decimal::ZERO {
            return Err(LedgerError::NonPositivePrice(fill.price));
        }
        if fill.fee < Decimal::ZERO {
            return Err(LedgerError::NegativeFee(fill.fee));
        }
        let notional = ck(money::exact_mul(fill.qty, fill.price))?;
        let total_fees = add(self.total_fees, fill.fee)?;
        let closed = match &fill.kind {
            FillKind::Buy { intent, stop_loss, take_profit, tag } => {
                let needed = add(notional, fill.fee)?;
                if needed > self.cash {
                    return Err(LedgerError::InsufficientCash { needed, available: self.cash });
                }
                let cash = sub(self.cash, needed)?;
                let next = match self.positions.get(&fill.symbol) {
                    Some(p) => {
                        let qty = add(p.qty, fill.qty)?;
                        let cost = add(p.cost, notional)?;
                        Position {
                            qty,
                            cost,
                            avg_entry: avg(cost, qty),
                            entry_fees: add(p.entry_fees, fill.fee)?,
                            stop_loss: stop_loss.or(p.stop_loss),
                            take_profit: take_profit.or(p.take_profit),
                            ..p.clone()
                        }
                    }
                    None => Position {
                        symbol: fill.symbol.clone(),
                        side: Side::Long,
                        qty: fill.qty,
                        cost: notional,
                        avg_entry: avg(notional, fill.qty),
                        entry_fees: fill.fee,
                        intent: *intent,
                        stop_loss: *stop_loss,
                        take_profit: *take_profit,
                        opened_at: fill.time,
                        tag: tag.clone(),
                    },
                };
                self.roll(fill.time);
                self.cash = cash;
                self.positions.insert(fill.symbol.clone(), next);
                None
            }
            FillKind::Sell { reason } => {
                let p = self.positions.get(&fill.symbol).ok_or_else(|| LedgerError::NoPosition(fill.symbol.clone()))?;
                if fill.qty > p.qty {
                    return Err(LedgerError::SellExceedsPosition {
                        symbol: fill.symbol.clone(),
                        qty: fill.qty,
                        held: p.qty,
                    });
                }
                let proceeds = sub(notional, fill.fee)?;
                let cash = add(self.cash, proceeds)?;
                if cash < Decimal::ZERO {
                    return Err(LedgerError::InsufficientCash { needed: -proceeds, available: self.cash });
                }
                let whole = fill.qty == p.qty;
                let share = |x: Decimal| -> Result<Decimal, LedgerError> {
                    if whole {
                        Ok(x)
                    } else {
                        Ok(round_fee(ck(ck(x.checked_mul(fill.qty))?.checked_div(p.qty))?))
                    }
                };
                let released_cost = share(p.cost)?;
                let released_fees = share(p.entry_fees)?;
                let basis = add(released_cost, released_fees)?;
                let pnl = sub(proceeds, basis)?;
                let realized = add(self.realized_pnl, pnl)?;
                let trade = ClosedTrade {
                    symbol: fill.symbol.clone(),
                    side: Side::Long,
                    qty: fill.qty,
                    entry_price: p.avg_entry,
                    exit_price: fill.price,
                    pnl,
                    pnl_pct: money::pct(pnl, basis).unwrap_or(Decimal::ZERO).round_dp(8),
                    fees: add(released_fees, fill.fee)?,
                    intent: p.intent,
                    opened_at: p.opened_at,
                    closed_at: fill.time,
                    close_reason: *reason,
                    tag: p.tag.clone(),
                };
                let rest = if whole {
                    None
                } else {
                    let qty = sub(p.qty, fill.qty)?;
                    let cost = sub(p.cost, released_cost)?;
                    Some(Position {
                        qty,
                        cost,
                        avg_entry: avg(cost, qty),
                        entry_fees: sub(p.entry_fees, released_fees)?,
                        ..p.clone()
                    })
                };
                self.roll(fill.time);
                self.cash = cash;
                self.realized_pnl = realized;
                match rest {
                    Some(p) => {
                        self.positions.insert(fill.symbol.clone(), p);
                    }
                    None => {
                        self.positions.remove(&fill.symbol);
                        self.marks.remove(&fill.symbol);
                    }
                }
                self.consecutive_losses =
                    if pnl < Decimal::ZERO { self.consecutive_losses.saturating_add(1) } else { 0 };
                if let Some(day) = self.daily.values_mut().next_back() {
                    day.realized_pnl = day.realized_pnl.saturating_add(pnl);
                    day.trades_closed = day.trades_closed.saturating_add(1);
                }
                self.closed.push(trade.clone());
                Some(trade)
            }
        };
        self.total_fees = total_fees;
        if self.positions.contains_key(&fill.symbol) {
            self.marks.insert(fill.symbol.clone(), fill.price);
        }
        if let Some(day) = self.daily.values_mut().next_back() {
            day.fees = day.fees.saturating_add(fill.fee);
        }
        self.settle();
        Ok(closed)
    }

    /// Checks the ledger identities, exactly:
    /// 1. `cash == starting_capital + net_deposits + realized_pnl − Σ open (cost + entry_fees)`
    ///    (a buy moves `notional + fee` from cash into basis; a sell moves the
    ///    released basis out and `pnl = proceeds − released basis` into realized);
    /// 2. `realized_pnl == Σ closed.pnl`;
    /// 3. `total_fees == Σ closed.fees + Σ open entry_fees`;
    /// 4. cash ≥ 0 and every position has qty > 0 and non-negative cost and fees.
    pub fn check_invariant(&self) -> Result<(), InvariantViolation> {
        let open_basis = self.positions.values().fold(Decimal::ZERO, |a, p| a.saturating_add(p.basis()));
        let expected = self
            .starting_capital
            .saturating_add(self.net_deposits)
            .saturating_add(self.realized_pnl)
            .saturating_sub(open_basis);
        if self.cash != expected {
            return Err(InvariantViolation::Cash { cash: self.cash, expected });
        }
        let sum = self.closed.iter().fold(Decimal::ZERO, |a, t| a.saturating_add(t.pnl));
        if sum != self.realized_pnl {
            return Err(InvariantViolation::Realized { realized: self.realized_pnl, sum });
        }
        let fees = self.closed.iter().fold(Decimal::ZERO, |a, t| a.saturating_add(t.fees));
        let fees = self.positions.values().fold(fees, |a, p| a.saturating_add(p.entry_fees));
        if fees != self.total_fees {
            return Err(InvariantViolation::Fees { total: self.total_fees, sum: fees });
        }
        if self.cash < Decimal::ZERO {
            return Err(InvariantViolation::NegativeCash(self.cash));
        }
        for p in self.positions.values() {
            if p.qty <= Decimal::ZERO || p.cost < Decimal::ZERO || p.entry_fees < Decimal::ZERO {
                return Err(InvariantViolation::BadPosition(p.symbol.clone()));
            }
        }
        Ok(())
    }

    /// Opens a new UTC day when `now` falls after the latest one; its start
    /// equity is the equity before this update. An earlier `now` counts toward
    /// the latest day.
    fn roll(&mut self, now: i64) {
        let day = utc_day(now);
        if self.daily.last_key_value().is_none_or(|(d, _)| day > *d) {
            let e = self.equity();
            self.daily.insert(day, DailyStats { start_equity: e, end_equity: e, ..DailyStats::default() });
        }
        self.last_time = Some(self.last_time.map_or(now, |t| t.max(now)));
    }

    fn settle(&mut self) -> Decimal {
        let e = self.equity();
        if e > self.peak_equity {
            self.peak_equity = e;
        }
        if let Some(day) = self.daily.values_mut().next_back() {
            day.end_equity = e;
        }
        e
    }
}

fn avg(cost: Decimal, qty: Decimal) -> Decimal {
    cost.checked_div(qty).map_or(Decimal::ZERO, |a| a.round_dp(12))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const T0: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

    pub(crate) fn buy(symbol: &str, qty: Decimal, price: Decimal, fee: Decimal, time: i64) -> Fill {
        Fill {
            symbol: symbol.into(),
            qty,
            price,
            fee,
            time,
            kind: FillKind::Buy { intent: Intent::Swing, stop_loss: None, take_profit: None, tag: "t".into() },
        }
    }

    pub(crate) fn sell(symbol: &str, qty: Decimal, price: Decimal, fee: Decimal, time: i64) -> Fill {
        Fill { symbol: symbol.into(), qty, price, fee, time, kind: FillKind::Sell { reason: CloseReason::Signal } }
    }

    #[test]
    fn buy_then_sell_books_exact_pnl() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        // buy 2 @ 100, fee 0.2 → cash 1000 − 200.2 = 799.8
        assert_eq!(p.apply_fill(&buy("BTC", dec!(2), dec!(100), dec!(0.2), T0)).unwrap(), None);
        assert_eq!(p.cash(), dec!(799.8));
        let pos = p.position("BTC").unwrap();
        assert_eq!((pos.qty, pos.cost, pos.avg_entry, pos.entry_fees), (dec!(2), dec!(200), dec!(100), dec!(0.2)));
        p.check_invariant().unwrap();
        // sell 2 @ 110, fee 0.22 → proceeds 219.78; pnl = 219.78 − 200.2 = 19.58
        let t = p.apply_fill(&sell("BTC", dec!(2), dec!(110), dec!(0.22), T0 + 3600)).unwrap().unwrap();
        assert_eq!(t.pnl, dec!(19.58));
        assert_eq!(t.fees, dec!(0.42));
        // 19.58 / 200.2 × 100 = 9.78021978...
        assert_eq!(t.pnl_pct, dec!(9.78021978));
        assert_eq!((t.entry_price, t.exit_price, t.opened_at, t.closed_at), (dec!(100), dec!(110), T0, T0 + 3600));
        assert_eq!(p.cash(), dec!(1019.58));
        assert_eq!(p.realized_pnl(), dec!(19.58));
        assert_eq!(p.total_fees(), dec!(0.42));
        assert!(p.positions().is_empty());
        p.check_invariant().unwrap();
    }

    #[test]
    fn partial_sells_release_proportional_basis() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&buy("ETH", dec!(3), dec!(10), dec!(0.03), T0)).unwrap();
        // sell 1 of 3: released cost 10, released fee 0.01; proceeds 12 − 0.012
        let t = p.apply_fill(&sell("ETH", dec!(1), dec!(12), dec!(0.012), T0 + 1)).unwrap().unwrap();
        assert_eq!(t.pnl, dec!(11.988) - dec!(10.01));
        let pos = p.position("ETH").unwrap();
        assert_eq!((pos.qty, pos.cost, pos.entry_fees), (dec!(2), dec!(20), dec!(0.02)));
        p.check_invariant().unwrap();
        // a split that does not divide evenly: sell 1 of 2 after adding 1 @ 11
        p.apply_fill(&buy("ETH", dec!(1), dec!(11), dec!(0.011), T0 + 2)).unwrap();
        // now qty 3, cost 31, fees 0.031; selling 1 releases round8(31/3) = 10.33333333
        let t = p.apply_fill(&sell("ETH", dec!(1), dec!(11), dec!(0), T0 + 3)).unwrap().unwrap();
        assert_eq!(t.pnl, dec!(11) - dec!(10.33333333) - dec!(0.01033333));
        p.check_invariant().unwrap();
        p.apply_fill(&sell("ETH", dec!(2), dec!(9), dec!(0), T0 + 4)).unwrap();
        assert!(p.positions().is_empty());
        p.check_invariant().unwrap();
        assert_eq!(p.closed_trades().len(), 3);
    }

    #[test]
    fn bad_fills_are_refused_and_leave_ledger_unchanged() {
        let mut p = Portfolio::new(dec!(100)).unwrap();
        let before = p.clone();
        assert!(matches!(p.apply_fill(&sell("X", dec!(1), dec!(1), dec!(0), T0)), Err(LedgerError::NoPosition(_))));
        assert!(matches!(
            p.apply_fill(&buy("X", dec!(1), dec!(100), dec!(0.1), T0)),
            Err(LedgerError::InsufficientCash { .. })
        ));
        assert!(matches!(p.apply_fill(&buy("X", dec!(0), dec!(1), dec!(0), T0)), Err(LedgerError::NonPositiveQty(_))));
        assert!(matches!(
            p.apply_fill(&buy("X", dec!(1), dec!(-1), dec!(0), T0)),
            Err(LedgerError::NonPositivePrice(_))
        ));
        assert!(matches!(p.apply_fill(&buy("X", dec!(1), dec!(1), dec!(-1), T0)), Err(LedgerError::NegativeFee(_))));
        assert!(matches!(p.apply_fill(&buy("", dec!(1), dec!(1), dec!(0), T0)), Err(LedgerError::EmptySymbol)));
        assert_eq!(p, before);
        p.apply_fill(&buy("X", dec!(1), dec!(10), dec!(0), T0)).unwrap();
        let before = p.clone();
        assert!(matches!(
            p.apply_fill(&sell("X", dec!(2), dec!(10), dec!(0), T0)),
            Err(LedgerError::SellExceedsPosition { .. })
        ));
        assert_eq!(p, before);
    }

    #[test]
    fn fills_that_cannot_stay_exact_are_refused() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        // 8 + 22 decimal places: beyond Decimal's 28
        let f = buy("A", dec!(0.12345678), dec!(0.1234567890123456789012), dec!(0), T0);
        assert_eq!(p.apply_fill(&f), Err(LedgerError::Inexact));
        assert_eq!(p, Portfolio::new(dec!(1000)).unwrap());
    }

    #[test]
    fn marks_peak_drawdown_and_daily_loss() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&buy("BTC", dec!(5), dec!(100), dec!(0), T0)).unwrap();
        assert_eq!(p.mark(T0 + 60, [("BTC", dec!(120))]), dec!(1100));
        assert_eq!(p.peak_equity(), dec!(1100));
        // equity 1000 − 500 + 5 × 88 = 940; drawdown (1100 − 940) / 1100 = 14.545...%
        assert_eq!(p.mark(T0 + 120, [("BTC", dec!(88)), ("ETH", dec!(5))]), dec!(940));
        assert_eq!(p.drawdown_pct().round_dp(4), dec!(14.5455));
        assert_eq!(p.mark_price("ETH"), None);
        // T0 is 22:13 UTC; the same day: start 1000 → 940 is a 6% loss
        assert_eq!(p.daily_loss_pct(), dec!(6));
        // next day starts at 940; a drop to 893 is a 5% loss
        let next = (utc_day(T0) + 1) * DAY_SECS;
        p.mark(next + 10, [("BTC", dec!(78.6))]);
        let (day, stats) = p.today().unwrap();
        assert_eq!(day, utc_day(T0) + 1);
        assert_eq!((stats.start_equity, stats.end_equity), (dec!(940), dec!(893)));
        assert_eq!(p.daily_loss_pct(), dec!(5));
        assert_eq!(stats.pnl(), dec!(-47));
        let values = BTreeMap::from([("BTC".to_string(), dec!(200))]);
        assert_eq!(p.value(&values), dec!(1500));
        p.reset_peak();
        assert_eq!(p.drawdown_pct(), dec!(0));
    }

    #[test]
    fn compact_keeps_the_state_and_drops_the_history() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        for day in 0..5 {
            let t = T0 + day * DAY_SECS;
            p.apply_fill(&buy("A", dec!(2), dec!(10), dec!(0), t)).unwrap();
            p.apply_fill(&sell("A", dec!(1), dec!(12), dec!(0), t + 30)).unwrap();
            p.mark(t + 60, [("A", dec!(11))]);
        }
        assert_eq!((p.closed_trades().len(), p.daily().len()), (5, 5));
        let c = p.compact();
        assert!(c.closed_trades().is_empty());
        assert_eq!(c.daily().len(), 1);
        assert_eq!(c.today(), p.today());
        assert_eq!(c.positions(), p.positions());
        assert_eq!((c.cash(), c.equity(), c.peak_equity()), (p.cash(), p.equity(), p.peak_equity()));
        assert_eq!(c.last_time(), p.last_time());
    }

    #[test]
    fn loss_streak_and_daily_realized() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        for (i, exit) in [dec!(9), dec!(8), dec!(10), dec!(7)].into_iter().enumerate() {
            let t = T0 + i as i64 * 10;
            p.apply_fill(&buy("A", dec!(1), dec!(10), dec!(0), t)).unwrap();
            p.apply_fill(&sell("A", dec!(1), exit, dec!(0), t + 1)).unwrap();
        }
        // losses, loss, breakeven (resets), loss
        assert_eq!(p.consecutive_losses(), 1);
        assert_eq!(p.today().unwrap().1.realized_pnl, dec!(-6));
        assert_eq!(p.today().unwrap().1.trades_closed, 4);
        p.check_invariant().unwrap();
    }

    #[test]
    fn deposits_are_not_profit() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.mark(T0, []);
        p.deposit(T0 + 1, dec!(500)).unwrap();
        assert_eq!(p.peak_equity(), dec!(1500));
        assert_eq!(p.today().unwrap().1.pnl(), dec!(0));
        p.check_invariant().unwrap();
        p.withdraw(T0 + 2, dec!(200)).unwrap();
        assert_eq!((p.cash(), p.net_deposits(), p.peak_equity()), (dec!(1300), dec!(300), dec!(1300)));
        assert!(p.withdraw(T0 + 3, dec!(5000)).is_err());
        assert!(p.deposit(T0 + 3, dec!(-1)).is_err());
        p.check_invariant().unwrap();
        assert!(Portfolio::new(dec!(-1)).is_err());
    }

    #[test]
    fn exits_and_averaging_in() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        assert!(p.set_exits("A", Some(dec!(1)), None).is_err());
        let mut f = buy("A", dec!(1), dec!(10), dec!(0), T0);
        f.kind = FillKind::Buy {
            intent: Intent::Day,
            stop_loss: Some(dec!(9)),
            take_profit: Some(dec!(12)),
            tag: "first".into(),
        };
        p.apply_fill(&f).unwrap();
        p.apply_fill(&buy("A", dec!(3), dec!(12), dec!(0), T0 + 5)).unwrap();
        let pos = p.position("A").unwrap();
        // avg = (10 + 36) / 4 = 11.5; stops and intent, tag, opened_at kept
        assert_eq!(pos.avg_entry, dec!(11.5));
        assert_eq!((pos.stop_loss, pos.take_profit), (Some(dec!(9)), Some(dec!(12))));
        assert_eq!((pos.intent, pos.tag.as_str(), pos.opened_at), (Intent::Day, "first", T0));
        p.set_exits("A", None, Some(dec!(14))).unwrap();
        let pos = p.position("A").unwrap();
        assert_eq!((pos.stop_loss, pos.take_profit), (Some(dec!(9)), Some(dec!(14))));
        assert_eq!(pos.unrealized_pnl(dec!(12)), dec!(2));
    }

    #[test]
    fn invariant_detects_tampering() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&buy("A", dec!(1), dec!(10), dec!(0.01), T0)).unwrap();
        p.check_invariant().unwrap();
        let mut bad = p.clone();
        bad.cash += dec!(0.00000001);
        assert!(matches!(bad.check_invariant(), Err(InvariantViolation::Cash { .. })));
        let mut bad = p.clone();
        bad.total_fees = dec!(0);
        assert!(matches!(bad.check_invariant(), Err(InvariantViolation::Fees { .. })));
        let mut bad = p.clone();
        bad.realized_pnl = dec!(1);
        bad.cash += dec!(1);
        assert!(matches!(bad.check_invariant(), Err(InvariantViolation::Realized { .. })));
    }

    #[test]
    fn ledger_round_trips_through_json() {
        let mut p = Portfolio::new(dec!(1000)).unwrap();
        p.apply_fill(&buy("A", dec!(1.5), dec!(10.25), dec!(0.01), T0)).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: Portfolio = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }
}
