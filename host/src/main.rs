//! The `host` command line.

mod cli;
mod commands;

/// What the command files share: errors, settings, paths, the control protocol.
#[allow(unused_imports)]
mod prelude {
    pub(crate) use crate::cli::*;
    pub(crate) use crate::now_unix;
    pub(crate) use anyhow::{bail, Context, Result};
    pub(crate) use host::config::{RiskFile, Settings};
    pub(crate) use host::shell::{self, Shell};
    pub(crate) use host_control::socket::{self as control, ControlContext, Reply, Request};
    pub(crate) use host_control::Paths;
    pub(crate) use host_sandbox::bindings::CONTRACT_VERSION;
    pub(crate) use host_store::{archive, events};
    pub(crate) use host_trading::feed::{Feed, ReplayFeed};
    pub(crate) use std::path::{Path, PathBuf};
    pub(crate) use std::sync::mpsc::channel;
    pub(crate) use trading_core::Interval;
}

use clap::Parser;
use commands::backtest::backtest;
use commands::data::data;
use commands::deploy::{command, deploy, rollback};
use commands::orchestrate::orchestrate;
use commands::run::run;
use commands::status::{modules, status};
use prelude::*;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let paths = Paths {
        data_dir: cli.data_dir.clone(),
        archive_dir: cli.archive_dir.clone(),
    };
    let settings = Settings::load(config_path(cli.config, "config/settings.toml").as_deref())?;
    let risk = RiskFile::load(config_path(cli.risk_limits, "config/risk_limits.toml").as_deref())?;
    match cli.command {
        Cmd::Run {
            replay,
            symbol,
            interval,
            speed,
            exit_at_end,
            api_addr,
            orchestrate,
            proposer,
        } => run(
            paths,
            settings,
            risk,
            replay,
            &symbol,
            interval.as_deref(),
            &speed,
            exit_at_end,
            api_addr.as_deref(),
            orchestrate.then(|| proposer.unwrap_or_default()),
        ),
        Cmd::Deploy {
            path,
            params,
            source,
        } => deploy(&paths, &settings, &risk, &path, params, source.as_deref()),
        Cmd::Rollback => rollback(&paths, &settings, &risk),
        Cmd::Status { json } => status(&paths, &settings, &risk, json),
        Cmd::Halt => command(
            &paths,
            Request::Halt {
                by: Some("cli".into()),
            },
        ),
        Cmd::Resume { symbol: None } => command(
            &paths,
            Request::Resume {
                by: Some("cli".into()),
            },
        ),
        Cmd::Resume {
            symbol: Some(symbol),
        } => command(
            &paths,
            Request::ResumeSymbol {
                symbol,
                by: Some("cli".into()),
            },
        ),
        Cmd::ForceExit { symbol } => command(
            &paths,
            Request::ForceExit {
                symbol,
                by: Some("cli".into()),
            },
        ),
        Cmd::Pause { symbol } => command(
            &paths,
            Request::PauseSymbol {
                symbol,
                by: Some("cli".into()),
            },
        ),
        Cmd::Kill { yes } => {
            if !yes {
                bail!("the kill switch closes every position at market: confirm with `host kill --yes`");
            }
            command(
                &paths,
                Request::Kill {
                    by: Some("cli".into()),
                },
            )
        }
        Cmd::Review { reason } => command(
            &paths,
            Request::Review {
                by: Some("cli".into()),
                reason,
            },
        ),
        Cmd::Modules { json } => modules(&paths, json),
        Cmd::Audit {
            what: AuditCmd::Verify,
        } => {
            let conn = host_store::db::open(&paths.db())?;
            let n = events::verify(&conn)?;
            println!("event log intact: {n} events verified");
            Ok(())
        }
        Cmd::Bench {
            wasm_dir,
            what: Some(w),
            file,
            ..
        } if w == "backtest" => {
            let csv = file.unwrap_or_else(|| {
                let shared = PathBuf::from("../shared/data/BTCUSD-1h.csv");
                if shared.exists() {
                    shared
                } else {
                    PathBuf::from("data/sample/BTCUSD-1h.csv")
                }
            });
            host_trading::backtest::bench(&wasm_dir.join("sma-crossover.wasm"), &csv)?;
            Ok(())
        }
        Cmd::Bench { what: Some(w), .. } if w == "orchestrate" => {
            let b = host_orchestrator::bench(
                &paths,
                &settings.market(),
                &settings.orchestrator,
                &risk,
                Path::new("."),
            )?;
            println!(
                "orchestrator cycle (offline proposer, compile included): first {:.1} s, warm {:.1} s (goal < 60 s)",
                b.first, b.warm
            );
            println!(
                "warm cycle with two repairs ({} attempts, scripted answers: compile error, fuzz panic, good): {:.1} s (goal < 60 s) — {}",
                b.repaired_attempts, b.repaired, b.repaired_headline
            );
            Ok(())
        }
        Cmd::Bench {
            wasm_dir,
            what: Some(w),
            ..
        } if w == "scan" => host::bench::scan_latency(&wasm_dir, &settings, &risk),
        Cmd::Bench { what: Some(w), .. } if w == "idle" => {
            host::bench::idle(std::env::var_os("HOST_CONFIG").as_deref().map(Path::new))
        }
        Cmd::Bench { what: Some(w), .. } => {
            bail!("unknown bench {w:?}: expected backtest, orchestrate, scan or idle")
        }
        Cmd::Bench {
            wasm_dir,
            backtest: Some(csv),
            ..
        } => {
            host_trading::backtest::bench(&wasm_dir.join("sma-crossover.wasm"), &csv)?;
            Ok(())
        }
        Cmd::Bench { wasm_dir, .. } => host::bench::run(&wasm_dir, &settings, &risk),
        Cmd::Backtest(args) => backtest(args, &paths, &settings, risk),
        Cmd::Orchestrate {
            now,
            proposer,
            seed,
            repo_root,
            json,
        } => orchestrate(paths, settings, risk, now, proposer, seed, repo_root, json),
        Cmd::Data { what } => data(what, &paths),
    }
}

/// Wall time in Unix seconds, for commands run outside the scan loop.
pub(crate) fn now_unix() -> i64 {
    trading_core::Clock::now(&trading_core::WallClock)
}
