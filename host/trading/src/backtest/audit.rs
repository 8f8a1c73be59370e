//! An independent audit of the risk limits during a backtest: the engine and
//! risk manager are supposed to make these impossible, and this checks, bar by
//! bar, that they did. Checked: every approved entry's notional (quantity at
//! its sizing price) is within `max_trade_pct` of the portfolio value when it
//! was decided; no more positions are open than `max_open_positions`; cash
//! never goes negative; an entry never fills above its approved quantity; no
//! entry fills while a halt or the kill switch was latched. (Adding to a
//! position is a new entry with its own limit; the cumulative position is not
//! a configured limit.)

use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use trading_core::engine::{Engine, EngineEvent};
use trading_core::risk::Decision;
use trading_core::{FillKind, OrderSide};

/// One broken risk limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub ts: i64,
    /// The limit: `max_trade_pct`, `max_open_positions`, `cash`,
    /// `approved_qty` or `halted`.
    pub limit: String,
    pub detail: String,
}

/// Breaches kept in detail; more are only counted.
pub const MAX_KEPT: usize = 100;

/// Watches one simulated account.
#[derive(Debug, Default)]
pub(super) struct Auditor {
    pub breaches: Vec<Breach>,
    pub count: u64,
    approved_buys: BTreeMap<String, Decimal>,
    halted_before_bar: bool,
}

impl Auditor {
    fn breach(&mut self, ts: i64, limit: &str, detail: String) {
        self.count += 1;
        if self.breaches.len() >= MAX_KEPT {
            return;
        }
        self.breaches.push(Breach {
            ts,
            limit: limit.to_string(),
            detail,
        });
    }

    /// Checks the entries approved at `t`; `equity` is the value they were sized on.
    pub fn decisions(&mut self, t: i64, engine: &Engine, equity: Decimal, decisions: &[Decision]) {
        let max_pct = engine.risk().config().max_trade_pct;
        let budget = || equity * max_pct / Decimal::ONE_HUNDRED;
        for d in decisions {
            let Decision::Approved(r) = d else { continue };
            if r.side != OrderSide::Buy {
                continue;
            }
            let sizing = r
                .trigger_price
                .unwrap_or(r.decision_price)
                .max(r.decision_price);
            let notional = r.qty.saturating_mul(sizing);
            if notional > budget() {
                self.breach(
                    t,
                    "max_trade_pct",
                    format!(
                        "{} entry of {} at {} = {} exceeds {}% of {}",
                        r.symbol, r.qty, sizing, notional, max_pct, equity
                    ),
                );
            }
            self.approved_buys.insert(r.symbol.clone(), r.qty);
        }
        self.state(t, engine);
    }

    /// Call before a bar goes to the engine.
    pub fn before_bar(&mut self, engine: &Engine) {
        self.halted_before_bar = engine.risk().halt().is_some() || engine.risk().is_killed();
    }

    /// Checks what one bar did.
    pub fn after_bar(&mut self, t: i64, engine: &Engine, events: &[EngineEvent]) {
        for ev in events {
            let EngineEvent::Filled(rec) = ev else {
                continue;
            };
            if !matches!(rec.fill.kind, FillKind::Buy { .. }) {
                continue;
            }
            let sym = &rec.fill.symbol;
            match self.approved_buys.remove(sym) {
                Some(q) if rec.fill.qty <= q => {}
                Some(q) => self.breach(
                    t,
                    "approved_qty",
                    format!("{sym} filled {} above the approved {q}", rec.fill.qty),
                ),
                None => self.breach(
                    t,
                    "approved_qty",
                    format!("{sym} filled {} with no approved entry", rec.fill.qty),
                ),
            }
            if self.halted_before_bar {
                self.breach(
                    t,
                    "halted",
                    format!("{sym} entry filled while trading was halted"),
                );
            }
        }
        self.state(t, engine);
    }

    fn state(&mut self, t: i64, engine: &Engine) {
        let p = engine.portfolio();
        let max = engine.risk().config().max_open_positions as usize;
        if p.positions().len() > max {
            self.breach(
                t,
                "max_open_positions",
                format!("{} positions open, limit {max}", p.positions().len()),
            );
        }
        if p.cash() < Decimal::ZERO {
            self.breach(t, "cash", format!("cash {} is negative", p.cash()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use trading_core::risk::{RiskConfig, RiskManager};
    use trading_core::{
        Action, CloseReason, EngineConfig, Intent, OrderRequest, OrderType, Portfolio,
    };

    fn engine() -> Engine {
        let cfg = RiskConfig {
            max_trade_pct: dec!(10),
            default_trade_pct: dec!(5),
            max_open_positions: 2,
            ..RiskConfig::default()
        };
        Engine::new(
            Portfolio::new(dec!(10000)).unwrap(),
            RiskManager::new(cfg).unwrap(),
            EngineConfig::default(),
        )
        .unwrap()
    }

    fn buy(qty: Decimal, price: Decimal) -> Decision {
        Decision::Approved(OrderRequest {
            symbol: "BTCUSD".into(),
            action: Action::Buy,
            side: OrderSide::Buy,
            order_type: OrderType::Market,
            qty,
            trigger_price: None,
            stop_loss: None,
            take_profit: None,
            intent: Intent::Swing,
            tag: String::new(),
            decided_at: 0,
            decision_price: price,
            close_reason: CloseReason::Signal,
            clipped_from: None,
        })
    }

    #[test]
    fn flags_an_entry_above_max_trade_pct_and_an_unapproved_fill() {
        let e = engine();
        let mut a = Auditor::default();
        // 10% of 10 000 at 100 is exactly 10 units: allowed
        a.decisions(1, &e, dec!(10000), &[buy(dec!(10), dec!(100))]);
        assert!(a.breaches.is_empty());
        a.decisions(2, &e, dec!(10000), &[buy(dec!(10.00000001), dec!(100))]);
        assert_eq!(a.count, 1);
        assert_eq!(a.breaches[0].limit, "max_trade_pct");
        assert_eq!(a.breaches[0].ts, 2);
    }
}
