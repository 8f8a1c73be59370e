//! The simulated venue used by backtests and paper trading: it routes signals
//! through the [`RiskManager`], queues approved orders, and fills them bar by
//! bar per the fill model in [`crate::fill`], then checks stop-loss and
//! take-profit. A bar's events carry its open time `ts`: fills, exits and the
//! mark at its close are all booked at `ts`. Everything is ordered (orders by
//! id, positions by symbol), so the same inputs always give the same outputs.

use crate::fill::{exit_trigger, order_fill_price, Bar, BarError, FillConfig, FillConfigError};
use crate::market::MarketView;
use crate::money;
use crate::portfolio::{CloseReason, ClosedTrade, Fill, FillKind, LedgerError, OrderSide, Portfolio};
use crate::risk::{
    Clip, ClipReason, Counterfactual, Decision, HaltReason, OrderRequest, Pending, PortfolioState, Refusal, RiskManager,
};
use crate::types::{Action, Candle, OrderType, Signal};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Venue settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub fill: FillConfig,
    /// A limit or stop order that has not filled after this many bars of its
    /// symbol (counted from the first bar it could fill on) expires.
    pub order_ttl_bars: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { fill: FillConfig::default(), order_ttl_bars: 24 }
    }
}

/// An approved order waiting for a bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOrder {
    pub id: u64,
    pub request: OrderRequest,
    /// Eligible bars seen without a fill.
    pub bars_waited: u32,
}

/// One execution, with the order it came from (`None` for stop-loss,
/// take-profit and `close_all` exits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    pub order_id: Option<u64>,
    pub fill: Fill,
    /// Set when the fill quantity is below the order's (cash or position at fill time).
    pub clipped_from: Option<Clip>,
}

/// Why a pending order was dropped without a fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum CancelReason {
    Halted(HaltReason),
    Killed,
    MaxPositions,
    InsufficientCash,
    NoPosition,
    ByCaller,
    /// The ledger refused the fill (its message).
    Rejected(String),
}

/// Something that happened at the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    Filled(FillRecord),
    PositionClosed(ClosedTrade),
    OrderCancelled {
        order_id: u64,
        symbol: String,
        reason: CancelReason,
    },
    OrderExpired {
        order_id: u64,
        symbol: String,
    },
    /// Entries were halted (newly latched).
    Halted(HaltReason),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    #[error("invalid fill config: {0}")]
    Config(#[from] FillConfigError),
    #[error("bad bar for {symbol} at {ts}: {error}")]
    BadBar { symbol: String, ts: i64, error: BarError },
    #[error("bar for {symbol} at {ts} is not after the last one at {last}")]
    StaleBar { symbol: String, ts: i64, last: i64 },
    #[error("ledger refused a fill: {0}")]
    Ledger(#[from] LedgerError),
}

/// Portfolio, risk manager, costs and pending orders of one simulated account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    portfolio: Portfolio,
    risk: RiskManager,
    config: EngineConfig,
    pending: Vec<PendingOrder>,
    next_id: u64,
    last_bar: BTreeMap<String, i64>,
    /// Orders resting at a venue (live: handed over, not yet filled), counted
    /// by the risk manager like pending ones; set before each scan.
    #[serde(skip)]
    resting: Vec<OrderRequest>,
    /// Symbols whose newest bar is missing or stale at this scan: no entry
    /// is opened on a price that old (exits still go through); set before each scan.
    #[serde(skip)]
    stale: Vec<String>,
    /// Symbols a person paused: no new entry (exits still run); set by the caller.
    #[serde(skip)]
    paused: BTreeSet<String>,
}

enum Attempt {
    Wait,
    Done,
}

impl Engine {
    pub fn new(portfolio: Portfolio, risk: RiskManager, config: EngineConfig) -> Result<Self, EngineError> {
        config.fill.validate()?;
        Ok(Engine {
            portfolio,
            risk,
            config,
            pending: Vec::new(),
            next_id: 1,
            last_bar: BTreeMap::new(),
            resting: Vec::new(),
            stale: Vec::new(),
            paused: BTreeSet::new(),
        })
    }

    /// This engine with a history-free ledger ([`Portfolio::compact`]).
    pub fn compact(&self) -> Engine {
        Engine {
            portfolio: self.portfolio.compact(),
            risk: self.risk.clone(),
            config: self.config,
            pending: self.pending.clone(),
            next_id: self.next_id,
            last_bar: self.last_bar.clone(),
            resting: self.resting.clone(),
            stale: self.stale.clone(),
            paused: self.paused.clone(),
        }
    }

    /// The orders resting at the venue (live), which the risk manager counts
    /// toward open positions, pending-order refusals and reserved cash.
    pub fn set_resting(&mut self, orders: Vec<OrderRequest>) {
        self.resting = orders;
    }

    /// The symbols whose data is missing or stale at the next scan: entries
    /// on them are refused ([`Refusal::StaleData`]).
    pub fn set_stale(&mut self, symbols: Vec<String>) {
        self.stale = symbols;
    }

    /// The symbols paused by a person: entries on them are refused
    /// ([`Refusal::SymbolPaused`]); exits, stops and targets still run.
    pub fn set_paused_symbols(&mut self, symbols: BTreeSet<String>) {
        self.paused = symbols;
    }

    pub fn paused_symbols(&self) -> &BTreeSet<String> {
        &self.paused
    }

    pub fn portfolio(&self) -> &Portfolio {
        &self.portfolio
    }

    pub fn risk(&self) -> &RiskManager {
        &self.risk
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The id the next order will get: orders with this id or later are the
    /// ones placed after the call (ids only grow).
    pub fn next_order_id(&self) -> u64 {
        self.next_id
    }

    /// Pending orders placed since [`Engine::next_order_id`] returned `first`.
    pub fn pending_since(&self, first: u64) -> Vec<PendingOrder> {
        self.pending.iter().filter(|o| o.id >= first).cloned().collect()
    }

    /// Orders waiting to fill, oldest first.
    pub fn pending(&self) -> &[PendingOrder] {
        &self.pending
    }

    /// Counterfactual records of entries refused since the last call.
    pub fn take_counterfactuals(&mut self) -> Vec<Counterfactual> {
        self.risk.take_counterfactuals()
    }

    /// Marks held symbols at the view's prices, then decides each signal in
    /// order: approved orders are queued (they fill on the first bar whose
    /// `ts ≥ now`), Modify changes the position's exits at once.
    pub fn submit(&mut self, now: i64, signals: &[Signal], view: &MarketView) -> Vec<Decision> {
        let marks: Vec<(String, Decimal)> = self
            .portfolio
            .positions()
            .keys()
            .filter_map(|s| {
                let price = money::to_decimal(view.symbol_data(s)?.price).ok()?;
                Some((s.clone(), price))
            })
            .collect();
        self.portfolio.mark(now, marks.iter().map(|(s, p)| (s.as_str(), *p)));
        self.risk.observe(&self.portfolio);
        let fee_rate = self.config.fill.fee_rate();
        let mut out = Vec::with_capacity(signals.len());
        for s in signals {
            let Some(facts) = view.symbol_data(&s.symbol) else {
                out.push(Decision::Refused(Refusal::UnknownSymbol(s.symbol.clone())));
                continue;
            };
            if s.action == Action::Buy && self.stale.contains(&s.symbol) {
                out.push(Decision::Refused(Refusal::StaleData(s.symbol.clone())));
                continue;
            }
            if s.action == Action::Buy && self.paused.contains(&s.symbol) {
                out.push(Decision::Refused(Refusal::SymbolPaused(s.symbol.clone())));
                continue;
            }
            let pending = self.pending_summary();
            let state = PortfolioState { portfolio: &self.portfolio, pending: &pending, fee_rate };
            let mut decision = self.risk.evaluate(s, &state, facts.price, now);
            match &decision {
                Decision::Approved(o) => {
                    self.pending.push(PendingOrder { id: self.next_id, request: o.clone(), bars_waited: 0 });
                    self.next_id += 1;
                }
                Decision::Modify(m) => {
                    if self.portfolio.set_exits(&m.symbol, m.stop_loss, m.take_profit).is_err() {
                        decision = Decision::Refused(Refusal::NoPosition(m.symbol.clone()));
                    }
                }
                Decision::Refused(_) => {}
            }
            out.push(decision);
        }
        out
    }

    /// Processes one bar of `symbol`: fills its eligible pending orders (in
    /// order of submission), then checks the position's stop-loss and
    /// take-profit, then marks the position at the close. A bad or stale bar
    /// is refused and changes nothing.
    pub fn on_bar(&mut self, symbol: &str, candle: &Candle) -> Result<Vec<EngineEvent>, EngineError> {
        let bad = |error| EngineError::BadBar { symbol: symbol.to_string(), ts: candle.ts, error };
        // Exact prices are needed only for this symbol's orders and position;
        // otherwise the bar is validated without converting it.
        let busy = self.portfolio.position(symbol).is_some() || self.pending.iter().any(|o| o.request.symbol == symbol);
        let bar = if busy {
            Some(Bar::from_candle(candle).map_err(bad)?)
        } else {
            Bar::validate(candle).map_err(bad)?;
            None
        };
        let ts = candle.ts;
        match self.last_bar.get_mut(symbol) {
            Some(last) if ts <= *last => {
                return Err(EngineError::StaleBar { symbol: symbol.to_string(), ts, last: *last });
            }
            Some(last) => *last = ts,
            None => {
                self.last_bar.insert(symbol.to_string(), ts);
            }
        }
        let mut events = Vec::new();
        if let Some(h) = self.risk.observe(&self.portfolio) {
            events.push(EngineEvent::Halted(h));
        }
        let Some(bar) = bar else {
            self.portfolio.mark(ts, []);
            if let Some(h) = self.risk.observe(&self.portfolio) {
                events.push(EngineEvent::Halted(h));
            }
            return Ok(events);
        };
        let mut keep = Vec::with_capacity(self.pending.len());
        for mut order in std::mem::take(&mut self.pending) {
            if order.request.symbol != symbol || order.request.decided_at > bar.ts {
                keep.push(order);
                continue;
            }
            match self.try_fill(&order, &bar, &mut events) {
                Attempt::Done => {}
                Attempt::Wait => {
                    order.bars_waited = order.bars_waited.saturating_add(1);
                    if order.bars_waited >= self.config.order_ttl_bars {
                        events.push(EngineEvent::OrderExpired { order_id: order.id, symbol: symbol.to_string() });
                    } else {
                        keep.push(order);
                    }
                }
            }
        }
        self.pending = keep;
        if let Some(pos) = self.portfolio.position(symbol) {
            if let Some((reason, price)) = exit_trigger(&self.config.fill, pos.stop_loss, pos.take_profit, &bar) {
                let qty = pos.qty;
                self.sell(None, symbol, qty, price, bar.ts, reason, None, &mut events)?;
            }
        }
        self.portfolio.mark(bar.ts, [(symbol, bar.close)]);
        if let Some(h) = self.risk.observe(&self.portfolio) {
            events.push(EngineEvent::Halted(h));
        }
        Ok(events)
    }

    /// Engages the kill switch: cancels every pending order and queues market
    /// closes of every position (reason Kill), which fill at each symbol's next bar.
    pub fn kill(&mut self, now: i64) -> Vec<EngineEvent> {
        let closes = self.risk.kill(&self.portfolio, now);
        let events = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|o| EngineEvent::OrderCancelled {
                order_id: o.id,
                symbol: o.request.symbol,
                reason: CancelReason::Killed,
            })
            .collect();
        for request in closes {
            self.pending.push(PendingOrder { id: self.next_id, request, bars_waited: 0 });
            self.next_id += 1;
        }
        events
    }

    /// A person closes `symbol`'s position at market: its pending orders are
    /// cancelled and one market close is queued (it fills on the next bar,
    /// or at the venue). None when there is no position.
    pub fn force_exit(&mut self, symbol: &str, now: i64) -> Option<(Vec<EngineEvent>, PendingOrder)> {
        let p = self.portfolio.position(symbol)?;
        let request = OrderRequest {
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
            decision_price: self.portfolio.mark_price(symbol).unwrap_or(p.avg_entry),
            close_reason: CloseReason::ForceExit,
            clipped_from: None,
        };
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|o| o.request.symbol == symbol);
        self.pending = kept;
        let events = gone
            .into_iter()
            .map(|o| EngineEvent::OrderCancelled {
                order_id: o.id,
                symbol: o.request.symbol,
                reason: CancelReason::ByCaller,
            })
            .collect();
        let order = PendingOrder { id: self.next_id, request, bars_waited: 0 };
        self.next_id += 1;
        self.pending.push(order.clone());
        Some((events, order))
    }

    /// Replaces the risk limits (the user edited risk_limits.toml); halts and
    /// the kill switch are kept.
    pub fn set_risk_config(&mut self, config: crate::risk::RiskConfig) -> Result<(), crate::risk::RiskConfigError> {
        self.risk.set_config(config)
    }

    /// Hands every pending order to the caller (live trading: the exchange
    /// fills them, not the bars); they leave the engine without an event.
    pub fn detach_pending(&mut self) -> Vec<PendingOrder> {
        std::mem::take(&mut self.pending)
    }

    /// Books an execution reported by a venue (live trading) and re-checks
    /// the halt conditions. `order_id` is the engine order it came from.
    pub fn apply_fill(&mut self, order_id: Option<u64>, fill: Fill) -> Result<Vec<EngineEvent>, EngineError> {
        let trade = self.portfolio.apply_fill(&fill)?;
        let mut events = vec![EngineEvent::Filled(FillRecord { order_id, fill, clipped_from: None })];
        if let Some(t) = trade {
            events.push(EngineEvent::PositionClosed(t));
        }
        if let Some(h) = self.risk.observe(&self.portfolio) {
            events.push(EngineEvent::Halted(h));
        }
        Ok(events)
    }

    /// Books a signed cash correction (see [`Portfolio::adjust_cash`]) and
    /// re-checks the halt conditions.
    pub fn adjust_cash(&mut self, now: i64, amount: Decimal) -> Result<Option<HaltReason>, EngineError> {
        self.portfolio.adjust_cash(now, amount)?;
        Ok(self.risk.observe(&self.portfolio))
    }

    /// Marks `symbol` at `price` at `now` without filling anything (live
    /// trading, where the venue fills) and re-checks the halt conditions.
    pub fn mark(&mut self, symbol: &str, now: i64, price: Decimal) -> Vec<EngineEvent> {
        self.portfolio.mark(now, [(symbol, price)]);
        self.risk.observe(&self.portfolio).map(EngineEvent::Halted).into_iter().collect()
    }

    /// Replaces the fee of the fill model (the venue's fee schedule changed).
    pub fn set_fee_bps(&mut self, fee_bps: Decimal) -> Result<(), EngineError> {
        let fill = FillConfig { fee_bps, ..self.config.fill };
        fill.validate()?;
        self.config.fill = fill;
        Ok(())
    }

    /// Re-evaluates the halt conditions on the account as it stands (startup
    /// after a restart); returns a newly latched halt.
    pub fn observe(&mut self) -> Option<HaltReason> {
        self.risk.observe(&self.portfolio)
    }

    /// Latches a manual halt: new entries are refused, exits still run.
    pub fn halt_manually(&mut self) -> bool {
        self.risk.halt_manually()
    }

    /// Disengages the kill switch; halts stay until resumed.
    pub fn clear_kill(&mut self) {
        self.risk.clear_kill();
    }

    /// Clears a latched halt (see [`RiskManager::resume`]).
    pub fn resume(&mut self) {
        self.risk.resume(&self.portfolio);
    }

    /// Drops one pending order.
    pub fn cancel(&mut self, order_id: u64) -> Option<EngineEvent> {
        let i = self.pending.iter().position(|o| o.id == order_id)?;
        let o = self.pending.remove(i);
        Some(EngineEvent::OrderCancelled { order_id, symbol: o.request.symbol, reason: CancelReason::ByCaller })
    }

    /// Sells every position now at `prices[symbol]` (else its last mark),
    /// less slippage, recording `reason` (e.g. EndOfData at the end of a
    /// backtest). Pending orders are left alone.
    pub fn close_all(
        &mut self,
        now: i64,
        prices: &BTreeMap<String, Decimal>,
        reason: CloseReason,
    ) -> Result<Vec<EngineEvent>, EngineError> {
        let mut events = Vec::new();
        let positions: Vec<(String, Decimal, Decimal)> = self
            .portfolio
            .positions()
            .values()
            .map(|p| {
                let px = prices.get(&p.symbol).copied().or(self.portfolio.mark_price(&p.symbol)).unwrap_or(p.avg_entry);
                (p.symbol.clone(), p.qty, px)
            })
            .collect();
        for (symbol, qty, px) in positions {
            let price = self.config.fill.slipped(OrderSide::Sell, px);
            self.sell(None, &symbol, qty, price, now, reason, None, &mut events)?;
        }
        Ok(events)
    }

    fn pending_summary(&self) -> Pending {
        let mut p = Pending::default();
        let fee = Decimal::ONE + self.config.fill.fee_rate();
        for r in self.pending.iter().map(|o| &o.request).chain(&self.resting) {
            match r.side {
                OrderSide::Buy => {
                    let sizing = r.trigger_price.map_or(r.decision_price, |t| t.max(r.decision_price));
                    let reserve = r.qty.saturating_mul(sizing).saturating_mul(fee);
                    let e = p.buys.entry(r.symbol.clone()).or_default();
                    *e = e.saturating_add(reserve);
                }
                OrderSide::Sell => {
                    let e = p.sells.entry(r.symbol.clone()).or_default();
                    *e = e.saturating_add(r.qty);
                }
            }
        }
        p
    }

    fn try_fill(&mut self, order: &PendingOrder, bar: &Bar, events: &mut Vec<EngineEvent>) -> Attempt {
        let r = &order.request;
        let cfg = self.config.fill;
        let Some(price) = order_fill_price(&cfg, r.side, r.order_type, r.trigger_price, bar) else {
            return Attempt::Wait;
        };
        let cancel = |reason| EngineEvent::OrderCancelled { order_id: order.id, symbol: r.symbol.clone(), reason };
        match r.side {
            OrderSide::Buy => {
                if self.risk.is_killed() {
                    events.push(cancel(CancelReason::Killed));
                    return Attempt::Done;
                }
                if let Some(h) = self.risk.halt() {
                    events.push(cancel(CancelReason::Halted(h)));
                    return Attempt::Done;
                }
                let open = self.portfolio.positions().len();
                let max = usize::try_from(self.risk.config().max_open_positions).unwrap_or(usize::MAX);
                if self.portfolio.position(&r.symbol).is_none() && open >= max {
                    events.push(cancel(CancelReason::MaxPositions));
                    return Attempt::Done;
                }
                let affordable = cfg.affordable_qty(self.portfolio.cash(), price);
                let (qty, clipped_from) = if affordable < r.qty {
                    (affordable, Some(Clip { requested_qty: r.qty, reason: ClipReason::Cash }))
                } else {
                    (r.qty, None)
                };
                if qty.is_zero() {
                    events.push(cancel(CancelReason::InsufficientCash));
                    return Attempt::Done;
                }
                let fill = Fill {
                    symbol: r.symbol.clone(),
                    qty,
                    price,
                    fee: cfg.fee(qty, price),
                    time: bar.ts,
                    kind: FillKind::Buy {
                        intent: r.intent,
                        stop_loss: r.stop_loss,
                        take_profit: r.take_profit,
                        tag: r.tag.clone(),
                    },
                };
                match self.portfolio.apply_fill(&fill) {
                    Ok(_) => {
                        events.push(EngineEvent::Filled(FillRecord { order_id: Some(order.id), fill, clipped_from }))
                    }
                    Err(e) => events.push(cancel(CancelReason::Rejected(e.to_string()))),
                }
            }
            OrderSide::Sell => {
                let Some(pos) = self.portfolio.position(&r.symbol) else {
                    events.push(cancel(CancelReason::NoPosition));
                    return Attempt::Done;
                };
                let (qty, clipped_from) = if r.action == Action::Close || r.qty <= pos.qty {
                    (if r.action == Action::Close { pos.qty } else { r.qty }, None)
                } else {
                    (pos.qty, Some(Clip { requested_qty: r.qty, reason: ClipReason::Position }))
                };
                let symbol = r.symbol.clone();
                if let Err(e) =
                    self.sell(Some(order.id), &symbol, qty, price, bar.ts, r.close_reason, clipped_from, events)
                {
                    events.push(cancel(CancelReason::Rejected(e.to_string())));
                }
            }
        }
        Attempt::Done
    }

    #[allow(clippy::too_many_arguments)]
    fn sell(
        &mut self,
        order_id: Option<u64>,
        symbol: &str,
        qty: Decimal,
        price: Decimal,
        time: i64,
        reason: CloseReason,
        clipped_from: Option<Clip>,
        events: &mut Vec<EngineEvent>,
    ) -> Result<(), EngineError> {
        let fill = Fill {
            symbol: symbol.to_string(),
            qty,
            price,
            fee: self.config.fill.fee(qty, price),
            time,
            kind: FillKind::Sell { reason },
        };
        let trade = self.portfolio.apply_fill(&fill)?;
        events.push(EngineEvent::Filled(FillRecord { order_id, fill, clipped_from }));
        if let Some(t) = trade {
            events.push(EngineEvent::PositionClosed(t));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::MarketData;
    use crate::risk::RiskConfig;
    use crate::types::{Intent, Interval, OrderType};
    use rust_decimal_macros::dec;
    use std::sync::Arc;

    const H: i64 = 3600;
    const T0: i64 = 1_700_000_000 - 1_700_000_000 % H; // an hour boundary

    fn engine(fee_bps: Decimal, slippage_bps: Decimal) -> Engine {
        engine_with(fee_bps, slippage_bps, dec!(50))
    }

    fn engine_with(fee_bps: Decimal, slippage_bps: Decimal, max_drawdown_pct: Decimal) -> Engine {
        let risk = RiskManager::new(RiskConfig {
            max_trade_pct: dec!(50),
            default_trade_pct: dec!(10),
            max_open_positions: 2,
            max_daily_loss_pct: dec!(50),
            max_drawdown_pct,
            max_consecutive_losses: 3,
            allowed_symbols: None,
            max_price_deviation_pct: dec!(50),
            min_order_notional: dec!(0),
        })
        .unwrap();
        let config = EngineConfig { fill: FillConfig { fee_bps, slippage_bps }, order_ttl_bars: 3 };
        Engine::new(Portfolio::new(dec!(1000)).unwrap(), risk, config).unwrap()
    }

    /// A view at `now` where each symbol's last closed hourly bar closed at `price`.
    fn view(now: i64, prices: &[(&str, f64)]) -> MarketView {
        let mut d = MarketData::new();
        for (s, p) in prices {
            d.set_series(s, Interval::H1, vec![candle(now - H, *p, *p, *p, *p)]);
        }
        MarketView::new(Arc::new(d), now)
    }

    fn candle(ts: i64, open: f64, high: f64, low: f64, close: f64) -> Candle {
        Candle { ts, open, high, low, close, volume: 1.0 }
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
            intent: Intent::Day,
            tag: "t".into(),
            confidence: 1.0,
            reasoning: String::new(),
            slippage_tolerance: None,
        }
    }

    fn fills(events: &[EngineEvent]) -> Vec<&Fill> {
        events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Filled(f) => Some(&f.fill),
                _ => None,
            })
            .collect()
    }

    /// Issue 18's property: over 10,000 seeded random signal sequences
    /// (sizes NaN, ±inf, negative, zero, subnormal, 1e308, over the maximum;
    /// stops and limits as wild), no approved entry breaks a hard limit: its
    /// value is within `max_trade_pct` of the portfolio and within free cash,
    /// the open positions stay within `max_open_positions`, and after every
    /// bar the ledger holds its invariant with cash never below zero.
    #[test]
    fn no_approved_entry_breaks_a_hard_limit_over_ten_thousand_random_sequences() {
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
            fn unit(&mut self) -> f64 {
                (self.next() >> 11) as f64 / (1u64 << 53) as f64
            }
        }
        let wild =
            [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -5.0, 0.0, 5e-324, 1e-310, 1e308, 50.0, 51.0, 100.0, 1e6];
        let mut rng = Rng(0x5EED_0018);
        let symbols = ["A", "B", "C"];
        let mut approved = 0usize;
        for _ in 0..10_000 {
            let mut e = engine_with(dec!(10), dec!(5), dec!(50));
            let mut prices: Vec<f64> = symbols.iter().map(|_| 1.0 + rng.unit() * 50_000.0).collect();
            for step in 0..4i64 {
                let now = T0 + step * H;
                let view_prices: Vec<(&str, f64)> = symbols.iter().copied().zip(prices.iter().copied()).collect();
                let v = view(now, &view_prices);
                let n = 1 + rng.below(3) as usize;
                let signals: Vec<Signal> = (0..n)
                    .map(|_| {
                        let sym = symbols[rng.below(3) as usize];
                        let action = [Action::Buy, Action::Buy, Action::Sell, Action::Close][rng.below(4) as usize];
                        let size = if rng.below(2) == 0 {
                            wild[rng.below(wild.len() as u64) as usize]
                        } else {
                            rng.unit() * 120.0
                        };
                        let mut s = sig(sym, action, size);
                        if rng.below(3) == 0 {
                            s.stop_loss = Some(wild[rng.below(wild.len() as u64) as usize]);
                        }
                        if rng.below(4) == 0 {
                            s.order_type = OrderType::Limit;
                            s.limit_price = Some(if rng.below(2) == 0 {
                                wild[rng.below(wild.len() as u64) as usize]
                            } else {
                                rng.unit() * 60_000.0
                            });
                        }
                        s
                    })
                    .collect();
                // the portfolio's value at the view's prices, before the decisions
                let p = e.portfolio();
                let mut value = p.cash();
                for (sym, pos) in p.positions() {
                    let px = view_prices.iter().find(|(s, _)| *s == sym.as_str()).map(|(_, x)| *x).unwrap();
                    value += pos.qty * Decimal::try_from(px).unwrap();
                }
                let cash = p.cash();
                let decisions = e.submit(now, &signals, &v);
                let mut spent = Decimal::ZERO;
                for d in &decisions {
                    if let Decision::Approved(o) = d {
                        if o.side != OrderSide::Buy {
                            continue;
                        }
                        approved += 1;
                        assert!(o.qty > Decimal::ZERO, "{o:?}");
                        let notional = o.qty * o.decision_price;
                        assert!(
                            notional <= value * dec!(50) / dec!(100) + dec!(0.000001),
                            "over max_trade_pct: {notional} of {value}: {o:?}"
                        );
                        spent += notional;
                        assert!(spent <= cash + dec!(0.000001), "over free cash: {spent} of {cash}");
                    }
                }
                let held: std::collections::BTreeSet<&str> = e
                    .portfolio()
                    .positions()
                    .keys()
                    .map(String::as_str)
                    .chain(
                        e.pending()
                            .iter()
                            .filter(|o| o.request.side == OrderSide::Buy)
                            .map(|o| o.request.symbol.as_str()),
                    )
                    .collect();
                assert!(held.len() <= 2, "over max_open_positions: {held:?}");
                // the next bar: prices move up to ±30%, orders fill or not
                for (k, sym) in symbols.iter().enumerate() {
                    let open = prices[k];
                    let close = (open * (0.7 + rng.unit() * 0.6)).max(0.01);
                    let (hi, lo) = (open.max(close) * 1.01, open.min(close) * 0.99);
                    e.on_bar(sym, &candle(now, open, hi, lo, close)).unwrap();
                    prices[k] = close;
                }
                e.portfolio().check_invariant().unwrap();
                assert!(e.portfolio().cash() >= Decimal::ZERO, "cash below zero: {}", e.portfolio().cash());
            }
        }
        assert!(approved > 5_000, "the sequences should approve entries: {approved}");
    }

    #[test]
    fn market_buy_fills_at_next_open_with_costs() {
        let mut e = engine(dec!(10), dec!(50));
        let d = e.submit(T0, &[sig("BTC", Action::Buy, 20.0)], &view(T0, &[("BTC", 100.0)]));
        // 20% of 1000 at 100 → 2
        assert!(matches!(&d[0], Decision::Approved(o) if o.qty == dec!(2)));
        assert_eq!(e.pending().len(), 1);
        // the bar that was already closed at decision time does not fill it
        assert!(e.on_bar("BTC", &candle(T0 - H, 100.0, 100.0, 100.0, 100.0)).unwrap().is_empty());
        let ev = e.on_bar("BTC", &candle(T0, 104.0, 106.0, 103.0, 105.0)).unwrap();
        let f = fills(&ev);
        // open 104 × 1.005 = 104.52; fee 2 × 104.52 × 0.001 = 0.20904
        assert_eq!((f[0].qty, f[0].price, f[0].fee, f[0].time), (dec!(2), dec!(104.52), dec!(0.20904), T0));
        assert_eq!(e.portfolio().cash(), dec!(1000) - dec!(209.04) - dec!(0.20904));
        // marked at the close: 2 × 105
        assert_eq!(e.portfolio().equity(), e.portfolio().cash() + dec!(210));
        assert!(e.pending().is_empty());
        e.portfolio().check_invariant().unwrap();
    }

    #[test]
    fn limit_orders_wait_fill_or_expire() {
        let mut e = engine(dec!(0), dec!(0));
        let mut s = sig("BTC", Action::Buy, 10.0);
        s.order_type = OrderType::Limit;
        s.limit_price = Some(95.0);
        let mut s2 = sig("ETH", Action::Buy, 10.0);
        s2.order_type = OrderType::Limit;
        s2.limit_price = Some(9.0);
        e.submit(T0, &[s, s2], &view(T0, &[("BTC", 100.0), ("ETH", 10.0)]));
        assert!(e.on_bar("BTC", &candle(T0, 100.0, 101.0, 96.0, 97.0)).unwrap().is_empty());
        let ev = e.on_bar("BTC", &candle(T0 + H, 97.0, 98.0, 94.0, 96.0)).unwrap();
        // 10% of 1000 at max(100, 95) = 1 unit, filled at the limit 95
        assert_eq!(fills(&ev)[0].price, dec!(95));
        assert_eq!(fills(&ev)[0].qty, dec!(1));
        // ETH never reaches 9: expires after 3 bars
        for i in 0..2 {
            assert!(e.on_bar("ETH", &candle(T0 + i * H, 10.0, 11.0, 9.5, 10.0)).unwrap().is_empty());
        }
        let ev = e.on_bar("ETH", &candle(T0 + 2 * H, 10.0, 11.0, 9.5, 10.0)).unwrap();
        assert!(matches!(&ev[0], EngineEvent::OrderExpired { symbol, .. } if symbol == "ETH"));
        assert!(e.pending().is_empty());
    }

    #[test]
    fn stop_loss_take_profit_and_modify() {
        let mut e = engine(dec!(0), dec!(0));
        let mut s = sig("BTC", Action::Buy, 10.0);
        s.stop_loss = Some(90.0);
        s.take_profit = Some(120.0);
        e.submit(T0, &[s], &view(T0, &[("BTC", 100.0)]));
        e.on_bar("BTC", &candle(T0, 100.0, 101.0, 99.0, 100.0)).unwrap();
        assert_eq!(e.portfolio().position("BTC").unwrap().stop_loss, Some(dec!(90)));
        // raise the stop to 98
        let mut m = sig("BTC", Action::Modify, 0.0);
        m.stop_loss = Some(98.0);
        let d = e.submit(T0 + H, &[m], &view(T0 + H, &[("BTC", 100.0)]));
        assert!(matches!(d[0], Decision::Modify(_)));
        // a bar touching both 98 and 120: the stop is assumed first
        let ev = e.on_bar("BTC", &candle(T0 + H, 100.0, 125.0, 97.0, 110.0)).unwrap();
        let closed: Vec<_> = ev
            .iter()
            .filter_map(|x| match x {
                EngineEvent::PositionClosed(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].close_reason, closed[0].exit_price), (CloseReason::StopLoss, dec!(98)));
        assert_eq!(closed[0].pnl, dec!(-2));
        e.portfolio().check_invariant().unwrap();
    }

    #[test]
    fn take_profit_on_a_gap_fills_at_the_open() {
        let mut e = engine(dec!(0), dec!(0));
        let mut s = sig("BTC", Action::Buy, 10.0);
        s.take_profit = Some(110.0);
        e.submit(T0, &[s], &view(T0, &[("BTC", 100.0)]));
        e.on_bar("BTC", &candle(T0, 100.0, 101.0, 99.0, 100.0)).unwrap();
        let ev = e.on_bar("BTC", &candle(T0 + H, 115.0, 116.0, 114.0, 115.0)).unwrap();
        assert!(ev.iter().any(|x| matches!(x, EngineEvent::PositionClosed(t)
            if t.close_reason == CloseReason::TakeProfit && t.exit_price == dec!(115))));
    }

    #[test]
    fn sells_and_closes_follow_the_position_at_fill_time() {
        let mut e = engine(dec!(0), dec!(0));
        e.submit(T0, &[sig("BTC", Action::Buy, 10.0)], &view(T0, &[("BTC", 100.0)]));
        e.on_bar("BTC", &candle(T0, 100.0, 100.0, 100.0, 100.0)).unwrap();
        // sell 5% of 1000 at 100 = 0.5 units, then close the rest
        let d = e.submit(T0 + H, &[sig("BTC", Action::Sell, 5.0)], &view(T0 + H, &[("BTC", 100.0)]));
        assert!(d[0].is_approved());
        let d = e.submit(T0 + H, &[sig("BTC", Action::Close, 0.0)], &view(T0 + H, &[("BTC", 100.0)]));
        assert!(matches!(&d[0], Decision::Refused(Refusal::OrderPending { .. })));
        let ev = e.on_bar("BTC", &candle(T0 + H, 100.0, 100.0, 100.0, 100.0)).unwrap();
        assert_eq!(fills(&ev)[0].qty, dec!(0.5));
        e.submit(T0 + 2 * H, &[sig("BTC", Action::Close, 0.0)], &view(T0 + 2 * H, &[("BTC", 100.0)]));
        let ev = e.on_bar("BTC", &candle(T0 + 2 * H, 100.0, 100.0, 100.0, 100.0)).unwrap();
        assert_eq!(fills(&ev)[0].qty, dec!(0.5));
        assert!(e.portfolio().positions().is_empty());
        assert_eq!(e.portfolio().closed_trades().len(), 2);
        // a Close queued for a position a stop-loss then closes is cancelled
        let mut s = sig("ETH", Action::Buy, 10.0);
        s.stop_loss = Some(9.0);
        e.submit(T0 + 2 * H, &[s], &view(T0 + 2 * H, &[("ETH", 10.0)]));
        e.on_bar("ETH", &candle(T0 + 2 * H, 10.0, 10.0, 10.0, 10.0)).unwrap();
        e.submit(T0 + 3 * H, &[sig("ETH", Action::Close, 0.0)], &view(T0 + 3 * H, &[("ETH", 10.0)]));
        // the stop triggers on a bar before the Close becomes eligible
        let ev = e.on_bar("ETH", &candle(T0 + 3 * H - 1, 10.0, 10.0, 8.0, 8.0)).unwrap();
        assert!(ev
            .iter()
            .any(|x| matches!(x, EngineEvent::PositionClosed(t) if t.close_reason == CloseReason::StopLoss)));
        let ev = e.on_bar("ETH", &candle(T0 + 3 * H, 8.0, 8.0, 8.0, 8.0)).unwrap();
        assert!(matches!(&ev[0], EngineEvent::OrderCancelled { reason: CancelReason::NoPosition, .. }));
        e.portfolio().check_invariant().unwrap();
    }

    #[test]
    fn cash_is_reserved_and_clipped_at_fill() {
        let mut e = engine(dec!(10), dec!(0));
        // two 50% buys: the second is clipped to the cash the first left unreserved
        let d = e.submit(
            T0,
            &[sig("A", Action::Buy, 50.0), sig("B", Action::Buy, 50.0)],
            &view(T0, &[("A", 10.0), ("B", 10.0)]),
        );
        let Decision::Approved(b) = &d[1] else { panic!("{d:?}") };
        // A reserves 50 × 10 × 1.001 = 500.5; B gets (499.5 − 1e-8) / 10.01 = 49.900099899... → 49.90009989
        assert_eq!(b.qty, dec!(49.90009989));
        // A gaps up 10% at the open: fills 50 @ 11 = 550 + 0.55 fee
        e.on_bar("A", &candle(T0, 11.0, 11.0, 11.0, 11.0)).unwrap();
        // B at 10: cash left 449.45 → clipped to (449.45 − 1e-8) / 10.01 = 44.900099899... → 44.90009989
        let ev = e.on_bar("B", &candle(T0, 10.0, 10.0, 10.0, 10.0)).unwrap();
        let EngineEvent::Filled(f) = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(f.fill.qty, dec!(44.90009989));
        assert_eq!(f.clipped_from.unwrap().reason, ClipReason::Cash);
        assert!(e.portfolio().cash() >= dec!(0));
        e.portfolio().check_invariant().unwrap();
    }

    #[test]
    fn kill_cancels_and_closes_everything() {
        let mut e = engine(dec!(0), dec!(0));
        e.submit(T0, &[sig("A", Action::Buy, 10.0)], &view(T0, &[("A", 10.0), ("B", 10.0)]));
        e.on_bar("A", &candle(T0, 10.0, 10.0, 10.0, 10.0)).unwrap();
        e.submit(T0 + H, &[sig("B", Action::Buy, 10.0)], &view(T0 + H, &[("A", 10.0), ("B", 10.0)]));
        let ev = e.kill(T0 + H);
        assert!(
            matches!(&ev[0], EngineEvent::OrderCancelled { reason: CancelReason::Killed, symbol, .. } if symbol == "B")
        );
        let d = e.submit(T0 + H, &[sig("B", Action::Buy, 10.0)], &view(T0 + H, &[("B", 10.0)]));
        assert_eq!(d[0], Decision::Refused(Refusal::Killed));
        let ev = e.on_bar("A", &candle(T0 + H, 9.0, 9.0, 9.0, 9.0)).unwrap();
        assert!(ev.iter().any(|x| matches!(x, EngineEvent::PositionClosed(t) if t.close_reason == CloseReason::Kill)));
        assert!(e.portfolio().positions().is_empty());
    }

    #[test]
    fn halts_cancel_entries_at_fill_time() {
        let mut e = engine_with(dec!(0), dec!(0), dec!(20));
        e.submit(T0, &[sig("A", Action::Buy, 50.0)], &view(T0, &[("A", 10.0), ("B", 10.0)]));
        e.on_bar("A", &candle(T0, 10.0, 10.0, 10.0, 10.0)).unwrap();
        e.submit(T0 + H, &[sig("B", Action::Buy, 10.0)], &view(T0 + H, &[("A", 10.0), ("B", 10.0)]));
        // A halves: equity 500 + 50 × 5 = 750, a 25% drawdown (limit 20%)
        let ev = e.on_bar("A", &candle(T0 + H, 5.0, 5.0, 5.0, 5.0)).unwrap();
        assert!(ev.iter().any(|x| matches!(x, EngineEvent::Halted(_))));
        let ev = e.on_bar("B", &candle(T0 + H, 10.0, 10.0, 10.0, 10.0)).unwrap();
        assert!(matches!(&ev[0], EngineEvent::OrderCancelled { reason: CancelReason::Halted(_), .. }));
        e.resume();
        let d = e.submit(T0 + 2 * H, &[sig("B", Action::Buy, 10.0)], &view(T0 + 2 * H, &[("A", 5.0), ("B", 10.0)]));
        assert!(d[0].is_approved());
    }

    #[test]
    fn bad_and_stale_bars_are_refused() {
        let mut e = engine(dec!(0), dec!(0));
        e.on_bar("A", &candle(T0, 10.0, 10.0, 10.0, 10.0)).unwrap();
        let before = e.clone();
        assert!(matches!(e.on_bar("A", &candle(T0 + H, f64::NAN, 1.0, 1.0, 1.0)), Err(EngineError::BadBar { .. })));
        assert!(matches!(e.on_bar("A", &candle(T0 + H, 10.0, 9.0, 11.0, 10.0)), Err(EngineError::BadBar { .. })));
        assert!(matches!(e.on_bar("A", &candle(T0, 10.0, 10.0, 10.0, 10.0)), Err(EngineError::StaleBar { .. })));
        assert_eq!(e, before);
        let d = e.submit(T0, &[sig("ZZZ", Action::Buy, 10.0)], &view(T0, &[("A", 10.0)]));
        assert_eq!(d[0], Decision::Refused(Refusal::UnknownSymbol("ZZZ".into())));
    }

    /// A paused symbol gets no new entry; its exits and the other symbols still trade.
    #[test]
    fn a_paused_symbol_refuses_entries_but_not_exits() {
        let mut e = engine(dec!(0), dec!(0));
        e.submit(T0, &[sig("A", Action::Buy, 10.0)], &view(T0, &[("A", 10.0), ("B", 5.0)]));
        e.on_bar("A", &candle(T0, 10.0, 10.0, 10.0, 10.0)).unwrap();
        assert!(e.portfolio().position("A").is_some());
        e.set_paused_symbols(BTreeSet::from(["A".to_string()]));
        let v = view(T0 + H, &[("A", 10.0), ("B", 5.0)]);
        let d = e.submit(T0 + H, &[sig("A", Action::Buy, 10.0), sig("B", Action::Buy, 10.0)], &v);
        assert_eq!(d[0], Decision::Refused(Refusal::SymbolPaused("A".into())));
        assert!(d[1].is_approved(), "{:?}", d[1]);
        let d = e.submit(T0 + H, &[sig("A", Action::Close, 100.0)], &v);
        assert!(d[0].is_approved(), "exits still run: {:?}", d[0]);
        // a force exit closes at market and cancels the symbol's pending orders
        let (cancelled, order) = e.force_exit("A", T0 + H).unwrap();
        assert_eq!(cancelled.len(), 1);
        assert_eq!(order.request.close_reason, CloseReason::ForceExit);
        assert!(e.force_exit("ZZZ", T0 + H).is_none());
    }

    #[test]
    fn close_all_and_cancel() {
        let mut e = engine(dec!(10), dec!(50));
        e.submit(T0, &[sig("A", Action::Buy, 10.0)], &view(T0, &[("A", 10.0)]));
        e.on_bar("A", &candle(T0, 10.0, 10.0, 10.0, 10.0)).unwrap();
        let mut s = sig("A", Action::Sell, 1.0);
        s.order_type = OrderType::Limit;
        s.limit_price = Some(12.0);
        e.submit(T0 + H, &[s], &view(T0 + H, &[("A", 10.0)]));
        let id = e.pending()[0].id;
        assert!(matches!(e.cancel(id), Some(EngineEvent::OrderCancelled { reason: CancelReason::ByCaller, .. })));
        assert_eq!(e.cancel(id), None);
        let ev = e.close_all(T0 + H, &BTreeMap::from([("A".to_string(), dec!(11))]), CloseReason::EndOfData).unwrap();
        // 11 × 0.995 = 10.945
        assert!(ev.iter().any(|x| matches!(x, EngineEvent::PositionClosed(t)
            if t.close_reason == CloseReason::EndOfData && t.exit_price == dec!(10.945))));
        assert!(e.portfolio().positions().is_empty());
        e.portfolio().check_invariant().unwrap();
        let j = serde_json::to_string(&ev).unwrap();
        assert!(j.contains("\"event\":\"position_closed\""));
    }

    #[test]
    fn same_inputs_same_outputs() {
        let run = || {
            let mut e = engine(dec!(10), dec!(5));
            let mut log = Vec::new();
            for i in 0..20i64 {
                let p = 100.0 + ((i * 37) % 11) as f64 - 5.0;
                let q = 50.0 + ((i * 13) % 7) as f64;
                let now = T0 + i * H;
                let action = if i % 3 == 0 { Action::Buy } else { Action::Close };
                let d = e.submit(
                    now,
                    &[sig("A", action, 20.0), sig("B", Action::Buy, 0.0)],
                    &view(now, &[("A", p), ("B", q)]),
                );
                log.push(format!("{d:?}"));
                log.push(format!("{:?}", e.on_bar("A", &candle(now, p, p + 2.0, p - 2.0, p + 1.0))));
                log.push(format!("{:?}", e.on_bar("B", &candle(now, q, q + 1.0, q - 1.0, q))));
            }
            (log, e)
        };
        let (a, ea) = run();
        let (b, eb) = run();
        assert_eq!(a, b);
        assert_eq!(ea, eb);
        ea.portfolio().check_invariant().unwrap();
    }
}
