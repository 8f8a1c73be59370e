//! The command line: every subcommand and its flags (clap), parsed here and
//! handed to one file per command under `commands/`.

#[allow(unused_imports)]
use crate::prelude::*;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "host",
    version,
    about = "Autonomous crypto trading host running sandboxed WASM strategies"
)]
pub(crate) struct Cli {
    /// Where the database, caches and state live.
    #[arg(long, global = true, env = "HOST_DATA_DIR", default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// Where strategy versions are archived.
    #[arg(
        long,
        global = true,
        env = "HOST_ARCHIVE_DIR",
        default_value = "archive"
    )]
    pub(crate) archive_dir: PathBuf,
    /// settings.toml (default: config/settings.toml if present, else embedded defaults).
    #[arg(long, global = true, env = "HOST_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// risk_limits.toml (default: config/risk_limits.toml if present, else embedded defaults).
    #[arg(long, global = true, env = "HOST_RISK_LIMITS")]
    pub(crate) risk_limits: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Start the host (paper mode by default, replaying candles when given).
    Run {
        /// Replay this OHLCV CSV instead of a live feed; repeatable (one file per
        /// symbol, bars of one close all delivered before its scan).
        #[arg(long)]
        replay: Vec<PathBuf>,
        /// Symbol of each --replay file, in order (default: from a file name like
        /// BTCUSD-1h.csv, else the first configured symbol).
        #[arg(long)]
        symbol: Vec<String>,
        /// Interval of the --replay files (default: from the file name, else the
        /// candles' spacing).
        #[arg(long)]
        interval: Option<String>,
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
    /// Clear halts and the kill switch on the running host; with a symbol,
    /// allow entries on that paused symbol again instead.
    Resume { symbol: Option<String> },
    /// Close SYMBOL's position at market on the next bar (paper mode).
    ForceExit { symbol: String },
    /// No new entries on SYMBOL (exits, stops and targets still run) until `host resume SYMBOL`.
    Pause { symbol: String },
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
        /// else data/sample/BTCUSD-1h.csv); `orchestrate`: one offline cycle, cold and warm;
        /// `scan`: close-to-signals latency for 1, 50 and 500 symbols; `idle`: RSS and CPU of an
        /// idle `host run`.
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
pub(crate) enum DataCmd {
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
pub(crate) struct BacktestArgs {
    /// The strategy component.
    #[arg(long)]
    pub(crate) strategy: PathBuf,
    /// OHLCV CSV (ts,open,high,low,close,volume), named like BTCUSD-1h.csv, or a symbol
    /// in the candle store (`host data list`); repeatable.
    #[arg(long, required = true)]
    pub(crate) data: Vec<PathBuf>,
    /// The store tier used for --data SYMBOL: 5m, 1h or 1d.
    #[arg(long, default_value = "1h")]
    pub(crate) interval: String,
    /// Parameter sweep, e.g. --sweep fast=5..20:5 (or fast=5,8,13); repeatable, cartesian
    /// product with the others and the fixed --param values, run in parallel.
    #[arg(long, value_name = "NAME=FROM..TO[:STEP]")]
    pub(crate) sweep: Vec<String>,
    /// Exit non-zero if the strategy trapped (a module_error) during the run.
    #[arg(long)]
    pub(crate) fail_on_trap: bool,
    /// Exit non-zero if the run broke a risk limit (see risk_breaches in the report).
    #[arg(long)]
    pub(crate) fail_on_breach: bool,
    /// Symbol of each --data file, in order (default: from the file name).
    #[arg(long)]
    pub(crate) symbol: Vec<String>,
    /// First day traded (YYYY-MM-DD, UTC); earlier candles are history only.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Last day included (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub(crate) to: Option<String>,
    #[arg(long, default_value = "10000")]
    pub(crate) capital: rust_decimal::Decimal,
    #[arg(long, default_value = "26")]
    pub(crate) fee_bps: rust_decimal::Decimal,
    #[arg(long, default_value = "5")]
    pub(crate) slippage_bps: rust_decimal::Decimal,
    /// Strategy parameter, e.g. --param fast=10
    #[arg(long = "param", value_parser = parse_param)]
    pub(crate) params: Vec<(String, String)>,
    /// Print the full report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write report.json, trades.csv and equity.svg here.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Results per period in the report: day, week or month; repeatable.
    #[arg(long, value_parser = parse_breakdown)]
    pub(crate) breakdown: Vec<trading_core::report::Breakdown>,
    /// Also run K walk-forward folds (70% in-sample, 30% out-of-sample each).
    #[arg(long, value_name = "K")]
    pub(crate) walk_forward: Option<usize>,
    /// Clear a risk halt after this many hours (default: it stays latched, as live).
    #[arg(long, value_name = "HOURS")]
    pub(crate) resume_after_hours: Option<u32>,
}

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    Verify,
}

pub(crate) fn parse_breakdown(s: &str) -> Result<trading_core::report::Breakdown, String> {
    trading_core::report::Breakdown::parse(s)
        .ok_or_else(|| format!("{s:?}: expected day, week or month"))
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

pub(crate) fn config_path(given: Option<PathBuf>, default: &str) -> Option<PathBuf> {
    given.or_else(|| Some(PathBuf::from(default)).filter(|p| p.exists()))
}
