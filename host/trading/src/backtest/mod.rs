//! Backtests: a strategy component run through the same sandbox runtime as
//! live trading, over historical candles, against the money core's simulated
//! venue. Bars are walked in close-time order; at each close `t` the bars
//! closing at `t` go to the engine first (pending orders fill at their open,
//! stops and targets are checked on their range), fills and closed trades go
//! to the strategy, then, if a scan is due at `t` (aligned to the strategy's
//! scan interval as the live shell aligns it), the strategy sees the market
//! cut at `t` and its signals go to the engine. Orders decided at `t` can only
//! fill on a bar opening at or after `t`, and the view only shows candles
//! closed at or before `t`: there is no lookahead by construction.

mod audit;
mod bench;
pub mod chart;
pub mod convert;
mod heatmap;
mod output;
mod sweep;

pub use audit::Breach;
pub use bench::{bench, BenchFigures, Native};
pub use chart::{ClosePoint, FillMark, PriceChart};
pub use convert::{portfolio_to_contract, risk_config, RiskConvertError};
pub use heatmap::sweep_svg;
pub use output::{equity_svg, summary, trades_csv, write_outputs};
pub use sweep::{
    check_sweep, combinations, run_sweep, sweep_csv, sweep_table, write_sweep, Sweep, SweepError,
    SweepReport, SweepRow,
};
pub use trading_core::{error_chain, format_ts, name_parts, Series};

use crate::risk_file::RiskFile;
use host_sandbox::bindings as c;
use host_sandbox::{Limits, ModuleError, Runtime, StrategyInstance, StrategyModule};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trading_core::csv::{parse_candles, walk_forward, CsvError, WalkForwardError};
use trading_core::engine::{Engine, EngineConfig, EngineError, EngineEvent};
use trading_core::fill::FillConfig;
use trading_core::money::{to_decimal, to_f64};
use trading_core::risk::{Decision, HaltReason, RiskManager};
use trading_core::truth::{Counters, EquityPoint, TruthInput, TruthReport};
use trading_core::{Candle, CloseReason, ClosedTrade, Interval, MarketData, MarketView, Portfolio};

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Csv { path: PathBuf, error: CsvError },
    #[error("{0}")]
    Config(String),
    #[error("no candles to walk (check --from/--to and the data files)")]
    NoData,
    #[error("sandbox runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("strategy failed at {ts}: {error}")]
    ModuleAt { ts: i64, error: ModuleError },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Risk(#[from] RiskConvertError),
    #[error(transparent)]
    WalkForward(#[from] WalkForwardError),
    #[error(transparent)]
    Store(#[from] host_store::candles::CandleError),
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error("the strategy trapped {count} time(s); first at {ts}: {detail}")]
    Trapped { count: u64, ts: i64, detail: String },
    #[error("{count} risk limit breach(es); first at {ts}: {limit}: {detail}")]
    Breached {
        count: u64,
        ts: i64,
        limit: String,
        detail: String,
    },
}

/// Reads a candle CSV (`ts,open,high,low,close,volume`). The symbol is
/// `symbol` or taken from the file name; the interval from the file name
/// (`BTCUSD-1h.csv`), else from the spacing of the first two candles.
pub fn load_csv(path: &Path, symbol: Option<&str>) -> Result<Series, BacktestError> {
    let text = std::fs::read_to_string(path).map_err(|error| BacktestError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let candles = parse_candles(&text).map_err(|error| BacktestError::Csv {
        path: path.to_path_buf(),
        error,
    })?;
    let (name_sym, name_iv) = name_parts(path);
    let symbol = symbol.map(str::to_string).or(name_sym).ok_or_else(|| {
        BacktestError::Config(format!("{}: pass --symbol for this file", path.display()))
    })?;
    let interval = match name_iv {
        Some(i) => i,
        None => {
            let gap = candles.windows(2).map(|w| w[1].ts - w[0].ts).min();
            gap.and_then(|g| Interval::ALL.into_iter().find(|i| i.secs() == g))
                .ok_or_else(|| {
                    BacktestError::Config(format!(
                        "{}: cannot tell the interval; name the file like BTCUSD-1h.csv",
                        path.display()
                    ))
                })?
        }
    };
    Ok(Series {
        symbol,
        interval,
        candles,
    })
}

/// One `--data` argument: an existing file is read as CSV (`symbol` or the
/// file name names it); anything else that looks like a symbol is loaded from
/// the candle store in the database at `db`, at `interval`.
pub fn load_data(
    spec: &Path,
    symbol: Option<&str>,
    interval: Interval,
    db: &Path,
) -> Result<Series, BacktestError> {
    let name = spec.to_str().unwrap_or_default();
    if spec.exists() || host_store::candles::check_symbol(name).is_err() || name.contains('/') {
        return load_csv(spec, symbol);
    }
    if !db.exists() {
        return Err(host_store::candles::CandleError::NotStored {
            symbol: name.to_string(),
            interval: interval.name(),
        }
        .into());
    }
    let conn = host_store::db::open(db).map_err(host_store::candles::CandleError::from)?;
    let mut s = host_store::candles::series(&conn, name, interval)?;
    if let Some(sym) = symbol {
        s.symbol = sym.to_string();
    }
    Ok(s)
}

/// Unix seconds of a `YYYY-MM-DD` date at 00:00 UTC.
pub fn parse_date(s: &str) -> Result<i64, BacktestError> {
    let bad = || BacktestError::Config(format!("{s:?} is not a date like 2024-01-31"));
    let mut it = s.trim().splitn(3, '-');
    let mut num = || {
        it.next()
            .and_then(|x| x.parse::<i64>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (num()?, num()?, num()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // days from civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * 86_400)
}

/// Everything a backtest needs.
#[derive(Debug, Clone)]
pub struct BacktestConfig {
    /// The strategy component's bytes.
    pub strategy: Vec<u8>,
    pub series: Vec<Series>,
    /// Only bars opening at or after this (Unix seconds) are traded; earlier
    /// candles stay visible to the strategy as history.
    pub from: Option<i64>,
    /// Nothing closing after this (Unix seconds) is loaded.
    pub to: Option<i64>,
    pub capital: Decimal,
    pub fee_bps: Decimal,
    pub slippage_bps: Decimal,
    pub params: Vec<(String, String)>,
    pub risk: RiskFile,
    pub sandbox: Limits,
    /// Order time-to-live in bars.
    pub order_ttl_bars: u32,
    pub walk_forward: Option<usize>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Clear a risk halt this many hours after it latched. `None` keeps it
    /// latched to the end, as live trading does until the user resumes.
    pub resume_after_hours: Option<u32>,
    /// Results per day, week and/or month in the report (`--breakdown`).
    pub breakdown: Vec<trading_core::report::Breakdown>,
}

impl BacktestConfig {
    /// Defaults: 10 000 capital, 26 bps fee, 5 bps slippage, default sandbox limits.
    pub fn new(strategy: Vec<u8>, series: Vec<Series>, risk: RiskFile) -> Self {
        BacktestConfig {
            strategy,
            series,
            from: None,
            to: None,
            capital: Decimal::from(10_000),
            fee_bps: Decimal::from(26),
            slippage_bps: Decimal::from(5),
            params: Vec::new(),
            risk,
            sandbox: Limits::default(),
            order_ttl_bars: EngineConfig::default().order_ttl_bars,
            walk_forward: None,
            progress: false,
            resume_after_hours: None,
            breakdown: Vec::new(),
        }
    }
}

/// One signal the strategy returned and what the risk manager made of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalRecord {
    pub ts: i64,
    pub signal: trading_core::Signal,
    /// `approved`, `modify`, or `refused: <why>`.
    pub decision: String,
}

/// An event of the run worth keeping beside the trades.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Note {
    pub ts: i64,
    pub kind: String,
    pub detail: String,
}

/// One traded symbol.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolReport {
    pub symbol: String,
    pub interval: Interval,
    pub bars: u64,
    pub first_close: Option<f64>,
    pub last_close: Option<f64>,
    pub market_change_pct: Option<f64>,
    pub trades: u64,
    pub wins: u64,
    pub losses: u64,
    pub win_rate: Option<f64>,
    pub pnl: Decimal,
    pub fees: Decimal,
    pub avg_pnl_pct: Option<f64>,
}

/// Trades per close reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitReport {
    pub reason: CloseReason,
    pub trades: u64,
    pub wins: u64,
    pub pnl: Decimal,
}

/// The strategy that ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyMeta {
    pub hash: String,
    pub scan_interval_minutes: u32,
    pub params: Vec<(String, String)>,
}

/// Compact metrics of one walk-forward part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartMetrics {
    pub from: i64,
    pub to: i64,
    pub bars: u64,
    pub trades: u64,
    pub win_rate: Option<f64>,
    pub net_pnl: Decimal,
    pub return_pct: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    pub sharpe_ratio: Option<f64>,
    pub market_change_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldReport {
    pub index: usize,
    pub in_sample: PartMetrics,
    pub out_of_sample: PartMetrics,
}

/// The full result of a backtest; serialises deterministically.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    pub strategy: StrategyMeta,
    pub start: i64,
    pub end: i64,
    pub bars: u64,
    pub starting_capital: Decimal,
    pub final_value: Decimal,
    pub return_pct: Option<f64>,
    pub fee_bps: Decimal,
    pub slippage_bps: Decimal,
    pub metrics: TruthReport,
    pub symbols: Vec<SymbolReport>,
    pub exit_reasons: Vec<ExitReport>,
    pub trades: Vec<ClosedTrade>,
    pub signals: Vec<SignalRecord>,
    pub notes: Vec<Note>,
    pub equity_curve: Vec<EquityPoint>,
    pub walk_forward: Option<Vec<FoldReport>>,
    /// Non-fatal strategy failures (traps, refused output) during the run.
    pub module_errors: u64,
    /// Risk limits the run broke (the engine should make this impossible);
    /// at most 100 are kept, `risk_breach_count` counts all.
    pub risk_breaches: Vec<Breach>,
    pub risk_breach_count: u64,
    /// Best/worst day, streaks, the deepest drawdown with its recovery,
    /// expectancy ratio, exposure (`trading_core::report`).
    pub extras: trading_core::report::ReportExtras,
    /// Results per day, week or month, as asked (`--breakdown`).
    pub breakdown: Vec<(
        trading_core::report::Breakdown,
        Vec<trading_core::report::PeriodRow>,
    )>,
    /// Per symbol: its closes (thinned) and fills, for the price panels of
    /// equity.svg ([`chart`]).
    pub prices: Vec<PriceChart>,
}

impl BacktestReport {
    /// Fails when asked to and the strategy trapped or a risk limit broke.
    pub fn check(&self, fail_on_trap: bool, fail_on_breach: bool) -> Result<(), BacktestError> {
        if fail_on_trap && self.module_errors > 0 {
            let first = self.notes.iter().find(|n| n.kind == "module_error");
            return Err(BacktestError::Trapped {
                count: self.module_errors,
                ts: first.map_or(0, |n| n.ts),
                detail: first.map(|n| n.detail.clone()).unwrap_or_default(),
            });
        }
        if fail_on_breach && self.risk_breach_count > 0 {
            let first = self.risk_breaches.first();
            return Err(BacktestError::Breached {
                count: self.risk_breach_count,
                ts: first.map_or(0, |b| b.ts),
                limit: first.map(|b| b.limit.clone()).unwrap_or_default(),
                detail: first.map(|b| b.detail.clone()).unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// [`BacktestReport::check`] as a free function.
pub fn check(
    r: &BacktestReport,
    fail_on_trap: bool,
    fail_on_breach: bool,
) -> Result<(), BacktestError> {
    r.check(fail_on_trap, fail_on_breach)
}

/// What the bar loop drives: the sandboxed component, or native code for
/// comparison. Signals come back in contract form either way.
pub trait Driver {
    fn scan_minutes(&self) -> u32;
    fn analyze(
        &mut self,
        now: i64,
        portfolio: &c::Portfolio,
        view: &MarketView,
    ) -> Result<Vec<c::Signal>, ModuleError>;
    fn on_fill(&mut self, fill: &c::Fill) -> Result<(), ModuleError>;
    fn on_position_closed(&mut self, trade: &c::ClosedTrade) -> Result<(), ModuleError>;
    /// The (symbol, interval) series the strategy asked for that the data
    /// has no candle of at all.
    fn asked_missing(&mut self) -> Vec<(String, Interval)> {
        Vec::new()
    }
}

/// A strategy component instance behind the [`Driver`] interface.
pub struct WasmDriver {
    pub instance: StrategyInstance,
    scan_minutes: u32,
}

impl WasmDriver {
    /// Instantiates and initialises the component as live trading does.
    pub fn start(
        module: &StrategyModule,
        risk: &RiskFile,
        symbols: &[String],
        params: &[(String, String)],
    ) -> Result<Self, ModuleError> {
        let mut instance = module.instantiate()?;
        instance.initialize(&risk.contract_view(), symbols, params)?;
        let scan_minutes = instance.scan_interval_minutes()?;
        Ok(WasmDriver {
            instance,
            scan_minutes,
        })
    }
}

impl WasmDriver {
    /// Wraps an instance that is already initialised.
    pub fn from_instance(instance: StrategyInstance, scan_minutes: u32) -> Self {
        WasmDriver {
            instance,
            scan_minutes,
        }
    }
}

impl Driver for WasmDriver {
    fn scan_minutes(&self) -> u32 {
        self.scan_minutes
    }

    fn asked_missing(&mut self) -> Vec<(String, Interval)> {
        self.instance.host().asked_missing.iter().cloned().collect()
    }

    fn analyze(
        &mut self,
        now: i64,
        portfolio: &c::Portfolio,
        view: &MarketView,
    ) -> Result<Vec<c::Signal>, ModuleError> {
        self.instance.host().view = Some(view.clone());
        let r = self.instance.analyze(now, portfolio);
        self.instance.host().view = None;
        r
    }

    fn on_fill(&mut self, fill: &c::Fill) -> Result<(), ModuleError> {
        self.instance.on_fill(fill)
    }

    fn on_position_closed(&mut self, trade: &c::ClosedTrade) -> Result<(), ModuleError> {
        self.instance.on_position_closed(trade)
    }
}

/// Costs and limits of one simulated account.
#[derive(Debug, Clone)]
pub struct Account {
    pub capital: Decimal,
    pub engine: EngineConfig,
    pub risk: trading_core::risk::RiskConfig,
    /// Seconds after which a latched halt is cleared (`None`: never).
    pub resume_after: Option<i64>,
}

impl Account {
    pub fn from_config(cfg: &BacktestConfig) -> Result<Self, BacktestError> {
        if cfg.capital <= Decimal::ZERO {
            return Err(BacktestError::Config(format!(
                "capital {} must be positive",
                cfg.capital
            )));
        }
        let engine = EngineConfig {
            fill: FillConfig {
                fee_bps: cfg.fee_bps,
                slippage_bps: cfg.slippage_bps,
            },
            order_ttl_bars: cfg.order_ttl_bars.max(1),
        };
        engine
            .fill
            .validate()
            .map_err(|e| BacktestError::Config(e.to_string()))?;
        Ok(Account {
            capital: cfg.capital,
            engine,
            risk: risk_config(&cfg.risk)?,
            resume_after: cfg.resume_after_hours.map(|h| i64::from(h) * 3_600),
        })
    }
}

/// What one walk over a window produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub start: i64,
    pub end: i64,
    pub bars: u64,
    pub portfolio: Portfolio,
    pub counters: Counters,
    pub signals: Vec<SignalRecord>,
    pub notes: Vec<Note>,
    pub equity: Vec<EquityPoint>,
    /// Per symbol: bars walked, first and last close.
    pub per_symbol: BTreeMap<String, (u64, f64, f64)>,
    pub breaches: Vec<Breach>,
    pub breach_count: u64,
    /// Per series (by index): every close walked (bar close time, close).
    pub closes: Vec<Vec<ClosePoint>>,
    /// Per series (by index): every fill on its symbol.
    pub fills: Vec<Vec<FillMark>>,
}

/// The market data a run may see: every candle closing at or before `to`,
/// and the coarser tiers rolled up from it where the data has none.
pub fn market_data(series: &[Series], to: Option<i64>) -> Arc<MarketData> {
    let mut d = MarketData::new();
    for s in series {
        let secs = s.interval.secs();
        let candles = s
            .candles
            .iter()
            .filter(|c| to.is_none_or(|t| c.ts + secs <= t))
            .copied()
            .collect();
        d.set_series(&s.symbol, s.interval, candles);
    }
    // the coarser tiers a strategy may read, built from the finer data by
    // the live feed's rule (a candle is visible once its bucket closed)
    for s in series {
        let horizon = Interval::ALL
            .iter()
            .filter_map(|i| d.series(&s.symbol, *i).last().map(|c| c.ts + i.secs()))
            .max();
        if let Some(h) = horizon {
            d.roll_up_from(&s.symbol, h);
        }
    }
    Arc::new(d)
}

struct Progress {
    on: bool,
    total: usize,
    shown: usize,
}

impl Progress {
    fn tick(&mut self, done: usize) {
        if !self.on || self.total == 0 {
            return;
        }
        let pct = done * 100 / self.total;
        if pct == self.shown && done != self.total {
            return;
        }
        self.shown = pct;
        let filled = pct * 30 / 100;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rbacktest [{}{}] {pct:>3}% {done}/{} bars",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            self.total
        );
        if done == self.total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// Walks the bars of `series` opening at or after `from` and closing at or
/// before `to` (as cut into `data`), driving `driver` against a fresh engine.
pub fn simulate(
    driver: &mut dyn Driver,
    data: &Arc<MarketData>,
    series: &[Series],
    from: Option<i64>,
    to: Option<i64>,
    account: &Account,
    progress: bool,
) -> Result<Outcome, BacktestError> {
    let mut bars: Vec<(i64, usize, Candle)> = Vec::new();
    for (k, s) in series.iter().enumerate() {
        let secs = s.interval.secs();
        for c in data.series(&s.symbol, s.interval) {
            if from.is_none_or(|f| c.ts >= f) && to.is_none_or(|t| c.ts + secs <= t) {
                bars.push((c.ts + secs, k, *c));
            }
        }
    }
    bars.sort_by(|a, b| (a.0, &series[a.1].symbol, a.1).cmp(&(b.0, &series[b.1].symbol, b.1)));
    let (Some(first), Some(last)) = (bars.first(), bars.last()) else {
        return Err(BacktestError::NoData);
    };
    let start = first.2.ts;
    let end = last.0;

    let portfolio =
        Portfolio::new(account.capital).map_err(|e| BacktestError::Config(e.to_string()))?;
    let risk =
        RiskManager::new(account.risk.clone()).map_err(|e| BacktestError::Config(e.to_string()))?;
    let mut trader = crate::trader::Trader::new(Engine::new(portfolio, risk, account.engine)?);
    let step = i64::from(driver.scan_minutes().max(1)) * 60;
    let mut next_scan_at = i64::MIN;
    let mut counters = Counters {
        strategy_version_count: 1,
        ..Counters::default()
    };
    let mut signals = Vec::new();
    let mut notes = Vec::new();
    let mut equity = Vec::with_capacity(bars.len());
    // per series (by index): bars walked, first and last close
    let mut per_series: Vec<Option<(u64, f64, f64)>> = vec![None; series.len()];
    let mut progress = Progress {
        on: progress,
        total: bars.len(),
        shown: usize::MAX,
    };
    let mut halted_since: Option<i64> = None;
    let mut auditor = audit::Auditor::default();
    let names: Vec<String> = series.iter().map(|s| s.symbol.clone()).collect();
    let mut closes: Vec<Vec<ClosePoint>> = vec![Vec::new(); series.len()];
    let mut fills: Vec<Vec<FillMark>> = vec![Vec::new(); series.len()];

    let mut i = 0;
    while i < bars.len() {
        let t = bars[i].0;
        while i < bars.len() && bars[i].0 == t {
            let (_, k, candle) = bars[i];
            let symbol = &series[k].symbol;
            let e = per_series[k].get_or_insert((0, candle.close, candle.close));
            e.0 += 1;
            e.2 = candle.close;
            closes[k].push(ClosePoint {
                ts: t,
                close: candle.close,
            });
            auditor.before_bar(&trader.engine);
            let (events, errors) = trader.on_bar(driver, symbol, &candle)?;
            auditor.after_bar(t, &trader.engine, &events);
            chart::collect_fills(&events, &names, &mut fills);
            note_events(&events, &mut notes, t);
            for e in errors {
                module_err(t, e, &mut notes)?;
            }
            i += 1;
        }
        if trader.engine.risk().halt().is_none() {
            halted_since = None;
        } else {
            let since = *halted_since.get_or_insert(t);
            if account
                .resume_after
                .is_some_and(|wait| t >= since.saturating_add(wait))
            {
                trader.engine.resume();
                halted_since = None;
                notes.push(Note {
                    ts: t,
                    kind: "resumed".into(),
                    detail: "halt cleared by --resume-after-hours".into(),
                });
            }
        }
        if t >= next_scan_at {
            next_scan_at = (t.div_euclid(step) + 1) * step;
            scan(
                driver,
                &mut trader,
                data,
                t,
                &mut counters,
                &mut signals,
                &mut notes,
                &mut auditor,
            )?;
        }
        equity.push(EquityPoint {
            ts: t,
            value: trader.engine.portfolio().equity(),
        });
        progress.tick(i);
    }

    let per_symbol: BTreeMap<String, (u64, f64, f64)> = per_series
        .iter()
        .zip(series)
        .filter_map(|(e, s)| Some((s.symbol.clone(), (*e)?)))
        .collect();
    let prices: BTreeMap<String, Decimal> = per_symbol
        .iter()
        .filter_map(|(s, (_, _, last))| Some((s.clone(), to_decimal(*last).ok()?)))
        .collect();
    let events = trader
        .engine
        .close_all(end, &prices, CloseReason::EndOfData)?;
    note_events(&events, &mut notes, end);
    chart::collect_fills(&events, &names, &mut fills);
    for e in trader.forward(driver, &events) {
        module_err(end, e, &mut notes)?;
    }
    if let Some(p) = equity.last_mut() {
        p.value = trader.engine.portfolio().equity();
    }
    for (symbol, interval) in driver.asked_missing() {
        let detail = format!(
            "the strategy asked for {} candles of {symbol}; the data has none (give a file of that interval, or a finer one to aggregate)",
            interval.name()
        );
        notes.push(Note {
            ts: end,
            kind: "missing_interval".into(),
            detail,
        });
    }
    Ok(Outcome {
        start,
        end,
        bars: bars.len() as u64,
        portfolio: trader.engine.portfolio().clone(),
        counters,
        signals,
        notes,
        equity,
        per_symbol,
        breaches: auditor.breaches,
        breach_count: auditor.count,
        closes,
        fills,
    })
}

fn module_err(ts: i64, error: ModuleError, notes: &mut Vec<Note>) -> Result<(), BacktestError> {
    if error.is_fatal() {
        return Err(BacktestError::ModuleAt { ts, error });
    }
    notes.push(Note {
        ts,
        kind: "module_error".into(),
        detail: error.to_string(),
    });
    Ok(())
}

/// Notes what the engine did besides fills and closes (the [`crate::trader::Trader`] tells the strategy those).
fn note_events(events: &[EngineEvent], notes: &mut Vec<Note>, t: i64) {
    for ev in events {
        let (kind, detail) = match ev {
            EngineEvent::OrderCancelled {
                order_id,
                symbol,
                reason,
            } => (
                "order_cancelled",
                format!(
                    "order {order_id} {symbol}: {}",
                    serde_json::to_string(reason).unwrap_or_default()
                ),
            ),
            EngineEvent::OrderExpired { order_id, symbol } => {
                ("order_expired", format!("order {order_id} {symbol}"))
            }
            EngineEvent::Halted(h) => ("halted", halt_text(h)),
            EngineEvent::Filled(_) | EngineEvent::PositionClosed(_) => continue,
        };
        notes.push(Note {
            ts: t,
            kind: kind.into(),
            detail,
        });
    }
}

fn halt_text(h: &HaltReason) -> String {
    h.to_string()
}

#[allow(clippy::too_many_arguments)]
fn scan(
    driver: &mut dyn Driver,
    trader: &mut crate::trader::Trader,
    data: &Arc<MarketData>,
    t: i64,
    counters: &mut Counters,
    records: &mut Vec<SignalRecord>,
    notes: &mut Vec<Note>,
    auditor: &mut audit::Auditor,
) -> Result<(), BacktestError> {
    counters.total_scans += 1;
    counters.first_scan_at.get_or_insert(t);
    counters.last_scan_at = Some(t);
    let equity = trader.engine.portfolio().equity();
    let outcome = trader.scan(driver, data, t);
    if let Some(e) = outcome.error {
        return module_err(t, e, notes);
    }
    let decisions: Vec<Decision> = outcome.decisions.iter().map(|(_, d)| d.clone()).collect();
    auditor.decisions(t, &trader.engine, equity, &decisions);
    for (signal, d) in outcome.decisions {
        counters.total_signals += 1;
        let decision = match &d {
            Decision::Approved(_) => "approved".to_string(),
            Decision::Modify(_) => "modify".to_string(),
            Decision::Refused(r) => format!("refused: {r}"),
        };
        if d.is_approved() {
            counters.acted_signals += 1;
        }
        records.push(SignalRecord {
            ts: t,
            signal,
            decision,
        });
    }
    Ok(())
}

fn market_change(first: f64, last: f64) -> Option<f64> {
    (first > 0.0)
        .then(|| (last / first - 1.0) * 100.0)
        .filter(|x| x.is_finite())
}

fn return_pct(capital: Decimal, value: Decimal) -> Option<f64> {
    trading_core::money::pct(value.saturating_sub(capital), capital).map(to_f64)
}

/// Mean market change over the symbols, and the (first, last) closes of the
/// only symbol when there is one.
fn market(
    per_symbol: &BTreeMap<String, (u64, f64, f64)>,
) -> (Option<f64>, Option<(Decimal, Decimal)>) {
    let changes: Vec<f64> = per_symbol
        .values()
        .filter_map(|(_, a, b)| market_change(*a, *b))
        .collect();
    let mean = (!changes.is_empty()).then(|| changes.iter().sum::<f64>() / changes.len() as f64);
    let single = match per_symbol.values().collect::<Vec<_>>().as_slice() {
        [(_, a, b)] => to_decimal(*a).ok().zip(to_decimal(*b).ok()),
        _ => None,
    };
    (mean, single)
}

fn truth(o: &Outcome, hash: &str) -> TruthReport {
    let mut counters = o.counters.clone();
    counters.current_strategy_version = Some(hash.chars().take(12).collect());
    let (mean, single) = market(&o.per_symbol);
    let mut m = TruthReport::compute(&TruthInput {
        trades: o.portfolio.closed_trades(),
        equity_curve: &o.equity,
        counters: &counters,
        portfolio_value: Some(o.portfolio.equity()),
        portfolio_cash: Some(o.portfolio.cash()),
        market_prices: single,
    });
    if single.is_none() {
        m.market_change_pct = mean;
    }
    m
}

fn part_metrics(o: &Outcome, capital: Decimal, from: i64, to: i64) -> PartMetrics {
    let m = truth(o, "");
    PartMetrics {
        from,
        to,
        bars: o.bars,
        trades: m.trade_count,
        win_rate: m.win_rate,
        net_pnl: m.net_pnl,
        return_pct: return_pct(capital, o.portfolio.equity()),
        max_drawdown_pct: m.max_drawdown_pct,
        sharpe_ratio: m.sharpe_ratio,
        market_change_pct: m.market_change_pct,
    }
}

fn empty_part(from: i64, to: i64) -> PartMetrics {
    PartMetrics {
        from,
        to,
        bars: 0,
        trades: 0,
        win_rate: None,
        net_pnl: Decimal::ZERO,
        return_pct: None,
        max_drawdown_pct: None,
        sharpe_ratio: None,
        market_change_pct: None,
    }
}

/// Runs a backtest with a runtime made from `config.sandbox`.
pub fn run(config: &BacktestConfig) -> Result<BacktestReport, BacktestError> {
    let rt = Runtime::new(config.sandbox.clone(), None)
        .map_err(|e| BacktestError::Runtime(format!("{e:#}")))?;
    run_with(&rt, config)
}

/// Runs a backtest on an existing runtime (the one live trading uses).
pub fn run_with(
    rt: &Arc<Runtime>,
    config: &BacktestConfig,
) -> Result<BacktestReport, BacktestError> {
    if config.series.is_empty() {
        return Err(BacktestError::Config(
            "no data: pass at least one --data FILE.csv".into(),
        ));
    }
    let mut symbols: Vec<String> = Vec::new();
    for s in &config.series {
        if symbols.contains(&s.symbol) {
            return Err(BacktestError::Config(format!(
                "symbol {} is given twice",
                s.symbol
            )));
        }
        symbols.push(s.symbol.clone());
    }
    if let (Some(f), Some(t)) = (config.from, config.to) {
        if t <= f {
            return Err(BacktestError::Config("--to must be after --from".into()));
        }
    }
    let account = Account::from_config(config)?;
    let module = rt.load_strategy(&config.strategy)?;
    let hash = module.info().hash.clone();
    let data = market_data(&config.series, config.to);
    let mut driver = WasmDriver::start(&module, &config.risk, &symbols, &config.params)?;
    let scan_minutes = driver.scan_minutes();
    let o = simulate(
        &mut driver,
        &data,
        &config.series,
        config.from,
        config.to,
        &account,
        config.progress,
    )?;
    let metrics = truth(&o, &hash);
    let trades = o.portfolio.closed_trades().to_vec();

    let symbols_report = config
        .series
        .iter()
        .map(|s| {
            let (bars, first, last) = o
                .per_symbol
                .get(&s.symbol)
                .copied()
                .map_or((0, None, None), |(n, a, b)| (n, Some(a), Some(b)));
            let ts: Vec<&ClosedTrade> = trades.iter().filter(|t| t.symbol == s.symbol).collect();
            let wins = ts.iter().filter(|t| t.pnl > Decimal::ZERO).count() as u64;
            let losses = ts.iter().filter(|t| t.pnl < Decimal::ZERO).count() as u64;
            let n = ts.len() as u64;
            SymbolReport {
                symbol: s.symbol.clone(),
                interval: s.interval,
                bars,
                first_close: first,
                last_close: last,
                market_change_pct: first.zip(last).and_then(|(a, b)| market_change(a, b)),
                trades: n,
                wins,
                losses,
                win_rate: (n > 0).then(|| wins as f64 / n as f64),
                pnl: ts
                    .iter()
                    .fold(Decimal::ZERO, |a, t| a.saturating_add(t.pnl)),
                fees: ts
                    .iter()
                    .fold(Decimal::ZERO, |a, t| a.saturating_add(t.fees)),
                avg_pnl_pct: (n > 0)
                    .then(|| ts.iter().map(|t| to_f64(t.pnl_pct)).sum::<f64>() / n as f64),
            }
        })
        .collect();
    let exit_reasons = CloseReason::ALL
        .iter()
        .filter_map(|r| {
            let ts: Vec<&ClosedTrade> = trades.iter().filter(|t| t.close_reason == *r).collect();
            (!ts.is_empty()).then(|| ExitReport {
                reason: *r,
                trades: ts.len() as u64,
                wins: ts.iter().filter(|t| t.pnl > Decimal::ZERO).count() as u64,
                pnl: ts
                    .iter()
                    .fold(Decimal::ZERO, |a, t| a.saturating_add(t.pnl)),
            })
        })
        .collect();

    let walk = match config.walk_forward {
        None => None,
        Some(k) => Some(walk_forward_folds(
            &module, config, &symbols, &data, &account, o.start, o.end, k,
        )?),
    };

    let final_value = o.portfolio.equity();
    let module_errors = o.notes.iter().filter(|n| n.kind == "module_error").count() as u64;
    let extras = trading_core::report::extras(&trades, &o.equity, o.start, o.end);
    let breakdown = config
        .breakdown
        .iter()
        .map(|b| (*b, trading_core::report::breakdown(&trades, *b)))
        .collect();
    let prices = config
        .series
        .iter()
        .zip(o.closes.iter().zip(&o.fills))
        .map(|(s, (closes, fills))| PriceChart {
            symbol: s.symbol.clone(),
            interval: s.interval,
            bars: closes.len() as u64,
            closes: chart::thin(closes),
            fills: fills.clone(),
        })
        .collect();
    Ok(BacktestReport {
        strategy: StrategyMeta {
            hash,
            scan_interval_minutes: scan_minutes,
            params: config.params.clone(),
        },
        start: o.start,
        end: o.end,
        bars: o.bars,
        starting_capital: config.capital,
        final_value,
        return_pct: return_pct(config.capital, final_value),
        fee_bps: config.fee_bps,
        slippage_bps: config.slippage_bps,
        metrics,
        symbols: symbols_report,
        exit_reasons,
        trades,
        signals: o.signals,
        notes: o.notes,
        equity_curve: o.equity,
        walk_forward: walk,
        module_errors,
        risk_breaches: o.breaches,
        risk_breach_count: o.breach_count,
        extras,
        breakdown,
        prices,
    })
}

#[allow(clippy::too_many_arguments)]
fn walk_forward_folds(
    module: &StrategyModule,
    config: &BacktestConfig,
    symbols: &[String],
    data: &Arc<MarketData>,
    account: &Account,
    start: i64,
    end: i64,
    k: usize,
) -> Result<Vec<FoldReport>, BacktestError> {
    let folds = walk_forward(start, end, k)?;
    let mut out = Vec::with_capacity(folds.len());
    for f in folds {
        let part = |from: i64, to: i64| -> Result<PartMetrics, BacktestError> {
            let mut driver = WasmDriver::start(module, &config.risk, symbols, &config.params)?;
            match simulate(
                &mut driver,
                data,
                &config.series,
                Some(from),
                Some(to),
                account,
                false,
            ) {
                Ok(o) => Ok(part_metrics(&o, account.capital, from, to)),
                Err(BacktestError::NoData) => Ok(empty_part(from, to)),
                Err(e) => Err(e),
            }
        };
        let in_sample = part(f.in_sample.start, f.in_sample.end)?;
        let out_of_sample = part(f.out_of_sample.start, f.out_of_sample.end)?;
        out.push(FoldReport {
            index: f.index,
            in_sample,
            out_of_sample,
        });
    }
    Ok(out)
}
