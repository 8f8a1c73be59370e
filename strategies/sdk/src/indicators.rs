//! Technical indicators over closes and candles.
//!
//! Every function looks at a slice ordered oldest first and returns the value
//! at its *last* element, or `None` when the slice is too short, a period is
//! zero, or the result is not a finite number (a NaN or infinite input never
//! comes back as a number). Series helpers (`*_series`) return one value per
//! bar from the first bar where the indicator is defined.

use crate::Candle;

/// Closing prices of `candles`, in order.
pub fn closes(candles: &[Candle]) -> Vec<f64> {
    candles.iter().map(|c| c.close).collect()
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Simple moving average of the last `n` values.
pub fn sma(values: &[f64], n: usize) -> Option<f64> {
    if n == 0 || values.len() < n {
        return None;
    }
    finite(sum(&values[values.len() - n..]) / n as f64)
}

/// Simple moving averages of `n` values ending at the second-to-last and
/// at the last value, `(previous, last)`: what a crossover compares. Their
/// `n - 1` shared values are summed once. `None` with fewer than `n + 1`
/// values.
pub fn sma_prev_last(values: &[f64], n: usize) -> Option<(f64, f64)> {
    let len = values.len();
    if n == 0 || len < n + 1 {
        return None;
    }
    let shared = sum(&values[len - n..len - 1]);
    let k = n as f64;
    Some((finite((shared + values[len - 1 - n]) / k)?, finite((shared + values[len - 1]) / k)?))
}

/// Sum in four independent lanes (then combined pairwise), eight values per
/// loop step: short dependency chains and few loop steps, which is what
/// makes indicators cheap inside the fuel-metered sandbox (every loop step
/// pays a fuel and a deadline check there). The lanes are four locals, never
/// an array: an indexed array lives in the sandbox's memory, not registers.
pub fn sum(values: &[f64]) -> f64 {
    let (mut l0, mut l1, mut l2, mut l3) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        l0 += c[0] + c[4];
        l1 += c[1] + c[5];
        l2 += c[2] + c[6];
        l3 += c[3] + c[7];
    }
    let mut rest = chunks.remainder();
    if let [a, b, c, d, tail @ ..] = rest {
        l0 += a;
        l1 += b;
        l2 += c;
        l3 += d;
        rest = tail;
    }
    match rest {
        [a] => l0 += a,
        [a, b] => {
            l0 += a;
            l1 += b;
        }
        [a, b, c] => {
            l0 += a;
            l1 += b;
            l2 += c;
        }
        _ => {}
    }
    (l0 + l1) + (l2 + l3)
}

/// Pearson correlation of two equally long series (at least three values);
/// `None` when either series is constant.
pub fn correlation(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// Exponential moving average series with `alpha = 2 / (n + 1)`, seeded with
/// the SMA of the first `n` values. Element `i` is the EMA at `values[i + n - 1]`;
/// empty when there are fewer than `n` values.
pub fn ema_series(values: &[f64], n: usize) -> Vec<f64> {
    if n == 0 || values.len() < n {
        return Vec::new();
    }
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut e = sum(&values[..n]) / n as f64;
    let mut out = Vec::with_capacity(values.len() - n + 1);
    out.push(e);
    for &v in &values[n..] {
        e = alpha * v + (1.0 - alpha) * e;
        out.push(e);
    }
    out
}

/// Exponential moving average at the last value (see [`ema_series`]).
pub fn ema(values: &[f64], n: usize) -> Option<f64> {
    ema_series(values, n).last().copied().and_then(finite)
}

fn rsi_from(avg_gain: f64, avg_loss: f64) -> f64 {
    if avg_loss == 0.0 {
        // No losses: all gains is 100; a perfectly flat window is neutral.
        if avg_gain == 0.0 {
            50.0
        } else {
            100.0
        }
    } else {
        100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    }
}

/// Relative strength index with Wilder's smoothing: the first average gain and
/// loss are plain means of the first `n` changes, later ones
/// `avg = (avg * (n - 1) + x) / n`. Needs `n + 1` closes. A window without
/// losses gives 100, a flat one 50.
pub fn rsi(closes: &[f64], n: usize) -> Option<f64> {
    if n == 0 || closes.len() < n + 1 {
        return None;
    }
    let nf = n as f64;
    let (mut gain, mut loss) = (0.0, 0.0);
    for w in closes[..=n].windows(2) {
        let d = w[1] - w[0];
        if d > 0.0 {
            gain += d;
        } else {
            loss -= d;
        }
    }
    gain /= nf;
    loss /= nf;
    for w in closes[n..].windows(2) {
        let d = w[1] - w[0];
        gain = (gain * (nf - 1.0) + d.max(0.0)) / nf;
        loss = (loss * (nf - 1.0) + (-d).max(0.0)) / nf;
    }
    finite(rsi_from(gain, loss))
}

/// True range of `c`: the largest of high − low, |high − previous close| and
/// |low − previous close|; just high − low without a previous close.
pub fn true_range(c: &Candle, prev_close: Option<f64>) -> f64 {
    let hl = c.high - c.low;
    match prev_close {
        Some(p) => hl.max((c.high - p).abs()).max((c.low - p).abs()),
        None => hl,
    }
}

/// Average true range with Wilder's smoothing: the first ATR is the mean of
/// the first `n` true ranges (the very first bar's is high − low), later ones
/// `atr = (atr * (n - 1) + tr) / n`. Needs `n` candles.
pub fn atr(candles: &[Candle], n: usize) -> Option<f64> {
    if n == 0 || candles.len() < n {
        return None;
    }
    let nf = n as f64;
    let tr = |i: usize| true_range(&candles[i], i.checked_sub(1).map(|p| candles[p].close));
    let mut a = (0..n).map(tr).sum::<f64>() / nf;
    for i in n..candles.len() {
        a = (a * (nf - 1.0) + tr(i)) / nf;
    }
    finite(a)
}

/// Population standard deviation of the last `n` values (divides by `n`).
pub fn stddev(values: &[f64], n: usize) -> Option<f64> {
    let mean = sma(values, n)?;
    let w = &values[values.len() - n..];
    finite((w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt())
}

/// Bollinger bands at the last value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bands {
    pub middle: f64,
    pub upper: f64,
    pub lower: f64,
}

/// Bollinger bands: middle = SMA of the last `n` values, upper/lower = middle
/// ± `k` population standard deviations of the same window.
pub fn bollinger(values: &[f64], n: usize, k: f64) -> Option<Bands> {
    let middle = sma(values, n)?;
    let sd = stddev(values, n)?;
    let upper = finite(middle + k * sd)?;
    let lower = finite(middle - k * sd)?;
    Some(Bands { middle, upper, lower })
}

/// MACD at the last close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Macd {
    /// EMA(fast) − EMA(slow).
    pub macd: f64,
    /// EMA(signal) of the MACD line.
    pub signal: f64,
    /// `macd − signal`.
    pub histogram: f64,
}

/// MACD line series: EMA(`fast`) − EMA(`slow`) from the first close where both
/// are defined (index `max(fast, slow) − 1`).
pub fn macd_line(closes: &[f64], fast: usize, slow: usize) -> Vec<f64> {
    let (ef, es) = (ema_series(closes, fast), ema_series(closes, slow));
    if ef.is_empty() || es.is_empty() {
        return Vec::new();
    }
    let start = fast.max(slow) - 1;
    (start..closes.len()).map(|j| ef[j + 1 - fast] - es[j + 1 - slow]).collect()
}

/// MACD (`fast`, `slow`, `signal`), e.g. (12, 26, 9). Needs
/// `max(fast, slow) + signal − 1` closes.
pub fn macd(closes: &[f64], fast: usize, slow: usize, signal: usize) -> Option<Macd> {
    let line = macd_line(closes, fast, slow);
    let macd = finite(*line.last()?)?;
    let signal = ema(&line, signal)?;
    Some(Macd { macd, signal, histogram: finite(macd - signal)? })
}

/// Rate of change over `n` bars, in percent: `(last / values[len-1-n] − 1) · 100`.
/// Needs `n + 1` values and a non-zero base.
pub fn roc(values: &[f64], n: usize) -> Option<f64> {
    if n == 0 || values.len() < n + 1 {
        return None;
    }
    let base = values[values.len() - 1 - n];
    if base == 0.0 {
        return None;
    }
    finite((values[values.len() - 1] / base - 1.0) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sum_adds_every_value_whatever_the_length() {
        for n in 0..40 {
            let v: Vec<f64> = (1..=n).map(f64::from).collect();
            assert_eq!(sum(&v), f64::from(n * (n + 1) / 2), "n = {n}");
        }
        let prices: Vec<f64> = (0..31).map(|i| 43_000.0 + f64::from(i) * 0.37).collect();
        let naive: f64 = prices.iter().sum();
        assert!((sum(&prices) - naive).abs() <= naive * 1e-15);
    }

    fn close_to(got: Option<f64>, want: f64, tol: f64) {
        let got = got.expect("a value");
        assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
    }

    fn candle(high: f64, low: f64, close: f64) -> Candle {
        Candle { ts: 0, open: close, high, low, close, volume: 1.0 }
    }

    /// Wilder's RSI worked example as reproduced by StockCharts.
    const WILDER: [f64; 33] = [
        44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28, 46.28, 46.00,
        46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45, 45.78, 45.35, 44.03, 44.18, 44.22, 44.57, 43.42, 42.66,
        43.13,
    ];

    #[test]
    fn sma_prev_last_is_the_sma_one_bar_back_and_now() {
        let prices: Vec<f64> = (0..45).map(|i| 43_000.0 + (f64::from(i) * 0.7).sin() * 250.0).collect();
        for n in 1..prices.len() {
            let (prev, last) = sma_prev_last(&prices, n).expect("enough values");
            close_to(Some(prev), sma(&prices[..prices.len() - 1], n).unwrap(), 1e-9);
            close_to(Some(last), sma(&prices, n).unwrap(), 1e-9);
        }
        assert_eq!(sma_prev_last(&prices, prices.len()), None, "needs n + 1 values");
        assert_eq!(sma_prev_last(&prices, 0), None);
        assert_eq!(sma_prev_last(&[1.0, f64::INFINITY, 2.0], 2), None);
        assert_eq!(sma_prev_last(&[1.0, 3.0, 8.0], 1), Some((3.0, 8.0)));
    }

    #[test]
    fn sma_uses_the_last_n_values() {
        close_to(sma(&[1.0, 2.0, 3.0, 4.0, 5.0], 3), 4.0, 1e-12);
        close_to(sma(&[1.0, 2.0, 3.0], 3), 2.0, 1e-12);
        assert_eq!(sma(&[1.0, 2.0], 3), None);
        assert_eq!(sma(&[1.0, 2.0], 0), None);
        assert_eq!(sma(&[], 1), None);
        assert_eq!(sma(&[1.0, f64::NAN], 2), None);
    }

    #[test]
    fn ema_is_seeded_with_the_sma() {
        // n = 3, alpha = 0.5: seed (2+4+6)/3 = 4; 8 -> 6; 12 -> 9.
        assert_eq!(ema_series(&[2.0, 4.0, 6.0, 8.0, 12.0], 3), vec![4.0, 6.0, 9.0]);
        close_to(ema(&[2.0, 4.0, 6.0, 8.0, 12.0], 3), 9.0, 1e-12);
        // On a ramp the EMA lags by exactly (n - 1) / 2.
        let ramp: Vec<f64> = (1..=10).map(f64::from).collect();
        close_to(ema(&ramp, 3), 9.0, 1e-12);
        close_to(ema(&ramp, 5), 8.0, 1e-12);
        close_to(ema(&[7.0, 7.0, 7.0], 3), 7.0, 1e-12);
        assert_eq!(ema(&[1.0, 2.0], 3), None);
        assert!(ema_series(&[1.0, 2.0], 3).is_empty());
        assert_eq!(ema(&[1.0], 0), None);
    }

    #[test]
    fn rsi_matches_wilders_worked_example() {
        // First value by hand: 14 changes gain 3.34 and lose 1.40 in total,
        // RS = 3.34 / 1.40, RSI = 100 - 100 / (1 + RS) = 70.4641.
        close_to(rsi(&WILDER[..15], 14), 70.4641, 1e-4);
        assert_eq!(rsi(&WILDER[..14], 14), None);
        // StockCharts' published column, which rounds intermediate averages.
        let published = [
            70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99, 41.46, 41.87,
            45.46, 37.30, 33.08, 37.77,
        ];
        for (i, want) in published.iter().enumerate() {
            close_to(rsi(&WILDER[..15 + i], 14), *want, 0.1);
        }
        // Exact values for the second and last bars.
        close_to(rsi(&WILDER[..16], 14), 66.2496, 1e-4);
        close_to(rsi(&WILDER, 14), 37.7888, 1e-4);
    }

    #[test]
    fn rsi_edges() {
        let up: Vec<f64> = (1..=20).map(f64::from).collect();
        let down: Vec<f64> = up.iter().rev().copied().collect();
        close_to(rsi(&up, 14), 100.0, 1e-12);
        close_to(rsi(&down, 14), 0.0, 1e-12);
        close_to(rsi(&[5.0; 10], 3), 50.0, 1e-12);
        // n = 2 by hand: changes +2, -1 -> gain 1, loss 0.5 -> RS 2 -> 66.67;
        // then +3 -> gain (1 + 3) / 2 = 2, loss 0.25 -> RS 8 -> 88.89.
        close_to(rsi(&[10.0, 12.0, 11.0], 2), 200.0 / 3.0, 1e-9);
        close_to(rsi(&[10.0, 12.0, 11.0, 14.0], 2), 800.0 / 9.0, 1e-9);
        assert_eq!(rsi(&[1.0, 2.0], 0), None);
    }

    #[test]
    fn true_range_takes_gaps_into_account() {
        let c = candle(14.0, 10.0, 13.0);
        assert_eq!(true_range(&c, None), 4.0);
        assert_eq!(true_range(&c, Some(12.0)), 4.0);
        assert_eq!(true_range(&c, Some(20.0)), 10.0);
        assert_eq!(true_range(&c, Some(5.0)), 9.0);
    }

    #[test]
    fn atr_uses_wilders_smoothing() {
        // TR = 2 (high - low), 3, 2, 4. Seed (2 + 3 + 2) / 3 = 7/3,
        // then (7/3 * 2 + 4) / 3 = 26/9.
        let c = [candle(10.0, 8.0, 9.0), candle(12.0, 9.0, 11.0), candle(13.0, 11.0, 12.0), candle(14.0, 10.0, 13.0)];
        close_to(atr(&c[..3], 3), 7.0 / 3.0, 1e-12);
        close_to(atr(&c, 3), 26.0 / 9.0, 1e-12);
        assert_eq!(atr(&c[..2], 3), None);
        assert_eq!(atr(&c, 0), None);
        // A gap: previous close 9, bar 20..18 -> TR 11.
        let g = [candle(10.0, 8.0, 9.0), candle(20.0, 18.0, 19.0)];
        close_to(atr(&g, 1), 11.0, 1e-12);
    }

    #[test]
    fn stddev_and_bollinger() {
        // The textbook population example: mean 5, standard deviation 2.
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        close_to(stddev(&v, 8), 2.0, 1e-12);
        let b = bollinger(&v, 8, 2.0).unwrap();
        assert!((b.middle - 5.0).abs() < 1e-12 && (b.upper - 9.0).abs() < 1e-12 && (b.lower - 1.0).abs() < 1e-12);
        // Only the last n values count: [7, 9] -> mean 8, sd 1.
        close_to(stddev(&v, 2), 1.0, 1e-12);
        let b = bollinger(&v, 2, 1.5).unwrap();
        assert_eq!(b, Bands { middle: 8.0, upper: 9.5, lower: 6.5 });
        close_to(stddev(&[3.0; 5], 5), 0.0, 1e-12);
        assert_eq!(stddev(&v, 9), None);
        assert_eq!(bollinger(&v, 0, 2.0), None);
    }

    #[test]
    fn macd_by_hand() {
        // fast 1 (the close itself), slow 2 (alpha 2/3), signal 2 over 2, 4, 8, 16:
        // EMA2 = 3, 19/3, 115/9; line = 1, 5/3, 29/9; signal seed 4/3 then
        // 4/3 + 2/3 * (29/9 - 4/3) = 70/27; histogram 17/27.
        let m = macd(&[2.0, 4.0, 8.0, 16.0], 1, 2, 2).unwrap();
        assert!((m.macd - 29.0 / 9.0).abs() < 1e-12, "{m:?}");
        assert!((m.signal - 70.0 / 27.0).abs() < 1e-12, "{m:?}");
        assert!((m.histogram - 17.0 / 27.0).abs() < 1e-12, "{m:?}");
        assert_eq!(macd(&[2.0, 4.0], 1, 2, 2), None);
        assert_eq!(macd_line(&[2.0, 4.0, 8.0, 16.0], 1, 2).len(), 3);
    }

    #[test]
    fn macd_on_a_ramp_is_half_the_period_gap() {
        // Each EMA lags a ramp by (n - 1) / 2, so EMA12 - EMA26 = 7 exactly,
        // the signal line settles on 7 too and the histogram is 0.
        let ramp: Vec<f64> = (1..=60).map(f64::from).collect();
        let m = macd(&ramp, 12, 26, 9).unwrap();
        assert!((m.macd - 7.0).abs() < 1e-9 && (m.signal - 7.0).abs() < 1e-9 && m.histogram.abs() < 1e-9, "{m:?}");
        // Exactly enough data: 26 + 9 - 1 closes.
        assert!(macd(&ramp[..34], 12, 26, 9).is_some());
        assert_eq!(macd(&ramp[..33], 12, 26, 9), None);
        let flat = macd(&[100.0; 40], 12, 26, 9).unwrap();
        assert_eq!(flat, Macd { macd: 0.0, signal: 0.0, histogram: 0.0 });
    }

    #[test]
    fn roc_in_percent() {
        close_to(roc(&[100.0, 90.0, 110.0], 2), 10.0, 1e-12);
        close_to(roc(&[100.0, 90.0, 81.0], 1), -10.0, 1e-12);
        assert_eq!(roc(&[100.0, 110.0], 2), None);
        assert_eq!(roc(&[0.0, 1.0], 1), None);
        assert_eq!(roc(&[1.0, 2.0], 0), None);
    }

    #[test]
    fn closes_extracts_in_order() {
        assert_eq!(closes(&[candle(2.0, 1.0, 1.5), candle(3.0, 2.0, 2.5)]), vec![1.5, 2.5]);
    }
}
