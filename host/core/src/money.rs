//! Exact-money helpers: converting candle and signal floats to `Decimal` via
//! their shortest round-trip text, and the crate's rounding rules (quantities
//! round down to 8 decimal places, fees round half away from zero to 8).

use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;
use thiserror::Error;

/// Decimal places kept for quantities and fees.
pub const DP: u32 = 8;

/// Decimal places kept for prices. With 8-place quantities every notional
/// has at most 18, so amounts below 1e10 always stay exact in `Decimal`'s
/// 28 significant digits.
pub const PRICE_DP: u32 = 10;

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
    if let Some(d) = short_decimal(x) {
        return Ok(d);
    }
    Decimal::from_str(&format!("{x}")).map_err(|_| NumError::Unrepresentable)
}

/// The fast path of [`to_decimal`] for prices and sizes with at most 8
/// decimals below 1e7 (every candle price): the integer `m = x·10^k` for the
/// smallest `k` with `m / 10^k == x`. In that range one ulp is below 1e-8,
/// so the decimal is the only one with `k` places that round-trips, which is
/// exactly what `{}` prints. `None` sends the caller to the exact formatter.
fn short_decimal(x: f64) -> Option<Decimal> {
    const POW: [f64; 9] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
    if x.abs() >= 1e7 {
        return None;
    }
    for (k, p) in POW.iter().enumerate() {
        let m = (x * p).round();
        if m / p == x {
            return Some(Decimal::new(m as i64, k as u32));
        }
    }
    None
}

/// A decimal as the nearest float, for reports and the module contract.
/// Correctly rounded: a mantissa below 2^53 and a power of ten up to 10^22
/// are both exact floats, so their quotient is rounded once (the fast path
/// most prices and quantities take); otherwise (wide mantissas such as an
/// equity with 18 places) the mantissa is rounded first, which is within two
/// ulps.
pub fn to_f64(d: Decimal) -> f64 {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];
    let m = d.mantissa();
    let s = d.scale() as usize;
    if m.unsigned_abs() < 1 << 53 && s <= 22 {
        return m as i64 as f64 / POW10[s];
    }
    let x = m as f64;
    match POW10.get(s) {
        Some(p) => x / p,
        None => x / POW10[22] / POW10[s - 22],
    }
}

/// Rounds a quantity down (toward zero) to 8 decimal places.
pub fn round_qty(q: Decimal) -> Decimal {
    q.round_dp_with_strategy(DP, RoundingStrategy::ToZero)
}

/// Rounds a fee to 8 decimal places, half away from zero.
pub fn round_fee(f: Decimal) -> Decimal {
    f.round_dp_with_strategy(DP, RoundingStrategy::MidpointAwayFromZero)
}

/// Rounds a price to 10 decimal places, half away from zero (this also
/// removes float noise such as `0.30000000000000004`).
pub fn round_price(p: Decimal) -> Decimal {
    p.round_dp_with_strategy(PRICE_DP, RoundingStrategy::MidpointAwayFromZero)
}

/// `a + b` only if `Decimal` can hold it without rounding.
pub fn exact_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    let r = a.checked_add(b)?;
    // adding zero returns the other operand as is; otherwise a lower scale means rounding
    (a.is_zero() || b.is_zero() || r.scale() >= a.scale().max(b.scale())).then_some(r)
}

/// `a − b` only if `Decimal` can hold it without rounding.
pub fn exact_sub(a: Decimal, b: Decimal) -> Option<Decimal> {
    exact_add(a, -b)
}

/// `a × b` only if `Decimal` can hold it without rounding.
pub fn exact_mul(a: Decimal, b: Decimal) -> Option<Decimal> {
    let (a, b) = (a.normalize(), b.normalize());
    let r = a.checked_mul(b)?;
    (r.scale() == a.scale() + b.scale()).then_some(r)
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
        assert_eq!(round_price(dec!(0.30000000000000004)), dec!(0.3));
        assert_eq!(round_price(dec!(0.00001234617)), dec!(0.0000123462));
    }

    #[test]
    fn exact_arithmetic_refuses_rounding() {
        assert_eq!(exact_add(dec!(1.5), dec!(1.5)), Some(dec!(3.0)));
        assert_eq!(exact_sub(dec!(1.5), dec!(1.5)), Some(dec!(0)));
        assert_eq!(exact_mul(dec!(1.50), dec!(2.0)), Some(dec!(3)));
        assert_eq!(exact_add(dec!(0.00), dec!(-10)), Some(dec!(-10)));
        assert_eq!(exact_sub(dec!(10), dec!(0.000)), Some(dec!(10)));
        assert_eq!(exact_mul(dec!(0.12345678), dec!(65000.1234567891)), Some(dec!(8024.705941577651425098)));
        // 1e10 + 1e-20 needs 31 digits
        assert_eq!(exact_add(dec!(10000000000), dec!(0.00000000000000000001)), None);
        // 0.1234567890123456 × 0.123456789012345 has 31 places
        assert_eq!(exact_mul(dec!(0.1234567890123456), dec!(0.123456789012345)), None);
        assert_eq!(exact_mul(Decimal::MAX, dec!(2)), None);
        assert_eq!(exact_add(Decimal::MAX, dec!(1)), None);
    }
}
