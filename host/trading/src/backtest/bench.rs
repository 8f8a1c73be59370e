//! Backtest throughput: the same bar loop and engine driving the sandboxed
//! SMA-crossover component, and the same strategy source compiled natively.

use super::{simulate, Account, BacktestConfig, BacktestError, Driver, WasmDriver};
use crate::risk_file::RiskFile;
use host_sandbox::bindings as c;
use host_sandbox::{Limits, ModuleError, Runtime};
use std::path::Path;
use std::time::Instant;
use trading_core::{Interval, MarketView};

/// A guest-SDK strategy compiled natively (the bench's `native` way runs
/// `sma_crossover::SmaCrossover`, the very source of the component), behind
/// the same [`Driver`] interface: contract values are converted field by
/// field where the sandbox would lower and lift them.
pub struct Native<S: guest_sdk::Strategy> {
    strategy: S,
    scan_minutes: u32,
}

impl<S: guest_sdk::Strategy> Native<S> {
    /// Initialises the strategy as `WasmDriver::start` does the component.
    pub fn start(
        risk: &RiskFile,
        symbols: &[String],
        params: &[(String, String)],
    ) -> Result<Self, ModuleError> {
        let l = risk.contract_view();
        let init = guest_sdk::Init {
            limits: guest_sdk::RiskLimits {
                max_trade_pct: l.max_trade_pct,
                default_trade_pct: l.default_trade_pct,
                max_positions: l.max_positions,
                max_daily_loss_pct: l.max_daily_loss_pct,
                max_drawdown_pct: l.max_drawdown_pct,
            },
            symbols: symbols.to_vec(),
            params: guest_sdk::Params::new(params.to_vec()),
        };
        let mut strategy = S::default();
        strategy
            .initialize(&init)
            .map_err(ModuleError::InitRefused)?;
        let scan_minutes = strategy.scan_interval_minutes();
        Ok(Native {
            strategy,
            scan_minutes,
        })
    }
}

/// The host's market view as the SDK's.
struct View<'a>(&'a MarketView);

impl guest_sdk::MarketView for View<'_> {
    fn symbol(&self, symbol: &str) -> Option<guest_sdk::SymbolData> {
        let f = self.0.symbol_data(symbol)?;
        Some(guest_sdk::SymbolData {
            symbol: symbol.to_string(),
            price: f.price,
            spread: f.spread,
            volume_24h: f.volume_24h,
        })
    }

    fn candles(
        &self,
        symbol: &str,
        interval: guest_sdk::Interval,
        n: u32,
    ) -> Vec<guest_sdk::Candle> {
        self.0
            .candles(symbol, core_interval(interval), n as usize)
            .iter()
            .map(|c| guest_sdk::Candle {
                ts: c.ts,
                open: c.open,
                high: c.high,
                low: c.low,
                close: c.close,
                volume: c.volume,
            })
            .collect()
    }

    fn closes(&self, symbol: &str, interval: guest_sdk::Interval, n: u32) -> guest_sdk::Closes {
        self.0
            .candles(symbol, core_interval(interval), n as usize)
            .iter()
            .map(|c| c.close)
            .collect::<Vec<f64>>()
            .into()
    }

    fn recent_trades(&self, _n: u32) -> Vec<guest_sdk::ClosedTrade> {
        Vec::new()
    }
}

fn core_interval(i: guest_sdk::Interval) -> Interval {
    match i {
        guest_sdk::Interval::M5 => Interval::M5,
        guest_sdk::Interval::H1 => Interval::H1,
        guest_sdk::Interval::D1 => Interval::D1,
    }
}

fn sdk_intent(i: c::Intent) -> guest_sdk::Intent {
    match i {
        c::Intent::Day => guest_sdk::Intent::Day,
        c::Intent::Swing => guest_sdk::Intent::Swing,
        c::Intent::Position => guest_sdk::Intent::Position,
    }
}

fn sdk_action(a: c::Action) -> guest_sdk::Action {
    match a {
        c::Action::Buy => guest_sdk::Action::Buy,
        c::Action::Sell => guest_sdk::Action::Sell,
        c::Action::Close => guest_sdk::Action::Close,
        c::Action::Modify => guest_sdk::Action::Modify,
    }
}

fn sdk_side(s: c::Side) -> guest_sdk::Side {
    match s {
        c::Side::Long => guest_sdk::Side::Long,
        c::Side::Short => guest_sdk::Side::Short,
    }
}

fn sdk_portfolio(p: &c::Portfolio) -> guest_sdk::Portfolio {
    guest_sdk::Portfolio {
        cash: p.cash,
        total_value: p.total_value,
        positions: p
            .positions
            .iter()
            .map(|o| guest_sdk::OpenPosition {
                symbol: o.symbol.clone(),
                side: sdk_side(o.side),
                qty: o.qty,
                avg_entry: o.avg_entry,
                current_price: o.current_price,
                unrealized_pnl: o.unrealized_pnl,
                unrealized_pnl_pct: o.unrealized_pnl_pct,
                intent: sdk_intent(o.intent),
                stop_loss: o.stop_loss,
                take_profit: o.take_profit,
                opened_at: o.opened_at,
                tag: o.tag.clone(),
            })
            .collect(),
        daily_pnl: p.daily_pnl,
        total_pnl: p.total_pnl,
        fees_paid: p.fees_paid,
        closed_trade_count: p.closed_trade_count,
    }
}

fn contract_signal(s: guest_sdk::Signal) -> c::Signal {
    c::Signal {
        symbol: s.symbol,
        action: match s.action {
            guest_sdk::Action::Buy => c::Action::Buy,
            guest_sdk::Action::Sell => c::Action::Sell,
            guest_sdk::Action::Close => c::Action::Close,
            guest_sdk::Action::Modify => c::Action::Modify,
        },
        size_pct: s.size_pct,
        order_type: match s.order_type {
            guest_sdk::OrderType::Market => c::OrderType::Market,
            guest_sdk::OrderType::Limit => c::OrderType::Limit,
            guest_sdk::OrderType::Stop => c::OrderType::Stop,
        },
        limit_price: s.limit_price,
        stop_loss: s.stop_loss,
        take_profit: s.take_profit,
        intent: match s.intent {
            guest_sdk::Intent::Day => c::Intent::Day,
            guest_sdk::Intent::Swing => c::Intent::Swing,
            guest_sdk::Intent::Position => c::Intent::Position,
        },
        tag: s.tag,
        confidence: s.confidence,
        reasoning: s.reasoning,
        slippage_tolerance: s.slippage_tolerance,
    }
}

impl<S: guest_sdk::Strategy> Driver for Native<S> {
    fn scan_minutes(&self) -> u32 {
        self.scan_minutes
    }

    fn analyze(
        &mut self,
        now: i64,
        portfolio: &c::Portfolio,
        view: &MarketView,
    ) -> Result<Vec<c::Signal>, ModuleError> {
        let signals = self
            .strategy
            .analyze(now, &sdk_portfolio(portfolio), &View(view));
        Ok(signals.into_iter().map(contract_signal).collect())
    }

    fn on_fill(&mut self, f: &c::Fill) -> Result<(), ModuleError> {
        self.strategy.on_fill(&guest_sdk::Fill {
            symbol: f.symbol.clone(),
            action: sdk_action(f.action),
            qty: f.qty,
            price: f.price,
            fee: f.fee,
            intent: sdk_intent(f.intent),
            tag: f.tag.clone(),
            ts: f.ts,
        });
        Ok(())
    }

    fn on_position_closed(&mut self, t: &c::ClosedTrade) -> Result<(), ModuleError> {
        self.strategy.on_position_closed(&guest_sdk::ClosedTrade {
            symbol: t.symbol.clone(),
            side: sdk_side(t.side),
            qty: t.qty,
            entry_price: t.entry_price,
            exit_price: t.exit_price,
            pnl: t.pnl,
            pnl_pct: t.pnl_pct,
            fees: t.fees,
            intent: sdk_intent(t.intent),
            opened_at: t.opened_at,
            closed_at: t.closed_at,
            close_reason: t.close_reason.clone(),
            tag: t.tag.clone(),
        });
        Ok(())
    }
}

/// One bench measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchLine {
    pub bars: u64,
    pub seconds: f64,
    pub trades: usize,
}

impl BenchLine {
    pub fn bars_per_sec(&self) -> f64 {
        self.bars as f64 / self.seconds.max(1e-9)
    }

    /// How many times slower this line is than `other` (native / wasm throughput).
    pub fn ratio_to(&self, other: &BenchLine) -> f64 {
        other.bars_per_sec() / self.bars_per_sec().max(1e-9)
    }
}

/// Runs per way; the best is reported.
pub const REPEATS: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct BenchFigures {
    pub wasm: BenchLine,
    pub native: BenchLine,
}

/// Times the bar loop over `csv` with the component at `wasm` (compile and
/// instantiation excluded; full fuel metering and sandbox limits) and with
/// [`Native`] `SmaCrossover`, and prints `wasm    <N> bars/s`, `native  <N> bars/s` and
/// `ratio <x>×` (how many times faster native is) on stdout, details on
/// stderr. Returns the figures.
pub fn bench(wasm: &Path, csv: &Path) -> Result<BenchFigures, BacktestError> {
    let bytes = std::fs::read(wasm).map_err(|error| BacktestError::Io {
        path: wasm.to_path_buf(),
        error,
    })?;
    let series = super::load_csv(csv, None)?;
    let risk = RiskFile::load(None).map_err(|e| BacktestError::Config(e.to_string()))?;
    let symbols = vec![series.symbol.clone()];
    let config = BacktestConfig::new(bytes, vec![series], risk);
    let account = Account::from_config(&config)?;
    let data = super::market_data(&config.series, None);

    let rt = Runtime::new(Limits::default(), None)
        .map_err(|e| BacktestError::Runtime(format!("{e:#}")))?;
    let module = rt.load_strategy(&config.strategy)?;
    // best of a few runs, each on a fresh instance and engine
    let timed = |driver: &mut dyn super::Driver,
                 best: &mut Option<BenchLine>|
     -> Result<(), BacktestError> {
        let t = Instant::now();
        let o = simulate(driver, &data, &config.series, None, None, &account, false)?;
        let line = BenchLine {
            bars: o.bars,
            seconds: t.elapsed().as_secs_f64(),
            trades: o.portfolio.closed_trades().len(),
        };
        if best.as_ref().is_none_or(|b| line.seconds < b.seconds) {
            *best = Some(line);
        }
        Ok(())
    };
    let mut wasm_line: Option<BenchLine> = None;
    let mut native_line: Option<BenchLine> = None;
    for _ in 0..REPEATS {
        let mut driver = WasmDriver::start(&module, &config.risk, &symbols, &[])?;
        timed(&mut driver, &mut wasm_line)?;
        let mut native = Native::<sma_crossover::SmaCrossover>::start(&config.risk, &symbols, &[])?;
        timed(&mut native, &mut native_line)?;
    }
    let (Some(wasm_line), Some(native_line)) = (wasm_line, native_line) else {
        return Err(BacktestError::NoData);
    };
    for (name, l) in [("wasm", &wasm_line), ("native", &native_line)] {
        println!("{name:<7} {:.0} bars/s", l.bars_per_sec());
        eprintln!(
            "        {name}: {} bars in {:.3} s, {} trades (best of {REPEATS})",
            l.bars, l.seconds, l.trades
        );
    }
    println!("ratio {:.2}×", wasm_line.ratio_to(&native_line));
    Ok(BenchFigures {
        wasm: wasm_line,
        native: native_line,
    })
}
