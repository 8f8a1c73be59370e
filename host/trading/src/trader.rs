//! One trading step, shared by backtests, paper and live trading: a closed bar
//! goes to the engine and its fills and closes go back to the strategy; a due
//! scan shows the strategy the market up to `now` and routes its signals
//! through the risk manager. Callers add what is theirs (persistence, notes).

use crate::backtest::{convert, Driver};
use host_sandbox::ModuleError;
use std::collections::BTreeMap;
use std::sync::Arc;
use trading_core::{
    Candle, Decision, Engine, EngineError, EngineEvent, Intent, MarketData, MarketView,
};

/// The engine plus what the strategy needs echoed back with each fill.
#[derive(Debug, Clone)]
pub struct Trader {
    pub engine: Engine,
    /// Per open position: the intent and tag of its entry.
    entries: BTreeMap<String, (Intent, String)>,
}

/// What one scan produced.
#[derive(Debug)]
pub struct ScanOutcome {
    /// Every signal with the risk manager's decision, in the strategy's order.
    pub decisions: Vec<(trading_core::Signal, Decision)>,
    /// The strategy failed (trap, bad output): no signals were taken.
    pub error: Option<ModuleError>,
}

impl Trader {
    pub fn new(engine: Engine) -> Self {
        let entries = engine
            .portfolio()
            .positions()
            .values()
            .map(|p| (p.symbol.clone(), (p.intent, p.tag.clone())))
            .collect();
        Trader { engine, entries }
    }

    /// Feeds one closed bar to the engine and tells the strategy about the
    /// resulting fills and closes. Strategy errors come back beside the events;
    /// the events happened either way.
    pub fn on_bar(
        &mut self,
        driver: &mut dyn Driver,
        symbol: &str,
        candle: &Candle,
    ) -> Result<(Vec<EngineEvent>, Vec<ModuleError>), EngineError> {
        let events = self.engine.on_bar(symbol, candle)?;
        let errors = self.forward(driver, &events);
        Ok((events, errors))
    }

    /// Tells the strategy about fills and closed positions among `events`.
    pub fn forward(&mut self, driver: &mut dyn Driver, events: &[EngineEvent]) -> Vec<ModuleError> {
        let mut errors = Vec::new();
        for ev in events {
            let r = match ev {
                EngineEvent::Filled(rec) => {
                    if let trading_core::FillKind::Buy { intent, tag, .. } = &rec.fill.kind {
                        self.entries
                            .insert(rec.fill.symbol.clone(), (*intent, tag.clone()));
                    }
                    let entry = self
                        .entries
                        .get(&rec.fill.symbol)
                        .map(|(i, t)| (*i, t.as_str()));
                    driver.on_fill(&convert::fill_to_contract(&rec.fill, entry))
                }
                EngineEvent::PositionClosed(trade) => {
                    self.entries.remove(&trade.symbol);
                    driver.on_position_closed(&convert::trade_to_contract(trade))
                }
                _ => Ok(()),
            };
            if let Err(e) = r {
                errors.push(e);
            }
        }
        errors
    }

    /// Runs one scan at `now` over `data` (which holds nothing newer than `now`
    /// that the view would not cut).
    pub fn scan(
        &mut self,
        driver: &mut dyn Driver,
        data: &Arc<MarketData>,
        now: i64,
    ) -> ScanOutcome {
        let view = MarketView::new(data.clone(), now);
        let portfolio = convert::portfolio_to_contract(self.engine.portfolio());
        let out = match driver.analyze(now, &portfolio, &view) {
            Ok(s) => s,
            Err(e) => {
                return ScanOutcome {
                    decisions: Vec::new(),
                    error: Some(e),
                }
            }
        };
        if out.is_empty() {
            return ScanOutcome {
                decisions: Vec::new(),
                error: None,
            };
        }
        let signals: Vec<trading_core::Signal> =
            out.iter().map(convert::signal_from_contract).collect();
        let decisions = self.engine.submit(now, &signals, &view);
        ScanOutcome {
            decisions: signals.into_iter().zip(decisions).collect(),
            error: None,
        }
    }
}
