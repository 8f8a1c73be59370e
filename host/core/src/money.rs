//! Exact-money helpers: converting candle and signal floats to `Decimal` via
//! their shortest round-trip text, and the crate's rounding rules (quantities
//! round down to 8 decimal places, fees round half away from zero to 8).

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;
use thiserror::Error;

/// Decimal places kept for quantities and fees.
pub const DP: u32 = 8;

/// Largest magnitude accepted from a float (1e15): bigger prices, sizes or
/// amounts are treated as bad input, which keeps every product far inside
/// `Decimal`'s range.
pub const MAX_ABS: f64 = 1e15;

/// One unit in the 8th decimal place.
pub const TICK: Decimal = Decimal::from_parts(1, 0, 0, false, DP);

/// Why a float could not become a `Decimal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NumError {
    #[error("not a finite number")]
    NonFinite,
    #[error("magnitude above 1e15")]
    OutOfRange,
    #[error("not representable as a decimal")]
    Unrepresentable,
}

/// Converts a float to the decimal it prints as (Rust's `{}` is the shortest
/// text that round-trips), refusing NaN, infinities and magnitudes above
/// [`MAX_ABS`].
pub fn to_decimal(x: f64) -> Result<Decimal, NumError> {
    if !x.is_finite() {
        return Err(NumError::NonFinite);
    }
    if x.abs() > MAX_ABS {
        return Err(NumError::OutOfRange);
    }
    Decimal::from_str(&format!("{x}")).map_err(|_| NumError::Unrepresentable)
}

/// A decimal as the nearest float, for reports and the module contract.
pub fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Rounds a quantity down (toward zero) to 8 decimal places.
pub fn round_qty(q: Decimal) -> Decimal {
    q.round_dp_with_strategy(DP, RoundingStrategy::ToZero)
}

/// Rounds a fee to 8 decimal places, half away from zero.
pub fn round_fee(f: Decimal) -> Decimal {
    f.round_dp_with_strategy(DP, RoundingStrategy::MidpointAwayFromZero)
}

/// Basis points as a rate: 25 bps → 0.0025.
pub fn bps(b: Decimal) -> Decimal {
    b / Decimal::from(10_000)
}

/// `part / whole × 100`, or `None` when `whole` is zero.
pub fn pct(part: Decimal, whole: Decimal) -> Option<Decimal> {
    part.checked_mul(Decimal::ONE_HUNDRED)?.checked_div(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn floats_convert_by_shortest_text() {
        assert_eq!(to_decimal(0.1).unwrap(), dec!(0.1));
        assert_eq!(to_decimal(65_000.25).unwrap(), dec!(65000.25));
        assert_eq!(to_decimal(1e-7).unwrap(), dec!(0.0000001));
        assert_eq!(to_decimal(-3.5).unwrap(), dec!(-3.5));
        assert_eq!(to_decimal(0.1 + 0.2).unwrap(), dec!(0.30000000000000004));
    }

    #[test]
    fn bad_floats_are_refused() {
        assert_eq!(to_decimal(f64::NAN), Err(NumError::NonFinite));
        assert_eq!(to_decimal(f64::INFINITY), Err(NumError::NonFinite));
        assert_eq!(to_decimal(f64::NEG_INFINITY), Err(NumError::NonFinite));
        assert_eq!(to_decimal(1e16), Err(NumError::OutOfRange));
        // subnormals have hundreds of digits: either refused or rounded, never a panic
        assert!(to_decimal(5e-324).map_or(true, |d| d.is_zero()));
    }

    #[test]
    fn rounding_rules() {
        assert_eq!(round_qty(dec!(1.123456789)), dec!(1.12345678));
        assert_eq!(round_qty(dec!(0.999999999)), dec!(0.99999999));
        assert_eq!(round_fee(dec!(0.000000005)), dec!(0.00000001));
        assert_eq!(round_fee(dec!(0.0000000049)), dec!(0));
        assert_eq!(bps(dec!(25)), dec!(0.0025));
        assert_eq!(TICK, dec!(0.00000001));
        assert_eq!(pct(dec!(5), dec!(200)), Some(dec!(2.5)));
        assert_eq!(pct(dec!(5), Decimal::ZERO), None);
        assert_eq!(to_f64(dec!(1.5)), 1.5);
    }
}
