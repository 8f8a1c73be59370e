//! The selection gate a screened candidate passes before its forward shadow:
//! (1) its development backtest keeps within the drawdown limit; (2) the
//! walk-forward over the development part (parameters fitted in sample when
//! the candidate comes from a template or is a `tune_params` decision — then
//! over the neighbourhood of its values —, scored out of sample) beats the
//! incumbent's; (3) the out-of-sample daily-return difference is significant
//! by the stationary bootstrap *and* the deflated Sharpe ratio counting every
//! trial so far; (4) the fitted parameters, fitted again on the whole
//! development part, are baked into the source; (5) the held-out window,
//! touched here for the first time, does not contradict it.
//!
//! Invariants: no deploy on a coin flip — a candidate with too few paired
//! days has no p-value and fails; the held-out figures go to the report
//! only (a held-out refusal names no figure, so the model's memory of it
//! carries none).

use super::checks::{from_module, CheckFigures, Rejection};
use super::evaluate::{self, EvalInput, Evaluation, WindowResult};
use super::proposer::{self, Proposal, Rng};
use super::selection::{self, Significance, SignificanceConfig};
use host_sandbox::StrategyModule;
use host_trading::backtest::{self, BacktestConfig};
use serde::Serialize;

/// Knobs of the gate (`[orchestrator]` in settings.toml).
#[derive(Debug, Clone, Serialize)]
pub struct GateConfig {
    pub folds: usize,
    pub significance: SignificanceConfig,
    /// Floor of the candidate's out-of-sample daily Sharpe ratio.
    pub min_oos_sharpe: f64,
    /// The held-out window refuses a candidate returning this many
    /// percentage points less than the incumbent there.
    pub holdout_tolerance_pct: f64,
    pub max_drawdown_pct: f64,
    /// Parameter sets tried per template by the cross-validated search.
    pub search_candidates: usize,
    /// Largest neighbourhood grid a `tune_params` decision is fitted over.
    pub tune_grid_max: usize,
}

/// The incumbent measured the same way, once per cycle.
pub struct IncumbentEval {
    pub module: StrategyModule,
    pub params: Vec<(String, String)>,
    pub evaluation: Evaluation,
    pub holdout: WindowResult,
}

/// What the gate measured (in the report; the held-out part never reaches the model).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SelectionFigures {
    /// The host's own candles, or the bundled files (the store had too few) and why.
    pub data_source: Option<crate::data::DataSource>,
    pub development: Option<(i64, i64)>,
    pub holdout: Option<(i64, i64)>,
    pub folds: usize,
    /// Parameter sets the search tried (1: the candidate's own).
    pub grid_size: usize,
    pub fitted_params: Vec<(String, String)>,
    pub candidate: Option<Evaluation>,
    pub incumbent: Option<Evaluation>,
    pub significance: Option<Significance>,
    pub holdout_candidate: Option<WindowResult>,
    pub holdout_incumbent: Option<WindowResult>,
    /// How the parameters were fitted (none: the candidate's own set was scored).
    pub fit: Option<ParameterFit>,
}

/// Which grid the walk-forward fitted over (each fold's choice is in
/// `candidate.folds[i].params`; the whole development part's in `fitted_params`).
#[derive(Debug, Clone, Serialize)]
pub struct ParameterFit {
    pub method: FitMethod,
    pub grid: Vec<Vec<(String, String)>>,
}

/// Where a grid comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FitMethod {
    /// The offline proposer's template: its values, then seeded draws from the template's space.
    TemplateSearch,
    /// A `tune_params` decision: the proposed values and ± one or two steps of each.
    TuneNeighbourhood,
}

/// A `tune_params` decision's grid: the proposed values first, then each
/// numeric parameter moved one step down and up, then two steps, then two
/// parameters one step at once, until `max` sets. A step is a tenth of the
/// value (at least 1 for an integer, 0.1 for a zero); a positive value
/// stays positive (an integer at least 1), a non-negative one non-negative;
/// a value that is not a number is kept as given.
pub fn neighbourhood(params: &[(String, String)], max: usize) -> Vec<Vec<(String, String)>> {
    let mut out = vec![params.to_vec()];
    let moved = |i: usize, k: i64| -> Option<String> {
        let raw = params[i].1.trim();
        let v: f64 = raw.parse().ok().filter(|v: &f64| v.is_finite())?;
        let integer = raw.parse::<i64>().is_ok();
        let step = if integer {
            (v.abs() / 10.0).round().max(1.0)
        } else if v == 0.0 {
            0.1
        } else {
            v.abs() / 10.0
        };
        let x = v + k as f64 * step;
        let ok = if v > 0.0 {
            x > 0.0 && (!integer || x >= 1.0)
        } else {
            v < 0.0 || x >= 0.0
        };
        ok.then(|| {
            if integer {
                format!("{}", x as i64)
            } else {
                format!("{}", (x * 1e6).round() / 1e6)
            }
        })
    };
    let mut moves: Vec<Vec<(usize, i64)>> = Vec::new();
    for d in [1i64, 2] {
        for i in 0..params.len() {
            moves.push(vec![(i, -d)]);
            moves.push(vec![(i, d)]);
        }
    }
    for i in 0..params.len() {
        for j in i + 1..params.len() {
            for (a, b) in [(-1, -1), (-1, 1), (1, -1), (1, 1)] {
                moves.push(vec![(i, a), (j, b)]);
            }
        }
    }
    for m in moves {
        if out.len() >= max.max(1) {
            break;
        }
        let mut set = params.to_vec();
        let applied = m.iter().all(|&(i, k)| match moved(i, k) {
            Some(v) => {
                set[i].1 = v;
                true
            }
            None => false,
        });
        if applied && !out.contains(&set) {
            out.push(set);
        }
    }
    out
}

/// The parameter sets to search: the proposal's own values first, then
/// `n − 1` seeded draws from its template's space. A proposal that is not
/// a template has one set, its own defaults.
pub fn grid(p: &Proposal, seed: u64, n: usize) -> Vec<Vec<(String, String)>> {
    search_grid(p, seed, n, 1).1
}

/// The grid the walk-forward fits over and how it was made: a `tune_params`
/// decision with parameters gets [`neighbourhood`] of its values (at most
/// `tune_max` sets); otherwise [`grid`]'s template search.
pub fn search_grid(
    p: &Proposal,
    seed: u64,
    n: usize,
    tune_max: usize,
) -> (FitMethod, Vec<Vec<(String, String)>>) {
    if p.decision == proposer::DecisionKind::TuneParams && !p.params.is_empty() {
        return (
            FitMethod::TuneNeighbourhood,
            neighbourhood(&p.params, tune_max),
        );
    }
    (FitMethod::TemplateSearch, template_grid(p, seed, n))
}

fn template_grid(p: &Proposal, seed: u64, n: usize) -> Vec<Vec<(String, String)>> {
    let Some((_, _, names)) = proposer::TEMPLATES.iter().find(|t| t.0 == p.template) else {
        return vec![Vec::new()];
    };
    let own: Vec<(String, String)> = names
        .iter()
        .filter_map(|n| p.params.iter().find(|(k, _)| k == n).cloned())
        .collect();
    let mut out = vec![own];
    let mut rng = Rng::new(seed ^ 0x005E_A2C4);
    while out.len() < n.max(1) {
        let values = proposer::mutate(&p.template, &mut rng);
        let set: Vec<(String, String)> = names
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.to_string(), format!("{v}")))
            .collect();
        if !out.contains(&set) {
            out.push(set);
        } else if out.len() > 1 && rng.range(0, 9) == 0 {
            break; // a tiny space: stop drawing duplicates
        }
    }
    out
}

/// The incumbent's walk-forward and held-out figures.
pub fn incumbent(
    input: &EvalInput,
    wasm: &[u8],
    params: &[(String, String)],
    cfg: &GateConfig,
) -> Result<IncumbentEval, Rejection> {
    let module = input
        .runtime
        .load_strategy(wasm)
        .map_err(|e| Rejection::Backtest {
            detail: format!("incumbent: {e}"),
        })?;
    let evaluation = evaluate::walk_forward(input, &module, &[params.to_vec()], cfg.folds)?;
    let holdout = held_out(input, &module, params)?;
    Ok(IncumbentEval {
        module,
        params: params.to_vec(),
        evaluation,
        holdout,
    })
}

fn held_out(
    input: &EvalInput,
    module: &StrategyModule,
    params: &[(String, String)],
) -> Result<WindowResult, Rejection> {
    let end = input.end().ok_or(Rejection::Backtest {
        detail: "no candles".into(),
    })?;
    let data = backtest::market_data(input.series, None);
    evaluate::window(input, module, params, &data, input.dev_end, end)
}

/// A candidate that passed the gate.
pub struct Passed {
    pub wasm: Vec<u8>,
    pub source: String,
    pub params: Vec<(String, String)>,
    /// The development backtest (archived as `backtest.json`).
    pub report: backtest::BacktestReport,
    pub expected_return_pct_per_day: f64,
    pub expected_max_drawdown_pct: f64,
}

/// Everything [`run`] needs besides the candidate.
pub struct GateInput<'a> {
    pub eval: &'a EvalInput<'a>,
    pub incumbent: Option<&'a IncumbentEval>,
    /// Candidates tested before this one, and their Sharpe ratios.
    pub trials: (u64, Vec<f64>),
    pub cfg: &'a GateConfig,
    pub seed: u64,
}

/// Runs the gate on a screened candidate. `compile` builds a re-rendered
/// source (after the parameter fit). The significance test's figures are in
/// `figures` whether it passed or not; the caller records the trial.
pub fn run(
    g: &GateInput,
    proposal: &Proposal,
    wasm: &[u8],
    module: &StrategyModule,
    compile: &dyn Fn(&str) -> Result<Vec<u8>, Rejection>,
    figures: &mut CheckFigures,
    sel: &mut SelectionFigures,
) -> Result<Passed, Rejection> {
    let input = g.eval;
    let cfg = g.cfg;
    // 1. the development backtest and its drawdown
    let mut b = BacktestConfig::new(wasm.to_vec(), input.series.to_vec(), input.risk.clone());
    b.capital = input.account.capital;
    b.fee_bps = input.account.engine.fill.fee_bps;
    b.slippage_bps = input.account.engine.fill.slippage_bps;
    b.sandbox = input.runtime.limits().clone();
    b.to = Some(input.dev_end);
    let (method, grid) = search_grid(proposal, g.seed, cfg.search_candidates, cfg.tune_grid_max);
    // the development backtest runs the proposed values (a template's are baked in)
    b.params = grid[0].clone();
    let report = backtest::run_with(input.runtime, &b).map_err(|e| match e {
        backtest::BacktestError::ModuleAt { error, .. } => from_module("backtest", error),
        other => Rejection::Backtest {
            detail: other.to_string(),
        },
    })?;
    figures.candidate_return_pct = report.return_pct;
    figures.candidate_max_drawdown_pct = report.metrics.max_drawdown_pct;
    figures.candidate_report = Some(serde_json::json!({
        "return_pct": report.return_pct, "metrics": report.metrics, "trades": report.trades.len(),
    }));
    if let Some(dd) = report
        .metrics
        .max_drawdown_pct
        .filter(|d| *d > cfg.max_drawdown_pct)
    {
        return Err(Rejection::Drawdown {
            drawdown_pct: dd,
            limit_pct: cfg.max_drawdown_pct,
        });
    }

    // 2. walk-forward: fitted in sample, scored out of sample
    sel.grid_size = grid.len();
    sel.fit = (grid.len() > 1).then(|| ParameterFit {
        method,
        grid: grid.clone(),
    });
    let cand = evaluate::walk_forward(input, module, &grid, cfg.folds)?;
    let inc = g.incumbent.map(|i| &i.evaluation);
    figures.candidate_oos_sharpe = cand.daily_sharpe;
    figures.incumbent_oos_sharpe = inc.and_then(|e| e.daily_sharpe);
    figures.incumbent_return_pct = g.incumbent.and_then(|i| i.evaluation.mean_daily_return_pct);
    sel.candidate = Some(cand.clone());
    sel.incumbent = inc.cloned();
    let needed = inc
        .and_then(|e| e.daily_sharpe)
        .unwrap_or(0.0)
        .max(cfg.min_oos_sharpe);
    if cand.daily_sharpe.is_none_or(|s| s <= needed) {
        return Err(Rejection::Underperforms {
            candidate: cand.daily_sharpe,
            incumbent: inc.and_then(|e| e.daily_sharpe),
            floor: cfg.min_oos_sharpe,
        });
    }

    // 3. significance: every grid point is a trial
    let s = selection::significance(
        &cand.daily,
        inc.map(|e| e.daily.as_slice()),
        g.trials.0 + grid.len() as u64,
        &g.trials.1,
        &cfg.significance,
    );
    sel.significance = Some(s.clone());
    if !s.passed {
        return Err(Rejection::NotSignificant {
            test: s.test.as_str().to_string(),
            trials: s.trials,
            days: s.days,
            p_value: s.p_value,
            deflated_sharpe_probability: s.deflated.map(|d| d.probability),
            alpha: s.alpha,
        });
    }

    // 4. the parameters fitted on the whole development part: baked into a
    // template's source, else passed at initialisation (the deployed PARAMS)
    let baked = proposer::TEMPLATES.iter().any(|t| t.0 == proposal.template);
    let (wasm, source, params, final_module) = if grid.len() > 1 {
        let start = input.start().unwrap_or(input.dev_end);
        let data = backtest::market_data(input.series, Some(input.dev_end));
        let (i, _) = evaluate::fit(input, module, &grid, &data, start, input.dev_end)?;
        let params = grid[i].clone();
        if baked {
            let values: Vec<f64> = params.iter().filter_map(|(_, v)| v.parse().ok()).collect();
            let source =
                proposer::render(&proposal.template, &values, g.seed).ok_or_else(|| {
                    Rejection::Backtest {
                        detail: format!("{} does not render with {params:?}", proposal.template),
                    }
                })?;
            let wasm = compile(&source)?;
            let m = input
                .runtime
                .load_strategy(&wasm)
                .map_err(|e| Rejection::Contract {
                    detail: e.to_string(),
                })?;
            (wasm, source, params, m)
        } else {
            (
                wasm.to_vec(),
                proposal.source.clone(),
                params,
                module.clone(),
            )
        }
    } else {
        (
            wasm.to_vec(),
            proposal.source.clone(),
            proposal.params.clone(),
            module.clone(),
        )
    };
    sel.fitted_params = params.clone();

    // 5. the held-out window, first touched now (baked-in defaults need no params)
    let runtime_params: &[(String, String)] = if baked || sel.fit.is_none() {
        &[]
    } else {
        &params
    };
    let h = held_out(input, &final_module, runtime_params)?;
    sel.holdout_candidate = Some(h.clone());
    if let Some(i) = g.incumbent {
        sel.holdout_incumbent = Some(i.holdout.clone());
        let (c, r) = (
            h.return_pct.unwrap_or(0.0),
            i.holdout.return_pct.unwrap_or(0.0),
        );
        if c < r - cfg.holdout_tolerance_pct {
            return Err(Rejection::HeldOut);
        }
    }
    if h.max_drawdown_pct.is_some_and(|d| d > cfg.max_drawdown_pct) {
        return Err(Rejection::HeldOut);
    }
    Ok(Passed {
        wasm,
        source,
        params,
        report,
        expected_return_pct_per_day: cand.mean_daily_return_pct.unwrap_or(0.0),
        expected_max_drawdown_pct: cand
            .max_drawdown_pct
            .unwrap_or(0.0)
            .max(figures.candidate_max_drawdown_pct.unwrap_or(0.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tune_params_grid_is_the_neighbourhood_of_the_proposed_values() {
        let kv = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let centre = kv(&[("period", "202"), ("stop", "1.5"), ("mode", "fast")]);
        let g = neighbourhood(&centre, 9);
        assert_eq!(g.len(), 9);
        assert_eq!(g[0], centre);
        assert_eq!(
            g[1],
            kv(&[("period", "182"), ("stop", "1.5"), ("mode", "fast")])
        );
        assert_eq!(
            g[2],
            kv(&[("period", "222"), ("stop", "1.5"), ("mode", "fast")])
        );
        assert_eq!(
            g[3],
            kv(&[("period", "202"), ("stop", "1.35"), ("mode", "fast")])
        );
        assert_eq!(
            g[4],
            kv(&[("period", "202"), ("stop", "1.65"), ("mode", "fast")])
        );
        assert_eq!(
            g[5],
            kv(&[("period", "162"), ("stop", "1.5"), ("mode", "fast")])
        );
        // a positive integer stays at least 1; the cap holds; no duplicates
        let g = neighbourhood(&kv(&[("n", "1")]), 9);
        assert_eq!(
            g,
            vec![kv(&[("n", "1")]), kv(&[("n", "2")]), kv(&[("n", "3")])]
        );
        assert_eq!(neighbourhood(&centre, 1), vec![centre.clone()]);
        let mut p = proposer::propose(3, None);
        p.decision = proposer::DecisionKind::TuneParams;
        p.template = "claude".into();
        p.params = centre.clone();
        let (m, g) = search_grid(&p, 3, 8, 9);
        assert_eq!(
            (m, g[0].clone(), g.len()),
            (FitMethod::TuneNeighbourhood, centre, 9)
        );
    }

    #[test]
    fn the_grid_starts_with_the_proposal_and_stays_in_its_template() {
        let p = proposer::propose(3, Some("sma-crossover"));
        let g = grid(&p, 3, 6);
        assert_eq!(g.len(), 6);
        assert_eq!(g[0], p.params);
        for set in &g {
            let names: Vec<&str> = set.iter().map(|(k, _)| k.as_str()).collect();
            let (_, _, want) = proposer::TEMPLATES
                .iter()
                .find(|t| t.0 == p.template)
                .unwrap();
            assert_eq!(names, want.to_vec());
        }
        assert_eq!(grid(&p, 3, 6), g, "seeded");
        let mut model = p.clone();
        model.template = "claude".into();
        assert_eq!(grid(&model, 3, 6), vec![Vec::<(String, String)>::new()]);
    }
}
