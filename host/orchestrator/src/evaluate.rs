//! Walk-forward evaluation for honest selection: the cycle's history is cut
//! into a development part and a final held-out window (`holdout_bars`);
//! the development part into `k ≥ 6` folds, each an in-sample part (where
//! parameters are fitted, when there is a grid to fit) and an out-of-sample
//! part (where they are scored). Every window runs through the one backtest
//! walk (`backtest::simulate`: the same engine, portfolio, fill model and
//! risk manager as paper and live), on a fresh account, with the history
//! before it visible to the strategy and nothing after it.
//!
//! Invariants: an out-of-sample score never uses parameters chosen on that
//! window; the held-out window is only touched by [`window`] after the
//! walk-forward, and nothing here summarises it for the model.

use super::checks::{from_module, Rejection};
use super::selection;
use host_sandbox::{Runtime, StrategyModule};
use host_trading::backtest::{self, Account, Series, WasmDriver};
use host_trading::risk_file::RiskFile;
use serde::Serialize;
use std::sync::Arc;
use trading_core::MarketData;

/// What the evaluation runs on.
pub struct EvalInput<'a> {
    pub runtime: &'a Arc<Runtime>,
    /// Development and held-out bars together.
    pub series: &'a [Series],
    pub risk: &'a RiskFile,
    pub symbols: &'a [String],
    pub account: Account,
    /// Close time ending the development part; the held-out window follows.
    pub dev_end: i64,
}

impl EvalInput<'_> {
    /// The first bar's open.
    pub fn start(&self) -> Option<i64> {
        self.series
            .iter()
            .filter_map(|s| s.candles.first().map(|c| c.ts))
            .min()
    }

    /// The last bar's close.
    pub fn end(&self) -> Option<i64> {
        self.series
            .iter()
            .filter_map(|s| s.candles.last().map(|c| c.ts + s.interval.secs()))
            .max()
    }
}

/// Where the development part ends: `holdout_bars` hourly closes before the
/// last close (the held-out window is those bars).
pub fn split(series: &[Series], holdout_bars: usize) -> Option<i64> {
    let mut closes: Vec<i64> = series
        .iter()
        .flat_map(|s| s.candles.iter().map(move |c| c.ts + s.interval.secs()))
        .collect();
    closes.sort_unstable();
    closes.dedup();
    let n = closes.len();
    (n > holdout_bars + 1).then(|| closes[n - holdout_bars - 1])
}

/// One window's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowResult {
    pub from: i64,
    pub to: i64,
    pub return_pct: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    /// Daily returns (UTC day, fraction).
    pub daily: Vec<(i64, f64)>,
    pub trades: usize,
}

/// Runs `module` with `params` over the bars opening at or after `from` and
/// closing at or before `to`, on a fresh account.
pub fn window(
    input: &EvalInput,
    module: &StrategyModule,
    params: &[(String, String)],
    data: &Arc<MarketData>,
    from: i64,
    to: i64,
) -> Result<WindowResult, Rejection> {
    let mut driver = WasmDriver::start(module, input.risk, input.symbols, params)
        .map_err(|e| from_module("walk-forward", e))?;
    let o = match backtest::simulate(
        &mut driver,
        data,
        input.series,
        Some(from),
        Some(to),
        &input.account,
        false,
    ) {
        Ok(o) => o,
        Err(backtest::BacktestError::NoData) => {
            return Ok(WindowResult {
                from,
                to,
                ..WindowResult::default()
            })
        }
        Err(backtest::BacktestError::ModuleAt { error, .. }) => {
            return Err(from_module("walk-forward", error))
        }
        Err(other) => {
            return Err(Rejection::Backtest {
                detail: other.to_string(),
            })
        }
    };
    let cap = trading_core::money::to_f64(input.account.capital);
    let points: Vec<(i64, f64)> = o
        .equity
        .iter()
        .map(|p| (p.ts, trading_core::money::to_f64(p.value)))
        .collect();
    let last = points.last().map(|p| p.1);
    Ok(WindowResult {
        from,
        to,
        return_pct: last.filter(|_| cap > 0.0).map(|v| (v / cap - 1.0) * 100.0),
        max_drawdown_pct: max_drawdown_pct(cap, points.iter().map(|p| p.1)),
        daily: selection::daily_returns(cap, &points),
        trades: o.portfolio.closed_trades().len(),
    })
}

/// Largest fall from a running peak, percent; `None` without points.
pub fn max_drawdown_pct(start: f64, values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut peak = start;
    let mut dd: Option<f64> = None;
    for v in values {
        peak = peak.max(v);
        if peak > 0.0 {
            let d = (peak - v) / peak * 100.0;
            dd = Some(dd.map_or(d, |x: f64| x.max(d)));
        }
    }
    dd
}

/// The parameter set of `grid` with the best daily Sharpe ratio over
/// `[from, to)` ([`choose`]). A set other than the first that
/// `initialize` refuses is skipped (a neighbour of the proposed values may
/// be out of the strategy's range); a trap still refuses the candidate.
pub fn fit(
    input: &EvalInput,
    module: &StrategyModule,
    grid: &[Vec<(String, String)>],
    data: &Arc<MarketData>,
    from: i64,
    to: i64,
) -> Result<(usize, Option<f64>), Rejection> {
    if grid.len() <= 1 {
        return Ok((0, None));
    }
    let mut returns = Vec::with_capacity(grid.len());
    for (i, params) in grid.iter().enumerate() {
        match window(input, module, params, data, from, to) {
            Ok(w) => returns.push(Some(w.daily.iter().map(|d| d.1).collect::<Vec<f64>>())),
            Err(Rejection::Contract { .. }) if i > 0 => returns.push(None),
            Err(e) => return Err(e),
        }
    }
    Ok(choose(&returns))
}

/// The in-sample choice: the index of the daily-return series (one per grid
/// point; `None`: not run) with the highest daily Sharpe ratio, and that
/// ratio. Ties and undefined ratios keep the earlier set; with no defined
/// ratio the first set (the proposed values) is kept, with `None`.
pub fn choose(returns: &[Option<Vec<f64>>]) -> (usize, Option<f64>) {
    let mut best: (usize, Option<f64>) = (0, None);
    for (i, r) in returns.iter().enumerate() {
        let s = r.as_deref().and_then(selection::sharpe);
        if s.is_some_and(|s| best.1.is_none_or(|b| s > b)) {
            best = (i, s);
        }
    }
    best
}

/// One fold of the walk-forward.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    pub index: usize,
    pub in_sample: (i64, i64),
    /// The parameters fitted in sample (the only set when there was no grid).
    pub params: Vec<(String, String)>,
    pub in_sample_sharpe: Option<f64>,
    pub out_of_sample: WindowResult,
}

/// The walk-forward over the development part.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub folds: Vec<FoldResult>,
    /// Out-of-sample daily returns of every fold, in order.
    #[serde(skip)]
    pub daily: Vec<(i64, f64)>,
    pub days: usize,
    pub mean_daily_return_pct: Option<f64>,
    pub daily_sharpe: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    pub trades: usize,
}

/// Walk-forward over `[start, dev_end)` in `folds` folds: in each, the grid
/// is fitted on the in-sample part and the chosen set scored out of sample.
pub fn walk_forward(
    input: &EvalInput,
    module: &StrategyModule,
    grid: &[Vec<(String, String)>],
    folds: usize,
) -> Result<Evaluation, Rejection> {
    let start = input.start().ok_or(Rejection::Backtest {
        detail: "no candles".into(),
    })?;
    let cuts = trading_core::csv::walk_forward(start, input.dev_end, folds).map_err(|e| {
        Rejection::Backtest {
            detail: format!("walk-forward: {e}"),
        }
    })?;
    let data = backtest::market_data(input.series, Some(input.dev_end));
    let none = Vec::new();
    let mut out = Vec::with_capacity(cuts.len());
    let mut daily = Vec::new();
    let mut trades = 0;
    for f in cuts {
        let (i, in_sample_sharpe) = fit(
            input,
            module,
            grid,
            &data,
            f.in_sample.start,
            f.in_sample.end,
        )?;
        let params = grid.get(i).unwrap_or(&none);
        let oos = window(
            input,
            module,
            params,
            &data,
            f.out_of_sample.start,
            f.out_of_sample.end,
        )?;
        daily.extend(oos.daily.iter().copied());
        trades += oos.trades;
        out.push(FoldResult {
            index: f.index,
            in_sample: (f.in_sample.start, f.in_sample.end),
            params: params.clone(),
            in_sample_sharpe,
            out_of_sample: oos,
        });
    }
    let r: Vec<f64> = daily.iter().map(|d| d.1).collect();
    let mut v = 1.0;
    let compounded: Vec<f64> = r
        .iter()
        .map(|x| {
            v *= 1.0 + x;
            v
        })
        .collect();
    Ok(Evaluation {
        folds: out,
        days: r.len(),
        mean_daily_return_pct: selection::mean(&r).map(|m| m * 100.0),
        daily_sharpe: selection::sharpe(&r),
        max_drawdown_pct: max_drawdown_pct(1.0, compounded.into_iter()),
        trades,
        daily,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_sample_choice_is_the_best_sharpe_checked_by_hand() {
        // mean / sample sd by hand: a = [0.01, 0.03] → 0.02 / 0.014142 = 1.4142;
        // b = [0.02, 0.02, 0.05] → 0.03 / 0.017321 = 1.7321; c is flat (undefined)
        let a = vec![0.01, 0.03];
        let b = vec![0.02, 0.02, 0.05];
        let c = vec![0.01, 0.01];
        let (i, s) = choose(&[Some(a.clone()), Some(b.clone()), Some(c.clone())]);
        assert_eq!(i, 1);
        assert!((s.unwrap() - 3f64.sqrt()).abs() < 1e-9, "{s:?}");
        // a set that was not run, and a tie: the earlier set stays
        assert_eq!(choose(&[Some(a.clone()), None, Some(a.clone())]).0, 0);
        let (i, s) = choose(&[None, Some(a.clone()), Some(b.clone())]);
        assert_eq!(i, 2);
        assert!((s.unwrap() - 3f64.sqrt()).abs() < 1e-9);
        // nothing defined: the proposed values, with no ratio
        assert_eq!(choose(&[Some(c.clone()), Some(c)]), (0, None));
        let (i, s) = choose(&[Some(a), Some(vec![-0.01, 0.03])]);
        assert_eq!(i, 0);
        assert!((s.unwrap() - 2f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn drawdown_is_measured_from_the_running_peak() {
        assert_eq!(max_drawdown_pct(100.0, [].into_iter()), None);
        let dd = max_drawdown_pct(100.0, [110.0, 99.0, 120.0, 108.0].into_iter()).unwrap();
        assert!((dd - 10.0).abs() < 1e-12, "{dd}");
    }

    #[test]
    fn the_split_keeps_the_last_bars_out() {
        let s = Series {
            symbol: "X".into(),
            interval: trading_core::Interval::H1,
            candles: (0..10)
                .map(|i| trading_core::Candle {
                    ts: i * 3_600,
                    open: 1.0,
                    high: 1.0,
                    low: 1.0,
                    close: 1.0,
                    volume: 1.0,
                })
                .collect(),
        };
        // closes at 1h..10h; 3 held out: development ends at the 7th close
        assert_eq!(split(std::slice::from_ref(&s), 3), Some(7 * 3_600));
        assert_eq!(split(std::slice::from_ref(&s), 9), None);
    }
}
