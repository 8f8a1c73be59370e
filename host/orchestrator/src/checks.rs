//! The screens a candidate passes before the selection gate
//! ([`crate::gate`]): the contract (it loads and initialises), a fuzz run
//! over random market views, a lookahead check (truncated vs full history,
//! and a calendar shift that exposes decisions keyed to known dates) and a
//! startup-sensitivity check. Every rejection, here and in the gate, is a
//! typed [`Rejection`].

use super::proposer::Rng;
use host_sandbox::bindings as c;
use host_sandbox::{ModuleError, Runtime, StrategyModule, TrapKind};
use host_trading::backtest::{self, Driver, Series, WasmDriver};
use host_trading::risk_file::RiskFile;
use serde::Serialize;
use std::sync::Arc;
use trading_core::{Candle, MarketView};

/// Knobs of the screens (`[orchestrator]` in settings.toml).
#[derive(Debug, Clone, Serialize)]
pub struct CheckConfig {
    pub fuzz_calls: usize,
    pub seed: u64,
    /// Scans compared by the lookahead and startup checks.
    pub window_bars: usize,
    /// Cut points of the truncation check.
    pub lookahead_cuts: usize,
    /// Calendar shift of the time-shift check, in whole weeks.
    pub shift_weeks: i64,
    /// Warm-up history (bars) of the shorter startup run.
    pub warmup_bars: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            fuzz_calls: 40,
            seed: 1,
            window_bars: 240,
            lookahead_cuts: 3,
            shift_weeks: 53,
            warmup_bars: 200,
        }
    }
}

/// Why a candidate was not deployed.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    #[error("review refused the change: {detail}")]
    Review { detail: String },
    #[error("source refused: {}", refusals.join("; "))]
    SourceRefused { refusals: Vec<String> },
    #[error("does not compile: {detail}")]
    CompileFailed { detail: String },
    #[error("breaks the contract: {detail}")]
    Contract { detail: String },
    #[error("{stage}: trapped: {trap}")]
    Trapped {
        stage: String,
        trap: String,
        endless: bool,
    },
    #[error("{stage}: returned a bad value: {detail}")]
    BadOutput { stage: String, detail: String },
    #[error("lookahead: at {ts} the signals differ ({detail})")]
    Lookahead { ts: i64, detail: String },
    #[error("startup sensitivity: at {ts} the signals depend on how much warm-up history there was ({detail})")]
    StartupSensitive { ts: i64, detail: String },
    #[error("out-of-sample daily Sharpe {} does not beat the incumbent's {} (floor {floor})", show(*candidate), show(*incumbent))]
    Underperforms {
        candidate: Option<f64>,
        incumbent: Option<f64>,
        floor: f64,
    },
    #[error("not significant ({test}, {trials} trials, {days} out-of-sample days): p-value {} and deflated Sharpe probability {} (needs p <= {alpha} and probability >= 1 - {alpha})", show(*p_value), show(*deflated_sharpe_probability))]
    NotSignificant {
        test: String,
        trials: u64,
        days: usize,
        p_value: Option<f64>,
        deflated_sharpe_probability: Option<f64>,
        alpha: f64,
    },
    /// The held-out window contradicts the walk-forward (its figures are in the report only).
    #[error("the held-out window does not confirm the walk-forward")]
    HeldOut,
    #[error("max drawdown {drawdown_pct:.2}% breaches the {limit_pct}% limit")]
    Drawdown { drawdown_pct: f64, limit_pct: f64 },
    #[error("backtest could not run: {detail}")]
    Backtest { detail: String },
    #[error("deploy failed: {detail}")]
    Deploy { detail: String },
    /// The model's answer was cut at `max_tokens` and continuing did not finish it.
    #[error("the answer was cut at max_tokens: {detail}")]
    Truncated { detail: String },
    /// A change was decided but no complete ```rust block came with it.
    #[error("no source: {detail}")]
    NoSource { detail: String },
}

impl Rejection {
    /// A short machine name of the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Review { .. } => "review",
            Rejection::SourceRefused { .. } => "source_refused",
            Rejection::CompileFailed { .. } => "compile_failed",
            Rejection::Contract { .. } => "contract",
            Rejection::Trapped { .. } => "trapped",
            Rejection::BadOutput { .. } => "bad_output",
            Rejection::Lookahead { .. } => "lookahead",
            Rejection::StartupSensitive { .. } => "startup_sensitive",
            Rejection::Underperforms { .. } => "underperforms",
            Rejection::NotSignificant { .. } => "not_significant",
            Rejection::HeldOut => "held_out",
            Rejection::Drawdown { .. } => "drawdown",
            Rejection::Backtest { .. } => "backtest",
            Rejection::Deploy { .. } => "deploy",
            Rejection::Truncated { .. } => "truncated",
            Rejection::NoSource { .. } => "no_source",
        }
    }
}

fn show(x: Option<f64>) -> String {
    x.map_or("none (undefined)".into(), |v| format!("{v:.3}"))
}

pub(crate) fn from_module(stage: &str, e: ModuleError) -> Rejection {
    match e {
        ModuleError::Trap { kind, .. } => Rejection::Trapped {
            stage: stage.into(),
            endless: matches!(kind, TrapKind::OutOfFuel | TrapKind::Deadline),
            trap: kind.to_string(),
        },
        ModuleError::BadOutput { reason, .. } => Rejection::BadOutput {
            stage: stage.into(),
            detail: reason,
        },
        other => Rejection::Contract {
            detail: other.to_string(),
        },
    }
}

/// What the checks run on.
pub struct CheckInput<'a> {
    pub runtime: &'a Arc<Runtime>,
    pub series: &'a [Series],
    pub risk: &'a RiskFile,
    pub symbols: &'a [String],
    pub capital: rust_decimal::Decimal,
    pub fee_bps: rust_decimal::Decimal,
    pub slippage_bps: rust_decimal::Decimal,
}

/// Figures the checks measured, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckFigures {
    pub fuzz_calls: usize,
    pub lookahead_scans: usize,
    pub startup_scans: usize,
    /// Out-of-sample daily Sharpe ratios of the walk-forward.
    pub candidate_oos_sharpe: Option<f64>,
    pub incumbent_oos_sharpe: Option<f64>,
    /// The candidate's development backtest return.
    pub candidate_return_pct: Option<f64>,
    /// The incumbent's mean out-of-sample daily return, percent.
    pub incumbent_return_pct: Option<f64>,
    pub candidate_max_drawdown_pct: Option<f64>,
    pub candidate_report: Option<serde_json::Value>,
    /// The selection gate's figures: data source, walk-forward, test, held-out window.
    pub selection: Option<crate::gate::SelectionFigures>,
}

/// The contract: loads, instantiates, initialises, names its scan interval.
pub fn contract(input: &CheckInput, wasm: &[u8]) -> Result<StrategyModule, Rejection> {
    let module = input
        .runtime
        .load_strategy(wasm)
        .map_err(|e| Rejection::Contract {
            detail: e.to_string(),
        })?;
    WasmDriver::start(&module, input.risk, input.symbols, &[]).map_err(|e| match e {
        ModuleError::Trap { .. } => from_module("initialize", e),
        other => Rejection::Contract {
            detail: other.to_string(),
        },
    })?;
    Ok(module)
}

fn portfolio(cash: f64) -> c::Portfolio {
    c::Portfolio {
        cash,
        total_value: cash,
        positions: vec![],
        daily_pnl: 0.0,
        total_pnl: 0.0,
        fees_paid: 0.0,
        closed_trade_count: 0,
    }
}

/// Random market views: random walks of random length (including none),
/// flat and extreme prices, zero volume, gaps; random portfolios.
pub fn fuzz(
    input: &CheckInput,
    module: &StrategyModule,
    calls: usize,
    seed: u64,
) -> Result<usize, Rejection> {
    let mut rng = Rng::new(seed ^ 0xF022);
    let mut driver = WasmDriver::start(module, input.risk, input.symbols, &[])
        .map_err(|e| from_module("fuzz", e))?;
    for _ in 0..calls {
        let mut data = trading_core::MarketData::new();
        let now = 1_600_000_000 + (rng.range(0, 100_000) as i64) * 3_600;
        for sym in input.symbols {
            let n = match rng.range(0, 5) {
                0 => 0,
                1 => rng.range(1, 5) as usize,
                _ => rng.range(10, 600) as usize,
            };
            let mut price = match rng.range(0, 3) {
                0 => 1e-6,
                1 => 1e6,
                _ => 10.0 + rng.unit() * 50_000.0,
            };
            let flat = rng.range(0, 4) == 0;
            let mut candles = Vec::with_capacity(n);
            let mut ts = now - n as i64 * 3_600;
            for _ in 0..n {
                let step = if flat { 0.0 } else { (rng.unit() - 0.5) * 0.1 };
                let open = price;
                price = (price * (1.0 + step)).max(1e-9);
                let (hi, lo) = (
                    open.max(price) * (1.0 + rng.unit() * 0.02),
                    open.min(price) * (1.0 - rng.unit() * 0.02),
                );
                let volume = if rng.range(0, 5) == 0 {
                    0.0
                } else {
                    rng.unit() * 1e4
                };
                candles.push(Candle {
                    ts,
                    open,
                    high: hi,
                    low: lo,
                    close: price,
                    volume,
                });
                ts += if rng.range(0, 20) == 0 {
                    3_600 * rng.range(2, 48) as i64
                } else {
                    3_600
                };
            }
            candles.retain(|c| c.ts + 3_600 <= now);
            data.set_series(sym, trading_core::Interval::H1, candles);
        }
        let view = MarketView::new(Arc::new(data), now);
        let cash = [0.0, 1.0, 10_000.0, 1e9][rng.range(0, 3) as usize];
        driver
            .analyze(now, &portfolio(cash), &view)
            .map_err(|e| from_module("fuzz", e))?;
    }
    Ok(calls)
}

/// The part of a signal that is a decision (not tag, reasoning or confidence).
fn key(s: &c::Signal) -> String {
    format!(
        "{} {:?} {} {:?} {:?} {:?} {:?} {:?}",
        s.symbol,
        s.action,
        s.size_pct,
        s.order_type,
        s.limit_price,
        s.stop_loss,
        s.take_profit,
        s.intent
    )
}

fn shifted(series: &[Series], shift: i64, from: Option<i64>, to: Option<i64>) -> Vec<Series> {
    series
        .iter()
        .map(|s| Series {
            symbol: s.symbol.clone(),
            interval: s.interval,
            candles: s
                .candles
                .iter()
                .filter(|c| {
                    from.is_none_or(|f| c.ts >= f)
                        && to.is_none_or(|t| c.ts + s.interval.secs() <= t)
                })
                .map(|c| Candle {
                    ts: c.ts + shift,
                    ..*c
                })
                .collect(),
        })
        .collect()
}

/// Close times of every candle in `series` within `(from, to]`.
fn closes_between(series: &[Series], from: i64, to: i64) -> Vec<i64> {
    let mut t: Vec<i64> = series
        .iter()
        .flat_map(|s| s.candles.iter().map(move |c| c.ts + s.interval.secs()))
        .filter(|&t| t > from && t <= to)
        .collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// A fresh instance scanning `series` at `times` (aligned to its scan
/// interval) with a flat portfolio: (scan time, decision keys).
fn signals_at(
    input: &CheckInput,
    module: &StrategyModule,
    series: &[Series],
    times: &[i64],
    stage: &str,
) -> Result<Vec<(i64, Vec<String>)>, Rejection> {
    let data = backtest::market_data(series, None);
    let mut driver = WasmDriver::start(module, input.risk, input.symbols, &[])
        .map_err(|e| from_module(stage, e))?;
    let step = i64::from(driver.scan_minutes().max(1)) * 60;
    let mut next = i64::MIN;
    let mut out = Vec::new();
    let cash = input.capital.try_into().unwrap_or(10_000.0);
    for &t in times {
        if t < next {
            continue;
        }
        next = (t.div_euclid(step) + 1) * step;
        let view = MarketView::new(data.clone(), t);
        let s = driver
            .analyze(t, &portfolio(cash), &view)
            .map_err(|e| from_module(stage, e))?;
        out.push((t, s.iter().map(key).collect()));
    }
    Ok(out)
}

fn first_difference(
    a: &[(i64, Vec<String>)],
    b: &[(i64, Vec<String>)],
    shift: i64,
) -> Option<(i64, String)> {
    let mut j = 0;
    for (t, sa) in a {
        while j < b.len() && b[j].0 - shift < *t {
            j += 1;
        }
        let sb = b
            .get(j)
            .filter(|(tb, _)| tb - shift == *t)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        if *sa != sb {
            return Some((*t, format!("{sa:?} vs {sb:?}")));
        }
    }
    None
}

fn span(series: &[Series]) -> Option<(i64, i64)> {
    let lo = series
        .iter()
        .filter_map(|s| s.candles.first().map(|c| c.ts))
        .min()?;
    let hi = series
        .iter()
        .filter_map(|s| s.candles.last().map(|c| c.ts + s.interval.secs()))
        .max()?;
    Some((lo, hi))
}

/// Lookahead: (1) for each cut, the signals with the history physically
/// truncated at the cut equal the signals on the full history up to it;
/// (2) moving the whole calendar by whole weeks moves the signals with it,
/// so no decision comes from knowing what happened on a date.
pub fn lookahead(
    input: &CheckInput,
    module: &StrategyModule,
    cfg: &CheckConfig,
) -> Result<usize, Rejection> {
    let (_, end) = span(input.series).ok_or(Rejection::Backtest {
        detail: "no candles".into(),
    })?;
    let all = closes_between(input.series, i64::MIN, end);
    let window: Vec<i64> = all[all.len().saturating_sub(cfg.window_bars)..].to_vec();
    let Some(&start) = window.first() else {
        return Ok(0);
    };
    let full = signals_at(input, module, input.series, &window, "lookahead")?;
    let mut scans = full.len();
    for k in 1..=cfg.lookahead_cuts {
        let cut = window[(window.len() * k / (cfg.lookahead_cuts + 1)).min(window.len() - 1)];
        let truncated_series = shifted(input.series, 0, None, Some(cut));
        let times: Vec<i64> = window.iter().copied().filter(|&t| t <= cut).collect();
        let truncated = signals_at(input, module, &truncated_series, &times, "lookahead")?;
        scans += truncated.len();
        let full_part: Vec<(i64, Vec<String>)> =
            full.iter().filter(|(t, _)| *t <= cut).cloned().collect();
        if let Some((ts, detail)) = first_difference(&full_part, &truncated, 0) {
            return Err(Rejection::Lookahead {
                ts,
                detail: format!("full history {detail} truncated at {cut}"),
            });
        }
    }
    let shift = cfg.shift_weeks * 7 * 86_400;
    let moved_series = shifted(input.series, shift, None, None);
    let moved_times: Vec<i64> = window.iter().map(|t| t + shift).collect();
    let moved = signals_at(input, module, &moved_series, &moved_times, "lookahead")?;
    scans += moved.len();
    if let Some((ts, detail)) = first_difference(&full, &moved, shift) {
        return Err(Rejection::Lookahead {
            ts,
            detail: format!(
                "on the real calendar {detail} with the calendar moved {} weeks",
                cfg.shift_weeks
            ),
        });
    }
    let _ = start;
    Ok(scans)
}

/// Startup sensitivity: two runs whose history starts `2 * warmup` and
/// `warmup` bars before the compared window agree on every scan in it.
pub fn startup(
    input: &CheckInput,
    module: &StrategyModule,
    cfg: &CheckConfig,
) -> Result<usize, Rejection> {
    let (_, end) = span(input.series).ok_or(Rejection::Backtest {
        detail: "no candles".into(),
    })?;
    let all = closes_between(input.series, i64::MIN, end);
    let need = cfg.window_bars + 2 * cfg.warmup_bars;
    if all.len() < need {
        return Ok(0);
    }
    let compare_from = all[all.len() - cfg.window_bars];
    let mut runs = Vec::new();
    for warm in [2 * cfg.warmup_bars, cfg.warmup_bars] {
        let begin = all[all.len() - cfg.window_bars - warm];
        // history opens `warm` bars before the window: candles opening at or after `begin - 1h`
        let s = shifted(input.series, 0, Some(begin - 3_600), None);
        let times: Vec<i64> = all.iter().copied().filter(|&t| t >= begin).collect();
        runs.push(signals_at(input, module, &s, &times, "startup")?);
    }
    let long: Vec<(i64, Vec<String>)> = runs[0]
        .iter()
        .filter(|(t, _)| *t >= compare_from)
        .cloned()
        .collect();
    let short: Vec<(i64, Vec<String>)> = runs[1]
        .iter()
        .filter(|(t, _)| *t >= compare_from)
        .cloned()
        .collect();
    if let Some((ts, detail)) = first_difference(&long, &short, 0) {
        return Err(Rejection::StartupSensitive {
            ts,
            detail: format!(
                "{} bars of warm-up: {detail} with {}",
                2 * cfg.warmup_bars,
                cfg.warmup_bars
            ),
        });
    }
    Ok(runs[0].len() + runs[1].len())
}

/// Mean out-of-sample Sharpe; a fold without one counts as 0, no fold with one is None.
pub fn mean_oos_sharpe(report: &backtest::BacktestReport) -> Option<f64> {
    let folds = report.walk_forward.as_ref()?;
    if folds.iter().all(|f| f.out_of_sample.sharpe_ratio.is_none()) {
        return None;
    }
    Some(
        folds
            .iter()
            .map(|f| f.out_of_sample.sharpe_ratio.unwrap_or(0.0))
            .sum::<f64>()
            / folds.len() as f64,
    )
}

/// Runs every screen in order; the first failure is the rejection. The
/// loaded module goes on to the selection gate.
pub fn screen(
    input: &CheckInput,
    wasm: &[u8],
    cfg: &CheckConfig,
    figures: &mut CheckFigures,
) -> Result<StrategyModule, Rejection> {
    let module = contract(input, wasm)?;
    figures.fuzz_calls = fuzz(input, &module, cfg.fuzz_calls, cfg.seed)?;
    figures.lookahead_scans = lookahead(input, &module, cfg)?;
    figures.startup_scans = startup(input, &module, cfg)?;
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(sym: &str) -> c::Signal {
        c::Signal {
            symbol: sym.into(),
            action: c::Action::Buy,
            size_pct: 5.0,
            order_type: c::OrderType::Market,
            limit_price: None,
            stop_loss: None,
            take_profit: None,
            intent: c::Intent::Swing,
            tag: "a".into(),
            confidence: 0.5,
            reasoning: "why".into(),
            slippage_tolerance: None,
        }
    }

    #[test]
    fn decision_keys_ignore_words_and_differences_are_found() {
        let mut b = sig("X");
        b.reasoning = "other words".into();
        b.tag = "t".into();
        assert_eq!(key(&sig("X")), key(&b));
        let a = vec![(10, vec![key(&sig("X"))]), (20, vec![])];
        let same = vec![(110, vec![key(&sig("X"))]), (120, vec![])];
        assert_eq!(first_difference(&a, &same, 100), None);
        let other = vec![(10, vec![key(&sig("X"))]), (20, vec![key(&sig("Y"))])];
        assert_eq!(first_difference(&a, &other, 0).map(|d| d.0), Some(20));
        // a scan missing on one side counts as no signals there
        assert_eq!(
            first_difference(&a, &[(20, vec![])], 0).map(|d| d.0),
            Some(10)
        );
    }

    #[test]
    fn rejection_codes_and_serialisation() {
        let r = Rejection::Underperforms {
            candidate: None,
            incumbent: Some(0.5),
            floor: 0.0,
        };
        assert_eq!(r.code(), "underperforms");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["reason"], "underperforms");
        assert!(r.to_string().contains("none (undefined)"), "{r}");
        let r = Rejection::NotSignificant {
            test: "t".into(),
            trials: 3,
            days: 20,
            p_value: Some(0.31),
            deflated_sharpe_probability: None,
            alpha: 0.05,
        };
        assert_eq!(r.code(), "not_significant");
        assert!(r.to_string().contains("3 trials") && r.to_string().contains("0.310"));
        // a held-out refusal carries no figure into the model's memory
        assert_eq!(
            serde_json::to_value(Rejection::HeldOut).unwrap(),
            serde_json::json!({ "reason": "held_out" })
        );
    }
}
