//! Counterfactuals of refused entries (seed 004): a [`Shadow`] is an entry
//! the risk manager refused, followed bar by bar to its would-be exit with
//! the same fill model as a real position, so a report can say what the
//! limits cost (the refused trades would have won) or saved (they would have
//! lost). Pure: the caller feeds bars and the strategy's close signals.
//!
//! The rules, those of the engine: the would-be entry is a market buy on
//! the first bar whose `ts ≥ decided_at` (its open plus slippage, the fee on
//! top); on that bar and every later one the stop-loss is checked first,
//! then the take-profit ([`exit_trigger`]); a close signal from the strategy
//! at `t` sells at market on the first bar with `ts ≥ t` (before the stops of
//! that bar); once a bar opens at or after `horizon_at` the shadow sells at
//! market there (its open less slippage). P&L = exit proceeds less the exit
//! fee, minus the entry cost plus the entry fee (as the ledger's).

use crate::fill::{exit_trigger, order_fill_price, Bar, FillConfig};
use crate::portfolio::{CloseReason, OrderSide};
use crate::types::{Intent, OrderType};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How long a refused entry is followed when nothing closes it, by intent.
pub fn horizon_secs(intent: Intent) -> i64 {
    match intent {
        Intent::Day => 86_400,
        Intent::Swing => 7 * 86_400,
        Intent::Position => 30 * 86_400,
    }
}

/// Why a shadow closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowExitReason {
    /// The strategy's own close (or sell) signal.
    Signal,
    StopLoss,
    TakeProfit,
    /// Followed for its horizon without another exit.
    Horizon,
}

impl ShadowExitReason {
    pub fn name(self) -> &'static str {
        match self {
            ShadowExitReason::Signal => "signal",
            ShadowExitReason::StopLoss => "stop_loss",
            ShadowExitReason::TakeProfit => "take_profit",
            ShadowExitReason::Horizon => "horizon",
        }
    }

    pub fn parse(s: &str) -> Option<ShadowExitReason> {
        [Self::Signal, Self::StopLoss, Self::TakeProfit, Self::Horizon].into_iter().find(|r| r.name() == s)
    }
}

/// A refused entry being followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shadow {
    pub symbol: String,
    pub decided_at: i64,
    pub qty: Decimal,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub horizon_at: i64,
    /// When and at what price the would-be entry filled.
    pub entry: Option<(i64, Decimal)>,
    /// A close signal at this time: sell on the next bar.
    pub close_requested_at: Option<i64>,
}

/// Where a shadow would have exited, and its would-be P&L.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowExit {
    pub at: i64,
    pub price: Decimal,
    pub reason: ShadowExitReason,
    pub pnl: Decimal,
    /// `pnl` over the entry cost (fee included), percent.
    pub pnl_pct: Option<Decimal>,
}

impl Shadow {
    /// The strategy asked to close `symbol` at `at`.
    pub fn close_signal(&mut self, at: i64) {
        if self.close_requested_at.is_none() {
            self.close_requested_at = Some(at);
        }
    }

    /// One bar of the shadow's symbol; the exit when it closes on it.
    pub fn on_bar(&mut self, cfg: &FillConfig, bar: &Bar) -> Option<ShadowExit> {
        if bar.ts < self.decided_at {
            return None;
        }
        let entry = match self.entry {
            Some((_, p)) => p,
            None => {
                let p = order_fill_price(cfg, OrderSide::Buy, OrderType::Market, None, bar)?;
                self.entry = Some((bar.ts, p));
                p
            }
        };
        let market_sell = || cfg.slipped(OrderSide::Sell, bar.open);
        if self.close_requested_at.is_some_and(|t| bar.ts >= t) {
            return Some(self.exit(cfg, entry, bar.ts, market_sell(), ShadowExitReason::Signal));
        }
        if bar.ts >= self.horizon_at {
            return Some(self.exit(cfg, entry, bar.ts, market_sell(), ShadowExitReason::Horizon));
        }
        exit_trigger(cfg, self.stop_loss, self.take_profit, bar).map(|(reason, price)| {
            let reason = match reason {
                CloseReason::StopLoss => ShadowExitReason::StopLoss,
                _ => ShadowExitReason::TakeProfit,
            };
            self.exit(cfg, entry, bar.ts, price, reason)
        })
    }

    fn exit(&self, cfg: &FillConfig, entry: Decimal, at: i64, price: Decimal, reason: ShadowExitReason) -> ShadowExit {
        let cost = self.qty * entry + cfg.fee(self.qty, entry);
        let proceeds = self.qty * price - cfg.fee(self.qty, price);
        let pnl = proceeds - cost;
        ShadowExit { at, price, reason, pnl, pnl_pct: crate::money::pct(pnl, cost).map(|p| p.round_dp(8)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn cfg() -> FillConfig {
        // 10 bps fee, 50 bps slippage
        FillConfig { fee_bps: dec!(10), slippage_bps: dec!(50) }
    }

    fn bar(ts: i64, open: Decimal, high: Decimal, low: Decimal, close: Decimal) -> Bar {
        Bar { ts, open, high, low, close }
    }

    fn shadow() -> Shadow {
        Shadow {
            symbol: "BTC".into(),
            decided_at: 3600,
            qty: dec!(2),
            stop_loss: Some(dec!(95)),
            take_profit: Some(dec!(110)),
            horizon_at: 3600 + 86_400,
            entry: None,
            close_requested_at: None,
        }
    }

    /// By hand: entry on the bar at 3600, open 100 → 100 × 1.005 = 100.5;
    /// cost 2 × 100.5 + 0.001 × 201 = 201.201. The bar at 7200 reaches 111:
    /// the take-profit fills at max(open 104, 110) = 110; proceeds 220 − 0.22
    /// = 219.78; pnl 219.78 − 201.201 = 18.579; pct 18.579 / 201.201 × 100.
    #[test]
    fn a_refused_entry_runs_to_its_take_profit() {
        let mut s = shadow();
        assert_eq!(s.on_bar(&cfg(), &bar(0, dec!(99), dec!(100), dec!(98), dec!(100))), None, "before the decision");
        assert_eq!(s.on_bar(&cfg(), &bar(3600, dec!(100), dec!(104), dec!(99), dec!(104))), None);
        assert_eq!(s.entry, Some((3600, dec!(100.5))));
        let x = s.on_bar(&cfg(), &bar(7200, dec!(104), dec!(111), dec!(103), dec!(108))).unwrap();
        assert_eq!((x.at, x.price, x.reason), (7200, dec!(110), ShadowExitReason::TakeProfit));
        assert_eq!(x.pnl, dec!(18.579));
        assert_eq!(x.pnl_pct, Some((dec!(18.579) * dec!(100) / dec!(201.201)).round_dp(8)));
    }

    /// By hand: the stop at 95 is hit on a bar that also reaches the target:
    /// the stop wins, at min(open 100, 95) × 0.995 = 94.525; proceeds
    /// 189.05 − 0.18905 = 188.86095; pnl 188.86095 − 201.201 = −12.34005.
    #[test]
    fn a_bar_through_both_exits_takes_the_stop() {
        let mut s = shadow();
        s.on_bar(&cfg(), &bar(3600, dec!(100), dec!(101), dec!(99), dec!(100)));
        let x = s.on_bar(&cfg(), &bar(7200, dec!(100), dec!(112), dec!(90), dec!(100))).unwrap();
        assert_eq!((x.price, x.reason), (dec!(94.525), ShadowExitReason::StopLoss));
        assert_eq!(x.pnl, dec!(-12.34005));
    }

    /// By hand: a close signal at 7200 sells at the next bar's open 102 ×
    /// 0.995 = 101.49; proceeds 202.98 − 0.20298 = 202.77702; pnl 1.57602.
    /// Without stops the horizon sells: open 90 × 0.995 = 89.55, proceeds
    /// 179.1 − 0.1791 = 178.9209, pnl −22.2801.
    #[test]
    fn the_strategys_close_signal_and_the_horizon_end_a_shadow() {
        let mut s = shadow();
        s.on_bar(&cfg(), &bar(3600, dec!(100), dec!(101), dec!(99), dec!(100)));
        s.close_signal(7200);
        let x = s.on_bar(&cfg(), &bar(7200, dec!(102), dec!(103), dec!(101), dec!(102))).unwrap();
        assert_eq!((x.price, x.reason, x.pnl), (dec!(101.49), ShadowExitReason::Signal, dec!(1.57602)));
        let mut s = Shadow { stop_loss: None, take_profit: None, ..shadow() };
        s.on_bar(&cfg(), &bar(3600, dec!(100), dec!(101), dec!(99), dec!(100)));
        assert_eq!(s.on_bar(&cfg(), &bar(86_400, dec!(120), dec!(121), dec!(119), dec!(120))), None);
        let x = s.on_bar(&cfg(), &bar(3600 + 86_400, dec!(90), dec!(91), dec!(89), dec!(90))).unwrap();
        assert_eq!((x.price, x.reason, x.pnl), (dec!(89.55), ShadowExitReason::Horizon, dec!(-22.2801)));
        assert_eq!(ShadowExitReason::parse("horizon"), Some(ShadowExitReason::Horizon));
    }
}
