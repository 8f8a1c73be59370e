//! The `host` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use host::config::{RiskFile, Settings};
use host::shell::{self, Shell};
use host_control::socket::{self as control, ControlContext, Reply, Request};
use host_control::Paths;
use host_sandbox::bindings::CONTRACT_VERSION;
use host_store::{archive, events};
use host_trading::feed::{Feed, ReplayFeed};
use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use trading_core::Interval;

#[derive(Parser)]
#[command(
    name = "host",
    version,
    about = "Autonomous crypto trading host running sandboxed WASM strategies"
)]
struct Cli {
    /// Where the database, caches and state live.
    #[arg(long, global = true, env = "HOST_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Where strategy versions are archived.
    #[arg(
        long,
        global = true,
        env = "HOST_ARCHIVE_DIR",
        default_value = "archive"
    )]
    archive_dir: PathBuf,
    /// settings.toml (default: config/settings.toml if present, else embedded defaults).
    #[arg(long, global = true, env = "HOST_CONFIG")]
    config: Option<PathBuf>,
    /// risk_limits.toml (default: config/risk_limits.toml if present, else embedded defaults).
    #[arg(long, global = true, env = "HOST_RISK_LIMITS")]
    risk_limits: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the host (paper mode by default, replaying candles when given).
    Run {
        /// Replay this OHLCV CSV instead of a live feed.
        #[arg(long)]
        replay: Option<PathBuf>,
        #[arg(long, default_value = "BTCUSD")]
        symbol: String,
        #[arg(long, default_value = "1h")]
        interval: String,
        /// Replay speed: N times real time, or `max`.
        #[arg(long, default_value = "max")]
        speed: String,
        /// Run orchestrator reviews automatically: the nightly window and the tuning
        /// triggers (loss, losing streak, every N trades, ATR spike, `host review`).
        #[arg(long)]
        orchestrate: bool,
        /// Proposer for automatic reviews: offline or claude (default: settings).
        #[arg(long)]
        proposer: Option<String>,
        /// Exit when the replay ends instead of waiting for commands.
        #[arg(long)]
        exit_at_end: bool,
        /// API and dashboard address (default: [api] addr in settings, 127.0.0.1:8080); `off` disables.
        #[arg(long, env = "HOST_API_ADDR")]
        api_addr: Option<String>,
    },
    /// Deploy a strategy component (hot-swapped between two scans if a host runs).
    Deploy {
        path: PathBuf,
        /// Strategy parameter, e.g. --param fast=10
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// The strategy's Rust source, archived beside it.
        #[arg(long)]
        source: Option<PathBuf>,
    },
    /// Restore the previous strategy version from the archive.
    Rollback,
    /// Halt new entries on the running host (exits still run) until `host resume`.
    Halt,
    /// Clear halts and the kill switch on the running host.
    Resume,
    /// Kill switch: cancel every order, close every position at market, refuse all signals.
    Kill {
        /// Confirm (the kill switch closes every position).
        #[arg(long)]
        yes: bool,
    },
    /// Ask the orchestrator for a review now (a manual tuning trigger).
    Review {
        #[arg(long, default_value = "manual review")]
        reason: String,
    },
    /// Show the active strategy, its version, the contract version and the scan state.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List archived strategy versions.
    Modules {
        #[arg(long)]
        json: bool,
    },
    /// Verify the hash chain of the event log.
    Audit {
        #[command(subcommand)]
        what: AuditCmd,
    },
    /// Print sandbox benchmarks: analyze call cost, instantiation, deploy-to-serving.
    Bench {
        /// Directory holding the guest components (target/wasm).
        #[arg(long, default_value = "target/wasm")]
        wasm_dir: PathBuf,
        /// Instead: backtest throughput (bars/s) of sma-crossover, WASM vs native, over this CSV.
        #[arg(long, value_name = "CSV")]
        backtest: Option<PathBuf>,
        /// `backtest`: the same as --backtest, over FILE (default ../shared/data/BTCUSD-1h.csv,
        /// else data/sample/BTCUSD-1h.csv).
        #[arg(value_name = "WHAT")]
        what: Option<String>,
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Backtest a strategy component over historical candles.
    Backtest(BacktestArgs),
    /// The nightly orchestrator: one review-and-improve cycle (propose, check, backtest, paper-stage, deploy or reject).
    Orchestrate {
        /// Run now instead of only inside the nightly window.
        #[arg(long)]
        now: bool,
        /// offline (templates) or claude (default: settings; auto = claude when ANTHROPIC_API_KEY is set).
        #[arg(long)]
        proposer: Option<String>,
        /// Seed of the offline proposer and the fuzz run (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Repository root: deploy/guest-env.sh, strategies/sdk, Cargo.lock.
        #[arg(long, default_value = ".")]
        repo_root: PathBuf,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The candle store (in the host database): import, list, aggregate, prune.
    Data {
        #[command(subcommand)]
        what: DataCmd,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// Import an OHLCV CSV (ts,open,high,low,close,volume); whole or not at all, idempotent.
    Import {
        file: PathBuf,
        /// Default: from the file name (BTCUSD-1h.csv).
        #[arg(long)]
        symbol: Option<String>,
        /// 5m, 1h or 1d. Default: from the file name, else the candles' spacing.
        #[arg(long)]
        interval: Option<String>,
    },
    /// Stored series: symbol, interval, count, first and last candle.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Build 1h candles from 5m and 1d from 1h (for one symbol, or all).
    Aggregate {
        #[arg(long)]
        symbol: Option<String>,
    },
    /// Delete candles older than each tier's retention (days, or `forever`).
    Prune {
        #[arg(long, default_value = "30")]
        keep_5m: String,
        #[arg(long, default_value = "730")]
        keep_1h: String,
        #[arg(long, default_value = "forever")]
        keep_1d: String,
        /// Prune as of this Unix time (default: now).
        #[arg(long)]
        now: Option<i64>,
    },
}

#[derive(clap::Args)]
struct BacktestArgs {
    /// The strategy component.
    #[arg(long)]
    strategy: PathBuf,
    /// OHLCV CSV (ts,open,high,low,close,volume), named like BTCUSD-1h.csv, or a symbol
    /// in the candle store (`host data list`); repeatable.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// The store tier used for --data SYMBOL: 5m, 1h or 1d.
    #[arg(long, default_value = "1h")]
    interval: String,
    /// Parameter sweep, e.g. --sweep fast=5..20:5 (or fast=5,8,13); repeatable, cartesian
    /// product with the others and the fixed --param values, run in parallel.
    #[arg(long, value_name = "NAME=FROM..TO[:STEP]")]
    sweep: Vec<String>,
    /// Exit non-zero if the strategy trapped (a module_error) during the run.
    #[arg(long)]
    fail_on_trap: bool,
    /// Exit non-zero if the run broke a risk limit (see risk_breaches in the report).
    #[arg(long)]
    fail_on_breach: bool,
    /// Symbol of each --data file, in order (default: from the file name).
    #[arg(long)]
    symbol: Vec<String>,
    /// First day traded (YYYY-MM-DD, UTC); earlier candles are history only.
    #[arg(long)]
    from: Option<String>,
    /// Last day included (YYYY-MM-DD, UTC).
    #[arg(long)]
    to: Option<String>,
    #[arg(long, default_value = "10000")]
    capital: rust_decimal::Decimal,
    #[arg(long, default_value = "26")]
    fee_bps: rust_decimal::Decimal,
    #[arg(long, default_value = "5")]
    slippage_bps: rust_decimal::Decimal,
    /// Strategy parameter, e.g. --param fast=10
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
    /// Write report.json, trades.csv and equity.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also run K walk-forward folds (70% in-sample, 30% out-of-sample each).
    #[arg(long, value_name = "K")]
    walk_forward: Option<usize>,
    /// Clear a risk halt after this many hours (default: it stays latched, as live).
    #[arg(long, value_name = "HOURS")]
    resume_after_hours: Option<u32>,
}

#[derive(Subcommand)]
enum AuditCmd {
    Verify,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn config_path(given: Option<PathBuf>, default: &str) -> Option<PathBuf> {
    given.or_else(|| Some(PathBuf::from(default)).filter(|p| p.exists()))
}

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
            &interval,
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
        Cmd::Resume => command(
            &paths,
            Request::Resume {
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
            let (cold, warm) = host_orchestrator::bench(
                &paths,
                &settings.market(),
                &settings.orchestrator,
                &risk,
                Path::new("."),
            )?;
            println!("orchestrator cycle (offline proposer, compile included): first {cold:.1} s, warm {warm:.1} s (goal < 60 s)");
            Ok(())
        }
        Cmd::Bench { what: Some(w), .. } => bail!("unknown bench {w:?}: expected `backtest`"),
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

fn data(what: DataCmd, paths: &Paths) -> Result<()> {
    use host_store::candles;
    std::fs::create_dir_all(&paths.data_dir)
        .with_context(|| paths.data_dir.display().to_string())?;
    let mut conn = host_store::db::open(&paths.db())?;
    match what {
        DataCmd::Import {
            file,
            symbol,
            interval,
        } => {
            let iv = interval
                .map(|s| {
                    Interval::parse(&s)
                        .with_context(|| format!("--interval {s:?}: expected 5m, 1h or 1d"))
                })
                .transpose()?;
            let r = candles::import_file(&mut conn, &file, symbol.as_deref(), iv)?;
            println!(
                "{} {}: {} rows: {} inserted, {} updated, {} unchanged",
                r.symbol,
                r.interval.name(),
                r.rows,
                r.stats.inserted,
                r.stats.updated,
                r.stats.unchanged
            );
        }
        DataCmd::List { json } => {
            let list = candles::list(&conn)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", candles::list_table(&list));
            }
        }
        DataCmd::Aggregate { symbol } => {
            let syms = match symbol {
                Some(s) => vec![s],
                None => candles::symbols(&conn)?,
            };
            for s in syms {
                let (h, d) = candles::aggregate(&mut conn, &s, None)?;
                println!(
                    "{s}: 1h {} inserted, {} updated, {} unchanged; 1d {} inserted, {} updated, {} unchanged",
                    h.inserted, h.updated, h.unchanged, d.inserted, d.updated, d.unchanged
                );
            }
        }
        DataCmd::Prune {
            keep_5m,
            keep_1h,
            keep_1d,
            now,
        } => {
            let retention = candles::Retention {
                m5: candles::parse_keep(&keep_5m)?,
                h1: candles::parse_keep(&keep_1h)?,
                d1: candles::parse_keep(&keep_1d)?,
            };
            let now = now.unwrap_or_else(|| chrono::Utc::now().timestamp());
            let p = candles::prune(&mut conn, now, &retention)?;
            println!("pruned 5m {}, 1h {}, 1d {}", p.m5, p.h1, p.d1);
        }
    }
    Ok(())
}

fn backtest(a: BacktestArgs, paths: &Paths, settings: &Settings, risk: RiskFile) -> Result<()> {
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
                println!("wrote sweep.json, sweep.csv to {}", dir.display());
            }
        }
        return bt::check_sweep(&report, a.fail_on_trap, a.fail_on_breach).map_err(Into::into);
    }
    let report = bt::run(&cfg)?;
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

#[allow(clippy::too_many_arguments)]
fn run(
    paths: Paths,
    settings: Settings,
    risk: RiskFile,
    replay: Option<PathBuf>,
    symbol: &str,
    interval: &str,
    speed: &str,
    exit_at_end: bool,
    api_addr: Option<&str>,
    orchestrate: Option<String>,
) -> Result<()> {
    let interval = Interval::parse(interval)
        .with_context(|| format!("--interval {interval:?}: expected 5m, 1h or 1d"))?;
    let speed = match speed {
        "max" => None,
        s => Some(
            s.parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .with_context(|| format!("--speed {s:?}: expected a positive number or max"))?,
        ),
    };
    // live mode without --replay trades on the exchange's own market feed
    let live_feed = replay.is_none() && settings.mode == host::config::Mode::Live;
    let replay = if live_feed {
        None
    } else {
        let replay = replay
            .or_else(|| Some(PathBuf::from("data/sample/BTCUSD-1h.csv")).filter(|p| p.exists()));
        let Some(replay) = replay else {
            bail!(
                "no market feed: pass --replay FILE.csv, or set mode = \"live\" in settings.toml"
            );
        };
        Some(replay)
    };
    let mut shell = Shell::start(paths.clone(), settings.clone(), risk.clone())?;
    let (tx, rx) = channel();
    let ctx = ControlContext {
        runtime: shell.runtime.clone(),
        paths: paths.clone(),
        symbols: settings.symbols.clone(),
        strategy_params: settings.strategy_params.clone(),
        risk,
        commands: tx.clone(),
    };
    control::serve(ctx.clone()).context("control socket")?;
    let people = host_control::handle::HostHandle::new(ctx, shell.bus.clone());
    if let Some(p) = orchestrate {
        let choice = host_orchestrator::choose_proposer(if p.is_empty() {
            &settings.orchestrator.proposer
        } else {
            &p
        })?;
        // the scan loop's own reviews deploy through its handle: the swap lands between two scans
        shell.reviews = Some(shell::Reviews::new(
            &settings,
            PathBuf::from("."),
            choice,
            std::sync::Arc::new(people.clone()),
        )?);
    }
    host_api::serve(
        people.clone(),
        &settings.api,
        std::sync::Arc::new(settings.clone()),
        api_addr,
    )?;
    host_telegram::spawn(people, &settings.telegram);
    let _watcher = host::dropdir::watch(
        shell.runtime.clone(),
        &paths,
        &shell.settings,
        &shell.risk,
        tx.clone(),
    )?;
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
            });
        }
        let _ = sig_tx.send(host_control::Command::Shutdown);
    });
    let mut feed: Box<dyn Feed> = match &replay {
        Some(file) => {
            let bars = shell::read_replay(file, symbol, interval)?;
            tracing::info!(bars = bars.len(), file = %file.display(), "replaying candles");
            Box::new(ReplayFeed::new(bars, speed))
        }
        None => {
            tracing::info!(venue = ?shell.settings.venue, "live market feed");
            shell.wall_clock = true;
            shell.backfill();
            Box::new(host_trading::live::ExchangeFeed::connect(
                shell.settings.venue,
                &shell.settings.exchanges,
                &shell.settings.symbols,
            )?)
        }
    };
    shell.run(feed.as_mut(), &rx, exit_at_end);
    let _ = std::fs::remove_file(paths.socket());
    println!("stopped after {} scans", shell.scan_seq);
    Ok(())
}

fn print_deployed(r: &host_control::DeployOutcome, live: bool) {
    let v = r.version;
    match (live, r.previous) {
        (true, Some(p)) => println!(
            "deployed v{v} (was v{p}); serving from scan {}",
            r.first_scan
        ),
        (true, None) => println!("deployed v{v}; serving from scan {}", r.first_scan),
        (false, _) => println!("deployed v{v}; no host is running, the next start uses it"),
    }
}

fn deploy(
    paths: &Paths,
    settings: &Settings,
    risk: &RiskFile,
    path: &Path,
    params: Vec<(String, String)>,
    source: Option<&Path>,
) -> Result<()> {
    let abs = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    let code = source
        .map(std::fs::read_to_string)
        .transpose()
        .context("--source")?;
    let req = Request::Deploy {
        path: abs.clone(),
        params: params.clone(),
        source: code.clone(),
        origin: None,
    };
    match control::request(&paths.socket(), &req)? {
        Some(Reply::Deployed(r)) => print_deployed(&r, true),
        Some(Reply::Error { message }) => {
            bail!("deploy refused, the running strategy stays: {message}")
        }
        Some(other) => bail!("unexpected reply {other:?}"),
        None => {
            let rt = host_sandbox::Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
            let bytes = std::fs::read(&abs)?;
            let mut p = host_control::prepare(
                &rt,
                bytes,
                risk,
                &settings.symbols,
                params,
                &format!("deploy {}", abs.display()),
            )
            .map_err(|e| anyhow::anyhow!("deploy refused: {e}"))?;
            p.code = code;
            let o = host_control::deploy_offline(paths, p, now_unix())?;
            print_deployed(&o, false);
        }
    }
    Ok(())
}

fn rollback(paths: &Paths, settings: &Settings, risk: &RiskFile) -> Result<()> {
    match control::request(&paths.socket(), &Request::Rollback)? {
        Some(Reply::Deployed(r)) => println!("rolled back to v{}", r.version),
        Some(Reply::Error { message }) => bail!("rollback refused: {message}"),
        Some(other) => bail!("unexpected reply {other:?}"),
        None => {
            let rt = host_sandbox::Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
            let p = host_control::prepare_archived(
                &rt,
                paths,
                &settings.symbols,
                risk,
                host_control::Archived::Previous,
            )
            .map_err(|e| anyhow::anyhow!("rollback refused: {e}"))?;
            let o = host_control::deploy_offline(paths, p, now_unix())?;
            println!("rolled back to v{}; the next start uses it", o.version);
        }
    }
    Ok(())
}

/// Sends a halt/resume/kill/review request to the running host and prints its answer.
fn command(paths: &Paths, req: Request) -> Result<()> {
    match control::request(&paths.socket(), &req)? {
        None => bail!("no host is running (start one with `host run`)"),
        Some(Reply::Halted { newly: true }) => {
            println!("halted: new entries are refused until `host resume`")
        }
        Some(Reply::Halted { newly: false }) => println!("entries were already halted"),
        Some(Reply::Resumed { cleared: true }) => {
            println!("resumed: halts and the kill switch are cleared")
        }
        Some(Reply::Resumed { cleared: false }) => println!("nothing to resume"),
        Some(Reply::Killed(k)) => println!(
            "KILLED: cancelled {} orders; closing at market: {}",
            k.cancelled_orders,
            if k.closing.is_empty() {
                "no positions".to_string()
            } else {
                k.closing.join(", ")
            }
        ),
        Some(Reply::Recorded { seq }) => match seq {
            Some(seq) => println!("review requested (event {seq})"),
            None => println!("review requested (event null)"),
        },
        Some(Reply::Error { message }) => bail!("{message}"),
        Some(other) => bail!("unexpected reply: {other:?}"),
    }
    Ok(())
}

/// Wall time in Unix seconds, for commands run outside the scan loop.
fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

fn status(paths: &Paths, settings: &Settings, risk: &RiskFile, json: bool) -> Result<()> {
    let live: Option<host_control::Status> =
        match control::request(&paths.socket(), &Request::Status) {
            Ok(Some(Reply::Status(s))) => Some(*s),
            _ => None,
        };
    let conn = host_store::db::open(&paths.db())?;
    let active = archive::active(&conn)?;
    let versions = archive::list(&conn)?.len();
    let (scans, last_scan): (i64, Option<i64>) =
        conn.query_row("SELECT COUNT(*), MAX(ts) FROM scan_results", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let account = match &live {
        Some(s) => Some(s.clone()),
        None => shell::stored_status(&conn, settings, risk)?,
    };
    let out = serde_json::json!({
        "running": live.is_some(),
        "contract_version": CONTRACT_VERSION,
        "strategy": active,
        "strategy_versions": versions,
        "scans": scans,
        "last_scan_ts": last_scan,
        "account": account,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mode = account.as_ref().map(|a| a.mode).unwrap_or(settings.mode);
    println!(
        "host:      {} ({} mode)",
        if live.is_some() {
            "running"
        } else {
            "not running"
        },
        serde_json::to_value(mode)?.as_str().unwrap_or("?")
    );
    println!("contract:  trading:contract@{CONTRACT_VERSION}");
    match &active {
        Some(a) => println!(
            "strategy:  v{} ({}…, contract {}, {})",
            a.version,
            &a.hash[..12],
            a.contract_version,
            a.origin
        ),
        None => println!("strategy:  none deployed"),
    }
    if let Some(p) = live.as_ref().and_then(|l| l.paused.as_deref()) {
        println!("PAUSED:    {p}");
    }
    println!("versions:  {versions}");
    println!(
        "scans:     {scans} (last at {})",
        last_scan
            .map(host_trading::backtest::format_ts)
            .unwrap_or_else(|| "never".into())
    );
    if let Some(a) = &account {
        println!(
            "account:   equity {} | cash {} | P&L {} (realized {}, unrealized {}, today {}) | fees {}",
            a.equity, a.cash, a.total_pnl, a.realized_pnl, a.unrealized_pnl, a.daily_pnl, a.fees_paid
        );
        println!(
            "trades:    {} closed | {} open orders | drawdown {}%",
            a.closed_trades,
            a.open_orders,
            a.drawdown_pct.round_dp(2)
        );
        if a.positions.is_empty() {
            println!("positions: none");
        }
        for p in &a.positions {
            println!(
                "position:  {} {} @ {} (mark {}, value {}, unrealized {}) SL {} TP {}",
                p.symbol,
                p.qty,
                p.avg_entry.round_dp(2),
                p.mark.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                p.value,
                p.unrealized_pnl,
                p.stop_loss
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
                p.take_profit
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        match (&a.halt, a.killed) {
            (_, true) => println!("risk:      KILLED (every signal refused until `host resume`)"),
            (Some(h), _) => println!("risk:      HALTED: {h}"),
            (None, false) => println!("risk:      ok"),
        }
    }
    Ok(())
}

fn modules(paths: &Paths, json: bool) -> Result<()> {
    let conn = host_store::db::open(&paths.db())?;
    let list = archive::list(&conn)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<8} {:<10} {:<14} {:<20} origin",
        "version", "status", "hash", "deployed"
    );
    for v in list {
        println!(
            "v{:<7} {:<10} {:<14} {:<20} {}",
            v.version,
            v.status,
            &v.hash[..12],
            v.deployed_at.unwrap_or_default(),
            v.origin
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn orchestrate(
    paths: Paths,
    settings: Settings,
    risk: RiskFile,
    now: bool,
    proposer: Option<String>,
    seed: Option<u64>,
    repo_root: PathBuf,
    json: bool,
) -> Result<()> {
    use host_orchestrator::{self as orch, schedule};
    let o = settings.orchestrator.clone();
    let t = chrono::Utc::now();
    let (start, end) = (
        schedule::parse_hhmm(&o.window_start).context("window_start")?,
        schedule::parse_hhmm(&o.window_end).context("window_end")?,
    );
    if !now && !schedule::in_window(t, start, end) {
        println!(
            "outside the nightly window ({}–{} New York, now {}); pass --now to run anyway",
            o.window_start,
            o.window_end,
            schedule::new_york(t).format("%H:%M")
        );
        return Ok(());
    }
    let choice = orch::choose_proposer(proposer.as_deref().unwrap_or(&o.proposer))?;
    std::fs::create_dir_all(&paths.data_dir)?;
    let runtime = host_sandbox::Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
    let opts = orch::CycleOptions {
        deployer: std::sync::Arc::new(host_control::SocketOrOffline {
            paths: paths.clone(),
            runtime,
            risk: risk.clone(),
            symbols: settings.symbols.clone(),
        }),
        paths,
        orchestrator: o,
        market: settings.market(),
        risk,
        repo_root,
        proposer: choice,
        seed: seed.unwrap_or(t.timestamp() as u64),
        trigger: if now {
            "manual".into()
        } else {
            "nightly".into()
        },
        now: t,
        api_key: None,
    };
    let report = orch::run_cycle(&opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.headline());
        println!("report: {}", report.report_path.display());
        println!("candidate: {}", report.candidate_dir.display());
    }
    Ok(())
}
