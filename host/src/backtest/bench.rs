//! Backtest throughput: the same bar loop and engine driving the sandboxed
//! SMA-crossover component, and the same logic compiled natively.

use super::{simulate, Account, BacktestConfig, BacktestError, Driver, WasmDriver};
use crate::config::RiskFile;
use crate::runtime::bindings as c;
use crate::runtime::{Limits, ModuleError, Runtime};
use std::path::Path;
use std::time::Instant;
use trading_core::{Interval, MarketView};

/// The SMA-crossover strategy as native code (same rules as the guest:
/// buy when the fast SMA of hourly closes crosses above the slow one, close
/// when it crosses back below).
pub struct NativeSma {
    pub fast: usize,
    pub slow: usize,
    pub size_pct: f64,
    pub symbols: Vec<String>,
}

fn sma(values: &[f64], n: usize) -> Option<f64> {
    if n == 0 || values.len() < n {
        return None;
    }
    let m = values[values.len() - n..].iter().sum::<f64>() / n as f64;
    m.is_finite().then_some(m)
}

fn signal(
    symbol: &str,
    action: c::Action,
    size_pct: f64,
    tag: &str,
    reasoning: String,
) -> c::Signal {
    c::Signal {
        symbol: symbol.to_string(),
        action,
        size_pct,
        order_type: c::OrderType::Market,
        limit_price: None,
        stop_loss: None,
        take_profit: None,
        intent: c::Intent::Swing,
        tag: tag.to_string(),
        confidence: 0.5,
        reasoning,
        slippage_tolerance: None,
    }
}

impl Driver for NativeSma {
    fn scan_minutes(&self) -> u32 {
        60
    }

    fn analyze(
        &mut self,
        _now: i64,
        portfolio: &c::Portfolio,
        view: &MarketView,
    ) -> Result<Vec<c::Signal>, ModuleError> {
        let mut out = Vec::new();
        for sym in &self.symbols {
            let closes: Vec<f64> = view
                .candles(sym, Interval::H1, self.slow + 1)
                .iter()
                .map(|c| c.close)
                .collect();
            let prev = &closes[..closes.len().saturating_sub(1)];
            let (Some(fp), Some(sp), Some(fc), Some(sc)) = (
                sma(prev, self.fast),
                sma(prev, self.slow),
                sma(&closes, self.fast),
                sma(&closes, self.slow),
            ) else {
                continue;
            };
            let held = portfolio.positions.iter().any(|p| &p.symbol == sym);
            if !held && fp <= sp && fc > sc {
                out.push(signal(
                    sym,
                    c::Action::Buy,
                    self.size_pct,
                    "sma-cross-up",
                    format!("fast {fc:.2} crossed above slow {sc:.2}"),
                ));
            } else if held && fp >= sp && fc < sc {
                out.push(signal(
                    sym,
                    c::Action::Close,
                    100.0,
                    "sma-cross-down",
                    format!("fast {fc:.2} crossed below slow {sc:.2}"),
                ));
            }
        }
        Ok(out)
    }

    fn on_fill(&mut self, _fill: &c::Fill) -> Result<(), ModuleError> {
        Ok(())
    }

    fn on_position_closed(&mut self, _trade: &c::ClosedTrade) -> Result<(), ModuleError> {
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
/// [`NativeSma`], and prints `wasm    <N> bars/s`, `native  <N> bars/s` and
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
        let mut native = NativeSma {
            fast: 10,
            slow: 30,
            size_pct: config.risk.default_trade_pct,
            symbols: symbols.clone(),
        };
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
