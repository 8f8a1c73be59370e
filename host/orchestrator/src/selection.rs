//! The statistics of honest selection, pure (no I/O, no clock): daily
//! returns from an equity curve, paired daily differences, the stationary
//! bootstrap (Politis & Romano 1994) p-value of "the candidate's mean daily
//! return beats the incumbent's", the probabilistic and deflated Sharpe
//! ratios (Bailey & López de Prado 2012, 2014) that count every trial made so
//! far, and the normal distribution functions they need.
//!
//! Invariants: every resampling draws from the seeded SplitMix64 generator,
//! so the same figures give the same p-value on every machine; an undefined
//! figure (too few days, zero variance) is `None`, never a sentinel; a
//! p-value is in (0, 1].

use super::proposer::Rng;
use serde::Serialize;

/// Seconds in a UTC day.
const DAY: i64 = 86_400;

/// Euler–Mascheroni constant (the expected maximum of N normal draws).
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Daily simple returns of an equity curve `(ts, value)` (sorted by `ts`):
/// the last value of each UTC day against the previous day's last value; the
/// first day is measured against `start` (the value before the first point).
/// Days with no point are skipped (the next day carries their move).
pub fn daily_returns(start: f64, points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut closes: Vec<(i64, f64)> = Vec::new();
    for &(ts, v) in points {
        let day = ts.div_euclid(DAY);
        match closes.last_mut() {
            Some((d, last)) if *d == day => *last = v,
            _ => closes.push((day, v)),
        }
    }
    let mut prev = start;
    let mut out = Vec::with_capacity(closes.len());
    for (day, v) in closes {
        if prev > 0.0 && prev.is_finite() && v.is_finite() {
            out.push((day, v / prev - 1.0));
        }
        prev = v;
    }
    out
}

/// `a − b` on the days both have, in day order.
pub fn paired_differences(a: &[(i64, f64)], b: &[(i64, f64)]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(day, x) in a {
        while j < b.len() && b[j].0 < day {
            j += 1;
        }
        if let Some(&(d, y)) = b.get(j) {
            if d == day {
                out.push(x - y);
            }
        }
    }
    out
}

pub fn mean(x: &[f64]) -> Option<f64> {
    (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64)
}

/// Sample standard deviation (n − 1); `None` below two values.
pub fn std_dev(x: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let m = mean(x)?;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64;
    Some(v.sqrt())
}

/// Per-period Sharpe ratio mean / sample standard deviation (no risk-free
/// rate, not annualised); `None` when undefined (under two values, zero spread).
pub fn sharpe(x: &[f64]) -> Option<f64> {
    let s = std_dev(x)?;
    (s > 0.0).then(|| mean(x).map(|m| m / s)).flatten()
}

/// Skewness and (raw, not excess) kurtosis from the population moments;
/// `None` with under two values or no spread.
pub fn skew_kurtosis(x: &[f64]) -> Option<(f64, f64)> {
    if x.len() < 2 {
        return None;
    }
    let n = x.len() as f64;
    let m = mean(x)?;
    let m2 = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
    if m2 <= 0.0 {
        return None;
    }
    let m3 = x.iter().map(|v| (v - m).powi(3)).sum::<f64>() / n;
    let m4 = x.iter().map(|v| (v - m).powi(4)).sum::<f64>() / n;
    Some((m3 / m2.powf(1.5), m4 / (m2 * m2)))
}

/// Standard normal CDF, through the complementary error function below
/// (fractional error below 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function: Numerical Recipes' Chebyshev fit `erfcc`
/// (fractional error below 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Inverse standard normal CDF (P. J. Acklam's rational approximation,
/// relative error below 1.2e-9); `None` outside (0, 1).
pub fn normal_inv(p: f64) -> Option<f64> {
    if !(p > 0.0 && p < 1.0) {
        return None;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < low {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    Some(x)
}

/// The stationary bootstrap's one-sided p-value for "the mean of `x` is
/// above zero": `resamples` series of `x.len()` values made of blocks that
/// start at a uniform index and continue (circularly) with probability
/// `1 − 1/mean_block`, each series' mean centred on the sample mean; the
/// p-value is `(1 + #{mean* − x̄ ≥ x̄}) / (resamples + 1)`. `None` for an
/// empty `x` or no resamples.
pub fn stationary_bootstrap_p(
    x: &[f64],
    mean_block: f64,
    resamples: usize,
    seed: u64,
) -> Option<f64> {
    let n = x.len();
    if n == 0 || resamples == 0 {
        return None;
    }
    let xbar = mean(x)?;
    let p_new = (1.0 / mean_block.max(1.0)).clamp(0.0, 1.0);
    let mut rng = Rng::new(seed ^ 0x5B00_7575);
    let mut at_least = 0usize;
    for _ in 0..resamples {
        let mut i = rng.range(0, n as u64 - 1) as usize;
        let mut sum = 0.0;
        for k in 0..n {
            if k > 0 {
                i = if rng.unit() < p_new {
                    rng.range(0, n as u64 - 1) as usize
                } else {
                    (i + 1) % n
                };
            }
            sum += x[i];
        }
        if sum / n as f64 - xbar >= xbar {
            at_least += 1;
        }
    }
    Some((1 + at_least) as f64 / (resamples + 1) as f64)
}

/// The probabilistic Sharpe ratio: the probability that the true per-period
/// Sharpe ratio exceeds `benchmark`, given the sample's length, skewness and
/// kurtosis. `None` when the Sharpe ratio is undefined or the variance term
/// is not positive.
pub fn probabilistic_sharpe(x: &[f64], benchmark: f64) -> Option<f64> {
    let sr = sharpe(x)?;
    let (g3, g4) = skew_kurtosis(x)?;
    let v = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr;
    if v <= 0.0 || x.len() < 2 {
        return None;
    }
    Some(normal_cdf(
        (sr - benchmark) * ((x.len() - 1) as f64).sqrt() / v.sqrt(),
    ))
}

/// The expected maximum Sharpe ratio of `trials` independent trials whose
/// Sharpe ratios have variance `variance` when none has skill:
/// `√V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))`; 0 for one trial.
pub fn expected_max_sharpe(trials: u64, variance: f64) -> f64 {
    if trials <= 1 || variance <= 0.0 {
        return 0.0;
    }
    let n = trials as f64;
    let a = normal_inv(1.0 - 1.0 / n).unwrap_or(0.0);
    let b = normal_inv(1.0 - 1.0 / (n * std::f64::consts::E)).unwrap_or(0.0);
    variance.sqrt() * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b)
}

/// The deflated Sharpe ratio: the probabilistic Sharpe ratio against the
/// Sharpe ratio the best of `trials` skill-less trials would show.
/// `trial_sharpes` are the Sharpe ratios of the trials so far (their
/// variance); with fewer than two, the variance of the estimator under no
/// skill, `1 / (T − 1)`, stands in.
pub fn deflated_sharpe(x: &[f64], trials: u64, trial_sharpes: &[f64]) -> Option<DeflatedSharpe> {
    let variance = match std_dev(trial_sharpes) {
        Some(s) if trial_sharpes.len() >= 2 => s * s,
        _ => 1.0 / (x.len().max(2) - 1) as f64,
    };
    let benchmark = expected_max_sharpe(trials, variance);
    Some(DeflatedSharpe {
        sharpe: sharpe(x)?,
        benchmark,
        probability: probabilistic_sharpe(x, benchmark)?,
    })
}

/// The deflated Sharpe ratio's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeflatedSharpe {
    /// The candidate's per-day Sharpe ratio out of sample.
    pub sharpe: f64,
    /// The expected best Sharpe ratio of that many skill-less trials.
    pub benchmark: f64,
    /// The probability that the true Sharpe ratio beats the benchmark.
    pub probability: f64,
}

/// Which tests the verdict applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// The stationary bootstrap of the daily-return difference, and the
    /// deflated Sharpe ratio over every trial so far; both must pass.
    StationaryBootstrapAndDeflatedSharpe,
}

impl Test {
    pub fn as_str(self) -> &'static str {
        match self {
            Test::StationaryBootstrapAndDeflatedSharpe => {
                "stationary bootstrap of the daily-return difference + deflated Sharpe ratio"
            }
        }
    }
}

/// What the significance test needs besides the two return series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SignificanceConfig {
    /// Largest p-value accepted (the deflated Sharpe probability must reach `1 − alpha`).
    pub alpha: f64,
    pub resamples: usize,
    /// Mean block length of the bootstrap, days.
    pub mean_block_days: f64,
    /// Fewest paired days the test is run on.
    pub min_days: usize,
    pub seed: u64,
}

/// The significance test's figures (in the report, never in the model's context).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Significance {
    pub test: Test,
    /// Candidates tested so far, this one included.
    pub trials: u64,
    pub days: usize,
    /// Mean daily return difference, candidate − incumbent (a fraction).
    pub mean_daily_difference: Option<f64>,
    /// The bootstrap's p-value; `None` when there were too few days.
    pub p_value: Option<f64>,
    pub deflated: Option<DeflatedSharpe>,
    pub alpha: f64,
    pub passed: bool,
}

/// Runs both tests on the out-of-sample daily returns of the candidate and
/// the incumbent (`None`: no incumbent, the difference is the candidate's
/// return itself).
pub fn significance(
    candidate: &[(i64, f64)],
    incumbent: Option<&[(i64, f64)]>,
    trials: u64,
    trial_sharpes: &[f64],
    cfg: &SignificanceConfig,
) -> Significance {
    let diff: Vec<f64> = match incumbent {
        Some(inc) => paired_differences(candidate, inc),
        None => candidate.iter().map(|(_, r)| *r).collect(),
    };
    let cand: Vec<f64> = candidate.iter().map(|(_, r)| *r).collect();
    let enough = diff.len() >= cfg.min_days.max(2);
    let p_value = enough
        .then(|| stationary_bootstrap_p(&diff, cfg.mean_block_days, cfg.resamples, cfg.seed))
        .flatten();
    let deflated = deflated_sharpe(&cand, trials.max(1), trial_sharpes);
    let passed = p_value.is_some_and(|p| p <= cfg.alpha)
        && deflated.is_some_and(|d| d.probability >= 1.0 - cfg.alpha);
    Significance {
        test: Test::StationaryBootstrapAndDeflatedSharpe,
        trials: trials.max(1),
        days: diff.len(),
        mean_daily_difference: mean(&diff),
        p_value,
        deflated,
        alpha: cfg.alpha,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: [f64; 8] = [0.01, -0.005, 0.02, 0.0, 0.015, -0.01, 0.005, 0.01];

    #[test]
    fn normal_functions_match_the_tables() {
        assert!((normal_cdf(1.96) - 0.975_002_1).abs() < 1e-6);
        assert!((normal_cdf(-3.2) - 0.000_687_14).abs() < 1e-7);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_inv(0.975).unwrap() - 1.959_964).abs() < 1e-6);
        assert!((normal_inv(0.01).unwrap() + 2.326_348).abs() < 1e-6);
        assert_eq!(normal_inv(0.0), None);
        assert_eq!(normal_inv(1.0), None);
    }

    #[test]
    fn daily_returns_take_the_last_value_of_each_utc_day() {
        let pts = [
            (0, 101.0),
            (3_600, 102.0), // day 0 closes at 102
            (86_400 + 60, 51.0),
            (3 * 86_400, 102.0), // day 2 has no point
        ];
        let r = daily_returns(100.0, &pts);
        let days: Vec<i64> = r.iter().map(|d| d.0).collect();
        assert_eq!(days, vec![0, 1, 3]);
        for (got, want) in r.iter().map(|d| d.1).zip([0.02, -0.5, 1.0]) {
            assert!((got - want).abs() < 1e-12, "{r:?}");
        }
        let d = paired_differences(&r, &[(1, 0.1), (3, 0.5), (4, 0.0)]);
        assert_eq!(d.len(), 2);
        assert!(
            (d[0] + 0.6).abs() < 1e-12 && (d[1] - 0.5).abs() < 1e-12,
            "{d:?}"
        );
    }

    #[test]
    fn sharpe_moments_and_the_probabilistic_and_deflated_sharpe_by_hand() {
        // mean 0.005625, sd 0.010155048, SR 0.553911709, skew -0.179441371, kurtosis 1.911452184
        let sr = sharpe(&X).unwrap();
        assert!((sr - 0.553_911_709).abs() < 1e-8, "{sr}");
        let (g3, g4) = skew_kurtosis(&X).unwrap();
        assert!((g3 + 0.179_441_371).abs() < 1e-8 && (g4 - 1.911_452_184).abs() < 1e-8);
        // PSR(0) = Φ(SR √7 / √(1 − γ3 SR + (γ4 − 1)/4 SR²)) = 0.912334
        assert!((probabilistic_sharpe(&X, 0.0).unwrap() - 0.912_334).abs() < 1e-5);
        // 10 trials whose Sharpe ratios vary with variance 0.04: SR0 = 0.314920, DSR = 0.720641
        assert!((expected_max_sharpe(10, 0.04) - 0.314_920).abs() < 1e-5);
        let trial_sharpes = [0.2, -0.2, 0.2, -0.2]; // sample variance 0.053333
        let d = deflated_sharpe(&X, 10, &trial_sharpes).unwrap();
        assert!((d.benchmark - expected_max_sharpe(10, 0.16 / 3.0)).abs() < 1e-12);
        let d = DeflatedSharpe {
            benchmark: expected_max_sharpe(10, 0.04),
            ..d
        };
        let p = probabilistic_sharpe(&X, d.benchmark).unwrap();
        assert!((p - 0.720_641).abs() < 1e-5, "{p}");
        // one trial: nothing to deflate
        assert_eq!(expected_max_sharpe(1, 0.04), 0.0);
        // undefined is None, not a number
        assert_eq!(sharpe(&[0.01; 5]), None);
        assert_eq!(sharpe(&[0.01]), None);
    }

    #[test]
    fn bootstrap_p_values_by_hand() {
        // a constant positive difference: no resample mean moves, p = 1 / (B + 1)
        assert_eq!(
            stationary_bootstrap_p(&[0.01; 30], 3.0, 999, 1),
            Some(0.001)
        );
        // no difference at all: every resample is as extreme, p = 1
        assert_eq!(stationary_bootstrap_p(&[0.0; 30], 3.0, 999, 1), Some(1.0));
        // one lucky day among 20 with blocks of one (the i.i.d. bootstrap):
        // mean* ≥ 2 x̄ needs the lucky day drawn twice or more,
        // P = 1 − 0.95^20 − 20 · 0.05 · 0.95^19 = 0.264150
        let mut lucky = [0.0; 20];
        lucky[7] = 0.10;
        let p = stationary_bootstrap_p(&lucky, 1.0, 20_000, 3).unwrap();
        assert!((p - 0.264_150).abs() < 0.01, "{p}");
        // the same seed gives the same p-value
        assert_eq!(
            stationary_bootstrap_p(&X, 2.0, 500, 9),
            stationary_bootstrap_p(&X, 2.0, 500, 9)
        );
        assert_eq!(stationary_bootstrap_p(&[], 2.0, 500, 9), None);
    }

    #[test]
    fn a_win_on_one_lucky_day_is_not_significant_a_steady_edge_is() {
        let cfg = SignificanceConfig {
            alpha: 0.05,
            resamples: 2_000,
            mean_block_days: 3.0,
            min_days: 10,
            seed: 1,
        };
        let days = |f: &dyn Fn(i64) -> f64| (0..40).map(|d| (d, f(d))).collect::<Vec<_>>();
        let noise = |d: i64| ((d * 7919) % 13) as f64 / 1000.0 - 0.006;
        let incumbent = days(&|d| noise(d));
        // the candidate equals the incumbent except one day it made 8 %
        let lucky = days(&|d| noise(d) + if d == 17 { 0.08 } else { 0.0 });
        let s = significance(&lucky, Some(&incumbent), 1, &[], &cfg);
        assert!(s.mean_daily_difference.unwrap() > 0.0);
        assert!(s.p_value.unwrap() > 0.05 && !s.passed, "{s:?}");
        // a steady 0.4 % a day over the incumbent's noise passes both tests
        let steady = days(&|d| noise(d) + 0.004 + noise(d + 5) * 0.2);
        let s = significance(&steady, Some(&incumbent), 1, &[], &cfg);
        assert!(s.passed, "{s:?}");
        // ... but not when too few days were paired
        let s = significance(&steady[..5], Some(&incumbent), 1, &[], &cfg);
        assert!(!s.passed && s.p_value.is_none());
    }
}
