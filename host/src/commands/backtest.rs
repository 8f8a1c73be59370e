//! `host backtest`: a component through the same portfolio, fill and risk code as live trading.

#[allow(unused_imports)]
use crate::prelude::*;

pub(crate) fn backtest(
    a: BacktestArgs,
    paths: &Paths,
    settings: &Settings,
    risk: RiskFile,
) -> Result<()> {
    use host_trading::backtest as bt;
    use std::io::IsTerminal;
    if a.symbol.len() > a.data.len() {
        bail!("more --symbol than --data");
    }
    let interval = Interval::parse(&a.interval)
        .with_context(|| format!("--interval {:?}: expected 5m, 1h or 1d", a.interval))?;
    let series = a
        .data
        .iter()
        .enumerate()
        .map(|(i, p)| {
            bt::load_data(
                p,
                a.symbol.get(i).map(String::as_str),
                interval,
                &paths.db(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = std::fs::read(&a.strategy).with_context(|| a.strategy.display().to_string())?;
    let mut cfg = bt::BacktestConfig::new(bytes, series, risk);
    cfg.from = a.from.as_deref().map(bt::parse_date).transpose()?;
    cfg.to =
        a.to.as_deref()
            .map(|d| bt::parse_date(d).map(|t| t + 86_400))
            .transpose()?;
    cfg.capital = a.capital;
    cfg.fee_bps = a.fee_bps;
    cfg.slippage_bps = a.slippage_bps;
    cfg.params = a.params;
    cfg.sandbox = settings.sandbox.clone();
    cfg.walk_forward = a.walk_forward;
    cfg.resume_after_hours = a.resume_after_hours;
    cfg.breakdown = a.breakdown;
    cfg.progress = std::io::stderr().is_terminal();
    if !a.sweep.is_empty() {
        let sweeps = a
            .sweep
            .iter()
            .map(|s| bt::Sweep::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let report = bt::run_sweep(&cfg, &sweeps)?;
        if let Some(dir) = &a.out {
            bt::write_sweep(&report, dir)?;
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", bt::sweep_table(&report));
            if let Some(dir) = &a.out {
                println!(
                    "wrote sweep.json, sweep.csv, sweep.svg to {}",
                    dir.display()
                );
            }
        }
        return bt::check_sweep(&report, a.fail_on_trap, a.fail_on_breach).map_err(Into::into);
    }
    let report = bt::run(&cfg)?;
    for n in report.notes.iter().filter(|n| n.kind == "missing_interval") {
        eprintln!("backtest: {}", n.detail);
    }
    if let Some(dir) = &a.out {
        bt::write_outputs(&report, dir)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bt::summary(&report));
        if let Some(dir) = &a.out {
            println!(
                "wrote report.json, trades.csv, equity.svg to {}",
                dir.display()
            );
        }
    }
    bt::check(&report, a.fail_on_trap, a.fail_on_breach).map_err(Into::into)
}
