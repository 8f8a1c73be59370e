//! The fill model shared by backtests and paper trading. A market order
//! decided at the close of bar t fills at the OPEN of bar t+1, moved against
//! the trader by `slippage_bps` (buy: open·(1+s), sell: open·(1−s)). Fees are
//! `fee_bps` of notional (qty·price), charged in quote currency and rounded
//! half away from zero to 8 decimal places; quantities round down to 8. A
//! limit buy fills when the bar's low ≤ limit, at the limit, or at the open if
//! the bar opens below it; a limit sell fills when high ≥ limit, at the limit
//! or at a higher open. A stop buy fills when high ≥ stop, at the stop or at a
//! higher open, plus slippage; a stop sell fills when low ≤ stop, at the stop
//! or at a lower open, minus slippage. Limits never slip. The stop-loss and
//! take-profit of an open position are checked on every bar's high and low,
//! starting with the bar it was filled on; when both are touched in one bar
//! the stop is assumed to have hit first; the stop-loss exits like a stop sell
//! (a gap through it fills at the open, minus slippage) and the take-profit
//! like a limit sell. Orders are sized by `size_pct` of portfolio value marked
//! at the decision price, clipped by the risk limits and by cash; a buy is
//! clipped again at fill time to what cash can pay, fee included. Prices are
//! kept to 10 decimal places: candle, limit and stop prices round to the
//! nearest, slipped prices round against the trader.

use crate::money::{self, bps, round_fee, round_price, round_qty, PRICE_DP, TICK};
use crate::portfolio::{CloseReason, OrderSide};
use crate::types::{Candle, OrderType};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Costs of trading, in basis points (1 bp = 0.01%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillConfig {
    pub fee_bps: Decimal,
    pub slippage_bps: Decimal,
}

impl Default for FillConfig {
    /// 10 bps fee, 5 bps slippage.
    fn default() -> Self {
        FillConfig { fee_bps: Decimal::TEN, slippage_bps: Decimal::from(5) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FillConfigError {
    #[error("{field} must be in [0, 10000) bps, got {value}")]
    OutOfRange { field: &'static str, value: Decimal },
}

impl FillConfig {
    /// Both costs must lie in [0, 10000) bps.
    pub fn validate(&self) -> Result<(), FillConfigError> {
        for (field, value) in [("fee_bps", self.fee_bps), ("slippage_bps", self.slippage_bps)] {
            if value < Decimal::ZERO || value >= Decimal::from(10_000) {
                return Err(FillConfigError::OutOfRange { field, value });
            }
        }
        Ok(())
    }

    pub fn fee_rate(&self) -> Decimal {
        bps(self.fee_bps)
    }

    pub fn slippage_rate(&self) -> Decimal {
        bps(self.slippage_bps)
    }

    /// `round8(qty × price × fee_rate)`.
    pub fn fee(&self, qty: Decimal, price: Decimal) -> Decimal {
        round_fee(qty.saturating_mul(price).saturating_mul(self.fee_rate()))
    }

    /// `price` moved against the trader: ×(1+s) for a buy, ×(1−s) for a
    /// sell, rounded to 10 places against the trader too (buys up, sells down).
    pub fn slipped(&self, side: OrderSide, price: Decimal) -> Decimal {
        let s = self.slippage_rate();
        match side {
            OrderSide::Buy => {
                price.saturating_mul(Decimal::ONE + s).round_dp_with_strategy(PRICE_DP, RoundingStrategy::AwayFromZero)
            }
            OrderSide::Sell => {
                price.saturating_mul(Decimal::ONE - s).round_dp_with_strategy(PRICE_DP, RoundingStrategy::ToZero)
            }
        }
    }

    /// The largest 8-place quantity whose cost at `price`, fee included, fits
    /// in `cash`: `floor8((cash − 1e-8) / (price × (1 + fee_rate)))`. The
    /// 1e-8 margin absorbs the fee's rounding.
    pub fn affordable_qty(&self, cash: Decimal, price: Decimal) -> Decimal {
        affordable_qty(cash, price, self.fee_rate())
    }
}

/// See [`FillConfig::affordable_qty`].
pub fn affordable_qty(cash: Decimal, price: Decimal, fee_rate: Decimal) -> Decimal {
    let unit = price.saturating_mul(Decimal::ONE + fee_rate);
    if cash <= TICK || unit <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (cash - TICK).checked_div(unit).map_or(Decimal::ZERO, round_qty)
}

/// `floor8(value × pct / 100 / price)`: the quantity worth `pct`% of `value`.
pub fn size_qty(value: Decimal, pct: Decimal, price: Decimal) -> Decimal {
    if value <= Decimal::ZERO || pct <= Decimal::ZERO || price <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    value
        .checked_mul(pct)
        .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
        .and_then(|v| v.checked_div(price))
        .map_or(Decimal::ZERO, round_qty)
}

/// A candle in exact prices, checked for sanity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub ts: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BarError {
    #[error("{field} is not a usable number: {error}")]
    BadNumber { field: &'static str, error: money::NumError },
    #[error("{field} must be positive")]
    NonPositive { field: &'static str },
    #[error("high below low, or open/close outside [low, high]")]
    Inconsistent,
}

impl Bar {
    /// Checks `c` exactly as [`Bar::from_candle`] does, converting nothing
    /// when every price is ordered and in `[1e-6, 1e7)`, a range where the
    /// conversion always succeeds and never rounds to zero.
    pub fn validate(c: &Candle) -> Result<(), BarError> {
        let usual = |x: f64| (1e-6..1e7).contains(&x);
        let ordered = c.low <= c.open && c.open <= c.high && c.low <= c.close && c.close <= c.high;
        if ordered && usual(c.open) && usual(c.high) && usual(c.low) && usual(c.close) {
            return Ok(());
        }
        Bar::from_candle(c).map(|_| ())
    }

    /// Converts a float candle (prices rounded to 10 places), refusing
    /// non-finite or non-positive prices and a high/low range that does not
    /// contain the open and close.
    pub fn from_candle(c: &Candle) -> Result<Bar, BarError> {
        let conv = |field: &'static str, x: f64| -> Result<Decimal, BarError> {
            let d = money::to_decimal(x).map_err(|error| BarError::BadNumber { field, error })?;
            let d = if d.scale() > money::PRICE_DP { round_price(d) } else { d };
            if d.is_sign_negative() || d.is_zero() {
                return Err(BarError::NonPositive { field });
            }
            Ok(d)
        };
        let bar = Bar {
            ts: c.ts,
            open: conv("open", c.open)?,
            high: conv("high", c.high)?,
            low: conv("low", c.low)?,
            close: conv("close", c.close)?,
        };
        // Conversion and rounding are monotonic, so floats in order give
        // decimals in order; only floats out of order need the exact check
        // (they may still round to equal prices).
        let inside_f = |p: f64| c.low <= p && p <= c.high;
        if inside_f(c.open) && inside_f(c.close) {
            return Ok(bar);
        }
        let inside = |p: Decimal| bar.low <= p && p <= bar.high;
        if bar.high < bar.low || !inside(bar.open) || !inside(bar.close) {
            return Err(BarError::Inconsistent);
        }
        Ok(bar)
    }
}

/// Where an order fills on `bar`, or `None` if it does not. `trigger` is the
/// limit price of a limit order and the stop price of a stop order (ignored
/// for market orders; a limit or stop order without one never fills).
pub fn order_fill_price(
    cfg: &FillConfig,
    side: OrderSide,
    order_type: OrderType,
    trigger: Option<Decimal>,
    bar: &Bar,
) -> Option<Decimal> {
    match (order_type, side) {
        (OrderType::Market, _) => Some(cfg.slipped(side, bar.open)),
        (OrderType::Limit, OrderSide::Buy) => trigger.filter(|l| bar.low <= *l).map(|l| bar.open.min(l)),
        (OrderType::Limit, OrderSide::Sell) => trigger.filter(|l| bar.high >= *l).map(|l| bar.open.max(l)),
        (OrderType::Stop, OrderSide::Buy) => {
            trigger.filter(|s| bar.high >= *s).map(|s| cfg.slipped(OrderSide::Buy, bar.open.max(s)))
        }
        (OrderType::Stop, OrderSide::Sell) => {
            trigger.filter(|s| bar.low <= *s).map(|s| cfg.slipped(OrderSide::Sell, bar.open.min(s)))
        }
    }
}

/// Whether a long with these exits closes on `bar`, and at what price: the
/// stop-loss first (at `min(open, stop)` less slippage), else the take-profit
/// (at `max(open, target)`).
pub fn exit_trigger(
    cfg: &FillConfig,
    stop_loss: Option<Decimal>,
    take_profit: Option<Decimal>,
    bar: &Bar,
) -> Option<(CloseReason, Decimal)> {
    if let Some(sl) = stop_loss.filter(|sl| bar.low <= *sl) {
        return Some((CloseReason::StopLoss, cfg.slipped(OrderSide::Sell, bar.open.min(sl))));
    }
    take_profit.filter(|tp| bar.high >= *tp).map(|tp| (CloseReason::TakeProfit, bar.open.max(tp)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn cfg() -> FillConfig {
        // 10 bps fee, 50 bps slippage
        FillConfig { fee_bps: dec!(10), slippage_bps: dec!(50) }
    }

    fn bar(open: Decimal, high: Decimal, low: Decimal, close: Decimal) -> Bar {
        Bar { ts: 0, open, high, low, close }
    }

    #[test]
    fn market_orders_fill_at_open_with_slippage() {
        let b = bar(dec!(100), dec!(110), dec!(90), dec!(105));
        assert_eq!(order_fill_price(&cfg(), OrderSide::Buy, OrderType::Market, None, &b), Some(dec!(100.5)));
        assert_eq!(order_fill_price(&cfg(), OrderSide::Sell, OrderType::Market, None, &b), Some(dec!(99.5)));
    }

    #[test]
    fn fees_are_bps_of_notional_rounded_to_8dp() {
        // 3 × 100.5 = 301.5; × 0.001 = 0.3015
        assert_eq!(cfg().fee(dec!(3), dec!(100.5)), dec!(0.3015));
        // 0.00000003 × 0.15 × 0.001 = 0.0000000000045 → 0
        assert_eq!(cfg().fee(dec!(0.00000003), dec!(0.15)), dec!(0));
        // 0.123 × 0.0405 × 0.001 = 0.0000049815 → 0.00000498
        assert_eq!(cfg().fee(dec!(0.123), dec!(0.0405)), dec!(0.00000498));
    }

    #[test]
    fn limit_orders() {
        let b = bar(dec!(100), dec!(110), dec!(90), dec!(105));
        let px = |side, l| order_fill_price(&cfg(), side, OrderType::Limit, Some(l), &b);
        assert_eq!(px(OrderSide::Buy, dec!(95)), Some(dec!(95)));
        assert_eq!(px(OrderSide::Buy, dec!(90)), Some(dec!(90)));
        assert_eq!(px(OrderSide::Buy, dec!(89.99)), None);
        // the bar opens below a buy limit: fills at the better open
        assert_eq!(px(OrderSide::Buy, dec!(102)), Some(dec!(100)));
        assert_eq!(px(OrderSide::Sell, dec!(108)), Some(dec!(108)));
        assert_eq!(px(OrderSide::Sell, dec!(110.01)), None);
        assert_eq!(px(OrderSide::Sell, dec!(97)), Some(dec!(100)));
        assert_eq!(order_fill_price(&cfg(), OrderSide::Buy, OrderType::Limit, None, &b), None);
    }

    #[test]
    fn stop_orders() {
        let b = bar(dec!(100), dec!(110), dec!(90), dec!(105));
        let px = |side, s| order_fill_price(&cfg(), side, OrderType::Stop, Some(s), &b);
        // stop buy at 105: 105 × 1.005
        assert_eq!(px(OrderSide::Buy, dec!(105)), Some(dec!(105.525)));
        assert_eq!(px(OrderSide::Buy, dec!(111)), None);
        // gapped above the stop: open 100 × 1.005
        assert_eq!(px(OrderSide::Buy, dec!(98)), Some(dec!(100.5)));
        // stop sell at 95: 95 × 0.995
        assert_eq!(px(OrderSide::Sell, dec!(95)), Some(dec!(94.525)));
        assert_eq!(px(OrderSide::Sell, dec!(89)), None);
        // gapped below the stop: open 100 × 0.995
        assert_eq!(px(OrderSide::Sell, dec!(102)), Some(dec!(99.5)));
    }

    #[test]
    fn stop_loss_and_take_profit() {
        let c = cfg();
        let b = bar(dec!(100), dec!(110), dec!(90), dec!(105));
        // both touched: stop first, 95 × 0.995
        assert_eq!(exit_trigger(&c, Some(dec!(95)), Some(dec!(108)), &b), Some((CloseReason::StopLoss, dec!(94.525))));
        assert_eq!(exit_trigger(&c, Some(dec!(85)), Some(dec!(108)), &b), Some((CloseReason::TakeProfit, dec!(108))));
        assert_eq!(exit_trigger(&c, Some(dec!(85)), Some(dec!(120)), &b), None);
        assert_eq!(exit_trigger(&c, None, None, &b), None);
        // gap down through the stop: open 80 × 0.995
        let gap = bar(dec!(80), dec!(82), dec!(79), dec!(81));
        assert_eq!(exit_trigger(&c, Some(dec!(95)), None, &gap), Some((CloseReason::StopLoss, dec!(79.6))));
        // gap up through the target: fills at the open
        let up = bar(dec!(130), dec!(131), dec!(125), dec!(126));
        assert_eq!(exit_trigger(&c, Some(dec!(95)), Some(dec!(120)), &up), Some((CloseReason::TakeProfit, dec!(130))));
    }

    #[test]
    fn sizing_and_affordability() {
        // 10% of 1000 at 3 → 33.33333333
        assert_eq!(size_qty(dec!(1000), dec!(10), dec!(3)), dec!(33.33333333));
        assert_eq!(size_qty(dec!(1000), dec!(0), dec!(3)), dec!(0));
        assert_eq!(size_qty(dec!(1000), dec!(10), dec!(0)), dec!(0));
        let c = cfg();
        // (100 − 1e-8) / (10 × 1.001) = 9.9900099890... → 9.99000998
        let q = c.affordable_qty(dec!(100), dec!(10));
        assert_eq!(q, dec!(9.99000998));
        assert!(q * dec!(10) + c.fee(q, dec!(10)) <= dec!(100));
        assert_eq!(c.affordable_qty(dec!(0), dec!(10)), dec!(0));
        assert_eq!(c.affordable_qty(dec!(100), dec!(0)), dec!(0));
    }

    #[test]
    fn prices_keep_ten_places() {
        let c = cfg();
        // 0.0000123461 × 1.005 = 0.0000124078305 → up 0.0000124079; × 0.995 = 0.0000122843695 → down 0.0000122843
        assert_eq!(c.slipped(OrderSide::Buy, dec!(0.0000123461)), dec!(0.0000124079));
        assert_eq!(c.slipped(OrderSide::Sell, dec!(0.0000123461)), dec!(0.0000122843));
        let noisy = Candle { ts: 0, open: 0.1 + 0.2, high: 0.4, low: 0.1, close: 0.3, volume: 0.0 };
        assert_eq!(Bar::from_candle(&noisy).unwrap().open, dec!(0.3));
        let tiny = Candle { ts: 0, open: 1e-11, high: 1e-11, low: 1e-11, close: 1e-11, volume: 0.0 };
        assert!(matches!(Bar::from_candle(&tiny), Err(BarError::NonPositive { field: "open" })));
    }

    #[test]
    fn bars_are_checked() {
        let ok = Candle { ts: 5, open: 1.5, high: 2.0, low: 1.0, close: 1.25, volume: 3.0 };
        let b = Bar::from_candle(&ok).unwrap();
        assert_eq!((b.ts, b.open, b.high, b.low, b.close), (5, dec!(1.5), dec!(2), dec!(1), dec!(1.25)));
        let bad = |c: Candle| Bar::from_candle(&c).unwrap_err();
        assert!(matches!(bad(Candle { open: f64::NAN, ..ok }), BarError::BadNumber { field: "open", .. }));
        assert!(matches!(bad(Candle { low: 0.0, ..ok }), BarError::NonPositive { field: "low" }));
        assert_eq!(bad(Candle { high: 0.5, ..ok }), BarError::Inconsistent);
        assert_eq!(bad(Candle { close: 2.5, ..ok }), BarError::Inconsistent);
    }

    #[test]
    fn config_validation() {
        assert!(cfg().validate().is_ok());
        assert!(FillConfig::default().validate().is_ok());
        assert!(FillConfig { fee_bps: dec!(-1), ..cfg() }.validate().is_err());
        assert!(FillConfig { slippage_bps: dec!(10000), ..cfg() }.validate().is_err());
    }
}
