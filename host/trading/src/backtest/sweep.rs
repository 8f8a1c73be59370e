//! Parameter sweeps: `--sweep fast=5..20:5` (or `fast=5,8,13`), repeatable,
//! expanded into the cartesian product with the other sweeps and the fixed
//! `--param`s, each combination backtested on its own sandboxed instance, in
//! parallel over the cores (rayon; one shared runtime, the component compiled
//! once), then ranked by return (ties keep the expansion order); written as
//! sweep.json, sweep.csv and the heatmap sweep.svg ([`super::heatmap`]).

use super::{run_with, BacktestConfig, BacktestError};
use host_sandbox::Runtime;
use rayon::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use std::path::Path;
use std::str::FromStr;

/// Most values one sweep may expand to.
pub const MAX_VALUES: usize = 1_000;
/// Most combinations a sweep run may have.
pub const MAX_COMBINATIONS: usize = 10_000;

/// A refused `--sweep`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    #[error("{0:?}: expected NAME=FROM..TO[:STEP] or NAME=V1,V2,...")]
    Syntax(String),
    #[error("{spec:?}: {value:?} is not a number")]
    Number { spec: String, value: String },
    #[error("{0:?}: the step must be positive and FROM must not exceed TO")]
    Range(String),
    #[error("{spec:?} expands to more than {MAX_VALUES} values")]
    TooManyValues { spec: String },
    #[error("{0} is swept twice")]
    Duplicate(String),
    #[error("the sweeps make {0} combinations, more than {MAX_COMBINATIONS}")]
    TooManyCombinations(usize),
}

/// One swept parameter and its values, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sweep {
    pub name: String,
    pub values: Vec<String>,
}

impl Sweep {
    /// Parses `NAME=FROM..TO[:STEP]` (inclusive, exact decimal steps, default
    /// step 1) or `NAME=V1,V2,...`.
    pub fn parse(spec: &str) -> Result<Sweep, SweepError> {
        let syntax = || SweepError::Syntax(spec.to_string());
        let (name, rest) = spec.split_once('=').ok_or_else(syntax)?;
        let (name, rest) = (name.trim(), rest.trim());
        if name.is_empty() || rest.is_empty() {
            return Err(syntax());
        }
        let values = match rest.split_once("..") {
            None => {
                let v: Vec<String> = rest.split(',').map(|x| x.trim().to_string()).collect();
                if v.iter().any(String::is_empty) {
                    return Err(syntax());
                }
                v
            }
            Some((from, tail)) => {
                let (to, step) = tail.split_once(':').unwrap_or((tail, "1"));
                let num = |x: &str| {
                    Decimal::from_str(x.trim()).map_err(|_| SweepError::Number {
                        spec: spec.to_string(),
                        value: x.trim().to_string(),
                    })
                };
                let (from, to, step) = (num(from)?, num(to)?, num(step)?);
                if step <= Decimal::ZERO || from > to {
                    return Err(SweepError::Range(spec.to_string()));
                }
                let mut v = Vec::new();
                let mut x = from;
                while x <= to {
                    if v.len() == MAX_VALUES {
                        return Err(SweepError::TooManyValues {
                            spec: spec.to_string(),
                        });
                    }
                    v.push(x.normalize().to_string());
                    x = x
                        .checked_add(step)
                        .ok_or_else(|| SweepError::Range(spec.to_string()))?;
                }
                v
            }
        };
        if values.len() > MAX_VALUES {
            return Err(SweepError::TooManyValues {
                spec: spec.to_string(),
            });
        }
        Ok(Sweep {
            name: name.to_string(),
            values,
        })
    }
}

/// Every combination: the fixed params (those not swept, in order) followed
/// by one value of each sweep, the last sweep varying fastest.
pub fn combinations(
    fixed: &[(String, String)],
    sweeps: &[Sweep],
) -> Result<Vec<Vec<(String, String)>>, SweepError> {
    for (i, s) in sweeps.iter().enumerate() {
        if sweeps[..i].iter().any(|o| o.name == s.name) {
            return Err(SweepError::Duplicate(s.name.clone()));
        }
    }
    let total = sweeps
        .iter()
        .try_fold(1usize, |n, s| n.checked_mul(s.values.len()))
        .unwrap_or(usize::MAX);
    if total > MAX_COMBINATIONS {
        return Err(SweepError::TooManyCombinations(total));
    }
    let base: Vec<(String, String)> = fixed
        .iter()
        .filter(|(k, _)| !sweeps.iter().any(|s| &s.name == k))
        .cloned()
        .collect();
    let mut out = vec![base];
    for s in sweeps {
        out = out
            .into_iter()
            .flat_map(|p| {
                s.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((s.name.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    Ok(out)
}

/// One combination's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    pub rank: usize,
    pub params: Vec<(String, String)>,
    pub trades: u64,
    pub win_rate: Option<f64>,
    pub net_pnl: Decimal,
    pub final_value: Decimal,
    pub return_pct: Option<f64>,
    pub sharpe_ratio: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    pub module_errors: u64,
    pub risk_breaches: u64,
    /// Why this combination could not run (the others still do).
    pub error: Option<String>,
}

/// All combinations, best return first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    pub strategy_hash: String,
    pub combinations: usize,
    /// The swept parameters, as given (the heatmap's axes).
    pub swept: Vec<Sweep>,
    pub rows: Vec<SweepRow>,
}

/// Runs every combination of `sweeps` (with `config.params` fixed) in parallel.
pub fn run_sweep(config: &BacktestConfig, sweeps: &[Sweep]) -> Result<SweepReport, BacktestError> {
    let combos = combinations(&config.params, sweeps)?;
    let rt = Runtime::new(config.sandbox.clone(), None)
        .map_err(|e| BacktestError::Runtime(format!("{e:#}")))?;
    // compile once up front; every worker then instantiates from the cache
    let module = rt.load_strategy(&config.strategy)?;
    let strategy_hash = module.info().hash.clone();
    let mut base = config.clone();
    base.progress = false;
    base.walk_forward = None;
    let mut rows: Vec<SweepRow> = combos
        .par_iter()
        .map(|params| {
            let mut cfg = base.clone();
            cfg.params = params.clone();
            match run_with(&rt, &cfg) {
                Ok(r) => SweepRow {
                    rank: 0,
                    params: params.clone(),
                    trades: r.metrics.trade_count,
                    win_rate: r.metrics.win_rate,
                    net_pnl: r.metrics.net_pnl,
                    final_value: r.final_value,
                    return_pct: r.return_pct,
                    sharpe_ratio: r.metrics.sharpe_ratio,
                    max_drawdown_pct: r.metrics.max_drawdown_pct,
                    module_errors: r.module_errors,
                    risk_breaches: r.risk_breach_count,
                    error: None,
                },
                Err(e) => SweepRow {
                    rank: 0,
                    params: params.clone(),
                    trades: 0,
                    win_rate: None,
                    net_pnl: Decimal::ZERO,
                    final_value: Decimal::ZERO,
                    return_pct: None,
                    sharpe_ratio: None,
                    max_drawdown_pct: None,
                    module_errors: 0,
                    risk_breaches: 0,
                    error: Some(super::error_chain(&e)),
                },
            }
        })
        .collect();
    // best return first; undefined returns and failures last; stable for ties
    rows.sort_by(|a, b| {
        let key = |r: &SweepRow| (r.error.is_some(), r.return_pct.is_none());
        key(a).cmp(&key(b)).then_with(|| {
            b.return_pct
                .unwrap_or(0.0)
                .total_cmp(&a.return_pct.unwrap_or(0.0))
        })
    });
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    Ok(SweepReport {
        strategy_hash,
        combinations: combos.len(),
        swept: sweeps.to_vec(),
        rows,
    })
}

fn params_text(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn opt(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"))
}

/// The ranked table printed by `host backtest --sweep`.
pub fn sweep_table(r: &SweepReport) -> String {
    let width = r
        .rows
        .iter()
        .map(|x| params_text(&x.params).len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut s = format!(
        "SWEEP: {} combinations of {}\n{:>4}  {:<width$}  {:>6}  {:>12}  {:>9}  {:>7}  {:>9}\n",
        r.combinations,
        &r.strategy_hash[..r.strategy_hash.len().min(12)],
        "rank",
        "params",
        "trades",
        "net P&L",
        "return %",
        "Sharpe",
        "max DD %"
    );
    for x in &r.rows {
        let p = params_text(&x.params);
        match &x.error {
            Some(e) => s.push_str(&format!("{:>4}  {p:<width$}  error: {e}\n", x.rank)),
            None => s.push_str(&format!(
                "{:>4}  {p:<width$}  {:>6}  {:>12}  {:>9}  {:>7}  {:>9}\n",
                x.rank,
                x.trades,
                x.net_pnl.round_dp(2),
                opt(x.return_pct, 2),
                opt(x.sharpe_ratio, 2),
                opt(x.max_drawdown_pct, 2),
            )),
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `sweep.csv`: one row per combination, one column per parameter.
pub fn sweep_csv(r: &SweepReport) -> String {
    let mut names: Vec<&str> = Vec::new();
    for row in &r.rows {
        for (k, _) in &row.params {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    let mut s = String::from("rank");
    for n in &names {
        s.push(',');
        s.push_str(&csv_field(n));
    }
    s.push_str(",trades,win_rate,net_pnl,final_value,return_pct,sharpe_ratio,max_drawdown_pct,module_errors,risk_breaches,error\n");
    let o = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    for row in &r.rows {
        s.push_str(&row.rank.to_string());
        for n in &names {
            let v = row
                .params
                .iter()
                .find(|(k, _)| k == n)
                .map_or("", |(_, v)| v.as_str());
            s.push(',');
            s.push_str(&csv_field(v));
        }
        s.push_str(&format!(
            ",{},{},{},{},{},{},{},{},{},{}\n",
            row.trades,
            o(row.win_rate),
            row.net_pnl,
            row.final_value,
            o(row.return_pct),
            o(row.sharpe_ratio),
            o(row.max_drawdown_pct),
            row.module_errors,
            row.risk_breaches,
            csv_field(row.error.as_deref().unwrap_or(""))
        ));
    }
    s
}

/// Writes `sweep.json`, `sweep.csv` and `sweep.svg` (the heatmap) into `dir` (created if needed).
pub fn write_sweep(r: &SweepReport, dir: &Path) -> Result<(), BacktestError> {
    let io = |error| BacktestError::Io {
        path: dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| BacktestError::Config(format!("sweep.json: {e}")))?;
    std::fs::write(dir.join("sweep.json"), json + "\n").map_err(io)?;
    std::fs::write(dir.join("sweep.csv"), sweep_csv(r)).map_err(io)?;
    std::fs::write(dir.join("sweep.svg"), super::heatmap::sweep_svg(r)).map_err(io)?;
    Ok(())
}

/// Fails when asked to and a combination trapped, could not run, or broke a risk limit.
pub fn check_sweep(
    r: &SweepReport,
    fail_on_trap: bool,
    fail_on_breach: bool,
) -> Result<(), BacktestError> {
    for x in &r.rows {
        if fail_on_trap && (x.module_errors > 0 || x.error.is_some()) {
            return Err(BacktestError::Trapped {
                count: x.module_errors.max(1),
                ts: 0,
                detail: format!(
                    "with {}: {}",
                    params_text(&x.params),
                    x.error.as_deref().unwrap_or("module errors")
                ),
            });
        }
        if fail_on_breach && x.risk_breaches > 0 {
            return Err(BacktestError::Breached {
                count: x.risk_breaches,
                ts: 0,
                limit: "see the single run".into(),
                detail: format!("with {}", params_text(&x.params)),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_lists() {
        let s = Sweep::parse("fast=5..20:5").unwrap();
        assert_eq!(s.values, ["5", "10", "15", "20"]);
        assert_eq!(Sweep::parse("x=1..3").unwrap().values, ["1", "2", "3"]);
        assert_eq!(
            Sweep::parse("p=0.5..1.5:0.5").unwrap().values,
            ["0.5", "1", "1.5"]
        );
        assert_eq!(Sweep::parse("s=a,b").unwrap().values, ["a", "b"]);
        assert!(matches!(Sweep::parse("fast"), Err(SweepError::Syntax(_))));
        assert!(matches!(Sweep::parse("f=5..1"), Err(SweepError::Range(_))));
        assert!(matches!(
            Sweep::parse("f=1..5:0"),
            Err(SweepError::Range(_))
        ));
        assert!(matches!(
            Sweep::parse("f=1..x"),
            Err(SweepError::Number { .. })
        ));
        assert!(matches!(
            Sweep::parse("f=1..100000"),
            Err(SweepError::TooManyValues { .. })
        ));
    }

    #[test]
    fn cartesian_product_with_fixed_params() {
        let fixed = vec![
            ("slow".to_string(), "30".to_string()),
            ("fast".to_string(), "9".to_string()),
        ];
        let sweeps = [
            Sweep::parse("fast=5,10").unwrap(),
            Sweep::parse("size_pct=1..3").unwrap(),
        ];
        let c = combinations(&fixed, &sweeps).unwrap();
        assert_eq!(c.len(), 6);
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(c[0], p(&[("slow", "30"), ("fast", "5"), ("size_pct", "1")]));
        assert_eq!(
            c[5],
            p(&[("slow", "30"), ("fast", "10"), ("size_pct", "3")])
        );
        assert!(matches!(
            combinations(&[], &[sweeps[0].clone(), sweeps[0].clone()]),
            Err(SweepError::Duplicate(_))
        ));
    }
}
