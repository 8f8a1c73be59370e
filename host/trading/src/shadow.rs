//! A forward shadow: a strategy instance run beside the live one on the same
//! closed bars, on its own paper account — the one [`Trader`] (engine,
//! portfolio, fill model, risk manager) that backtests and paper trading use,
//! scanned at the strategy's own interval as the shell and the backtest scan.
//!
//! Invariant: a shadow owns no venue and no database handle; its orders
//! live and fill only inside its own engine, so it can never send an order.

use crate::backtest::{Account, Driver, WasmDriver};
use crate::risk_file::RiskFile;
use crate::trader::{ScanOutcome, Trader};
use host_sandbox::{ModuleError, StrategyModule};
use rust_decimal::Decimal;
use std::sync::Arc;
use trading_core::money::to_f64;
use trading_core::{Candle, Engine, MarketData, Portfolio, RiskManager};

/// Why a shadow could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("the strategy does not start: {0}")]
    Module(#[from] ModuleError),
    #[error("the paper account: {0}")]
    Account(String),
}

/// One strategy on its own paper account.
pub struct ShadowRun {
    pub trader: Trader,
    pub driver: WasmDriver,
    next_scan_at: i64,
    capital: Decimal,
    peak: Decimal,
    max_drawdown_pct: f64,
    /// Scans and callbacks the strategy failed (a trap poisons nothing but this shadow).
    pub module_errors: u64,
}

impl ShadowRun {
    /// A fresh instance of `module` on a fresh account of `account.capital`.
    pub fn start(
        module: &StrategyModule,
        risk: &RiskFile,
        symbols: &[String],
        params: &[(String, String)],
        account: &Account,
    ) -> Result<Self, ShadowError> {
        let driver = WasmDriver::start(module, risk, symbols, params)?;
        let portfolio =
            Portfolio::new(account.capital).map_err(|e| ShadowError::Account(e.to_string()))?;
        let rm = RiskManager::new(account.risk.clone())
            .map_err(|e| ShadowError::Account(e.to_string()))?;
        let engine = Engine::new(portfolio, rm, account.engine)
            .map_err(|e| ShadowError::Account(e.to_string()))?;
        Ok(ShadowRun {
            trader: Trader::new(engine),
            driver,
            next_scan_at: i64::MIN,
            capital: account.capital,
            peak: account.capital,
            max_drawdown_pct: 0.0,
            module_errors: 0,
        })
    }

    /// One closed bar: the engine fills and exits on it, the strategy hears of it.
    pub fn on_bar(&mut self, symbol: &str, bar: &Candle) {
        match self.trader.on_bar(&mut self.driver, symbol, bar) {
            Ok((_, errors)) => self.module_errors += errors.len() as u64,
            Err(_) => self.module_errors += 1,
        }
        self.mark();
    }

    /// Scans at `now` when a scan is due (aligned to the strategy's interval).
    pub fn scan_if_due(&mut self, data: &Arc<MarketData>, now: i64) -> Option<ScanOutcome> {
        if now < self.next_scan_at {
            return None;
        }
        let step = i64::from(self.driver.scan_minutes().max(1)) * 60;
        self.next_scan_at = (now.div_euclid(step) + 1) * step;
        let out = self.trader.scan(&mut self.driver, data, now);
        if out.error.is_some() {
            self.module_errors += 1;
        }
        Some(out)
    }

    fn mark(&mut self) {
        let eq = self.trader.engine.portfolio().equity();
        if eq > self.peak {
            self.peak = eq;
        }
        if self.peak > Decimal::ZERO {
            let dd = to_f64((self.peak - eq) / self.peak) * 100.0;
            self.max_drawdown_pct = self.max_drawdown_pct.max(dd);
        }
    }

    /// Return since the start, percent of the starting capital.
    pub fn return_pct(&self) -> Option<f64> {
        trading_core::money::pct(
            self.trader.engine.portfolio().equity() - self.capital,
            self.capital,
        )
        .map(to_f64)
    }

    pub fn max_drawdown_pct(&self) -> f64 {
        self.max_drawdown_pct
    }

    pub fn scan_minutes(&self) -> u32 {
        self.driver.scan_minutes()
    }
}
