//! Strategy modules: the store data behind the market view imports, and an
//! instance wrapper that meters every call and validates what comes back.
//!
//! Invariants: `market.candles` returns at most `max_candles_per_call`
//! candles and charges fuel for each; `host.log` is the guard's (sanitised,
//! charged); module text in an error is passed through [`guest_text`].

use super::bindings::strategy_world::trading::contract::{host, market, types};
use super::bindings::strategy_world::{StrategyModule as World, StrategyModulePre};
use super::bindings::{
    Candle, ClosedTrade, Fill, Interval, LogLevel, OpenPosition, Portfolio, RiskLimits, Signal,
    SymbolData,
};
use super::guard::{self, Guard, Guarded};
use super::{guest_text, Limits, ModuleError, ModuleInfo, Runtime};
use std::collections::VecDeque;
use std::sync::Arc;
use trading_core::MarketView;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Func, Instance, Linker, Lower, TypedFunc, WasmStr};
use wasmtime::{Store, StoreContextMut, ValRaw};

/// Most closed trades a strategy can pull.
pub const RECENT_TRADES: usize = 100;

/// Store data of a strategy instance: the limit guard, the market view and
/// the recent trades.
pub struct StrategyHost {
    guard: Guard,
    /// The point-in-time market view for the current scan.
    pub view: Option<MarketView>,
    /// The last closed trades (at most 100), oldest first.
    pub trades: VecDeque<ClosedTrade>,
    /// Series the strategy asked for that the data has no candle of at all
    /// (not merely none yet): a backtest says so instead of trading nothing
    /// without a word.
    pub asked_missing: std::collections::BTreeSet<(String, trading_core::Interval)>,
}

impl Guarded for StrategyHost {
    fn guard(&self) -> &Guard {
        &self.guard
    }
    fn guard_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

impl StrategyHost {
    /// Log lines of the last call: (level, message).
    pub fn logs(&self) -> &[(LogLevel, String)] {
        &self.guard.logs
    }
}

impl host::Host for StrategyHost {
    fn log(&mut self, level: LogLevel, message: String) {
        self.guard.log(level, &message);
    }
}

impl market::Host for StrategyHost {
    fn symbol(&mut self, symbol: String) -> Option<SymbolData> {
        let f = self.view.as_ref()?.symbol_data(&symbol)?;
        Some(SymbolData {
            symbol,
            price: f.price,
            spread: f.spread,
            volume_24h: f.volume_24h,
        })
    }

    fn candles(&mut self, symbol: String, interval: Interval, n: u32) -> Vec<Candle> {
        let n = n.min(self.guard.limits.max_candles_per_call) as usize;
        let iv = core_interval(interval);
        match &self.view {
            Some(v) => {
                if v.data.series(&symbol, iv).is_empty() {
                    self.asked_missing.insert((symbol.clone(), iv));
                }
                v.candles(&symbol, iv, n)
                    .iter()
                    .map(contract_candle)
                    .collect()
            }
            None => Vec::new(),
        }
    }

    fn latest(&mut self, symbol: String, interval: Interval) -> Option<Candle> {
        let c = self.latest_candle(&symbol, interval);
        if c.is_none() {
            self.note_if_missing(&symbol, interval);
        }
        c
    }

    fn recent_trades(&mut self, n: u32) -> Vec<ClosedTrade> {
        let n = (n as usize).min(RECENT_TRADES).min(self.trades.len());
        self.trades
            .iter()
            .skip(self.trades.len() - n)
            .cloned()
            .collect()
    }
}

impl types::Host for StrategyHost {}

impl StrategyHost {
    /// Records `symbol`'s series at `interval` as asked for and absent when
    /// the data holds no candle of it at all.
    fn note_if_missing(&mut self, symbol: &str, interval: Interval) {
        let iv = core_interval(interval);
        if self
            .view
            .as_ref()
            .is_some_and(|v| v.data.series(symbol, iv).is_empty())
        {
            self.asked_missing.insert((symbol.to_string(), iv));
        }
    }

    /// `market.latest`: the newest candle the scan's view shows.
    fn latest_candle(&self, symbol: &str, interval: Interval) -> Option<Candle> {
        let c = self
            .view
            .as_ref()?
            .candles(symbol, core_interval(interval), 1)
            .first()?;
        Some(contract_candle(c))
    }
}

fn contract_candle(c: &trading_core::Candle) -> Candle {
    Candle {
        ts: c.ts,
        open: c.open,
        high: c.high,
        low: c.low,
        close: c.close,
        volume: c.volume,
    }
}

pub fn core_interval(i: Interval) -> trading_core::Interval {
    match i {
        Interval::M5 => trading_core::Interval::M5,
        Interval::H1 => trading_core::Interval::H1,
        Interval::D1 => trading_core::Interval::D1,
    }
}

/// A loaded, validated strategy component; instantiate it as often as needed.
#[derive(Clone)]
pub struct StrategyModule {
    runtime: Arc<Runtime>,
    pre: StrategyModulePre<StrategyHost>,
    info: ModuleInfo,
}

impl StrategyModule {
    pub(super) fn new(
        runtime: Arc<Runtime>,
        pre: StrategyModulePre<StrategyHost>,
        info: ModuleInfo,
    ) -> Self {
        StrategyModule { runtime, pre, info }
    }

    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// A fresh instance in its own store, limits applied.
    pub fn instantiate(&self) -> Result<StrategyInstance, ModuleError> {
        let data = StrategyHost {
            guard: Guard::new(&self.runtime, &self.info),
            view: None,
            trades: VecDeque::new(),
            asked_missing: Default::default(),
        };
        let mut store = guard::new_store(&self.runtime, data);
        let (world, analyze) = guard::call(&mut store, "instantiate", |s| {
            let instance = self.pre.instance_pre().instantiate(&mut *s)?;
            let world = World::new(&mut *s, &instance)?;
            Ok((world, analyze_func(s, &instance)?))
        })?;
        Ok(StrategyInstance {
            store,
            world,
            analyze,
            info: self.info.clone(),
            limits: self.runtime.limits().clone(),
            symbols: Vec::new(),
            poisoned: false,
        })
    }
}

/// One running strategy: every call is fuel-metered, deadline-bound and
/// memory-capped; a trap poisons the instance.
pub struct StrategyInstance {
    store: Store<StrategyHost>,
    world: World,
    /// `strategy.analyze`, type-checked against [`AnalyzeFunc`] at instantiation.
    analyze: Func,
    info: ModuleInfo,
    limits: Limits,
    symbols: Vec<String>,
    poisoned: bool,
}

impl StrategyInstance {
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// The store data: market view, recent trades, logs of the last call.
    pub fn host(&mut self) -> &mut StrategyHost {
        self.store.data_mut()
    }

    /// Fuel the last call consumed.
    pub fn fuel_used(&self) -> u64 {
        guard::fuel_used(&self.store)
    }

    fn call<R>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&World, &mut Store<StrategyHost>) -> wasmtime::Result<R>,
    ) -> Result<R, ModuleError> {
        if self.poisoned {
            return Err(ModuleError::Poisoned);
        }
        let world = &self.world;
        let r = guard::call(&mut self.store, name, |s| f(world, s));
        if matches!(r, Err(ModuleError::Trap { .. })) {
            self.poisoned = true;
        }
        r
    }

    pub fn initialize(
        &mut self,
        limits: &RiskLimits,
        symbols: &[String],
        params: &[(String, String)],
    ) -> Result<(), ModuleError> {
        self.symbols = symbols.to_vec();
        self.call("initialize", |w, s| {
            w.trading_contract_strategy()
                .call_initialize(s, *limits, symbols, params)
        })?
        .map_err(|e| ModuleError::InitRefused(guest_text(&e, 1024)))
    }

    pub fn scan_interval_minutes(&mut self) -> Result<u32, ModuleError> {
        let m = self.call("scan-interval-minutes", |w, s| {
            w.trading_contract_strategy().call_scan_interval_minutes(s)
        })?;
        if m == 0 || m > 7 * 24 * 60 {
            return Err(ModuleError::BadOutput {
                call: "scan-interval-minutes",
                reason: format!("{m} minutes is outside 1..=10080"),
            });
        }
        Ok(m)
    }

    /// One scan: the caller has set `host().view` to the market at `now`.
    pub fn analyze(&mut self, now: i64, portfolio: &Portfolio) -> Result<Vec<Signal>, ModuleError> {
        let analyze = self.analyze;
        let (signals,) = self.call("analyze", |_, s| {
            // SAFETY: `analyze_func` type-checked this function as `AnalyzeFunc`.
            let f = unsafe { AnalyzeFunc::new_unchecked(analyze) };
            f.call(s, (now, PortfolioArg(portfolio)))
        })?;
        validate_signals(&signals, &self.symbols, &self.limits).map_err(|reason| {
            ModuleError::BadOutput {
                call: "analyze",
                reason,
            }
        })?;
        Ok(signals)
    }

    pub fn on_fill(&mut self, fill: &Fill) -> Result<(), ModuleError> {
        self.call("on-fill", |w, s| {
            w.trading_contract_strategy().call_on_fill(s, fill)
        })
    }

    pub fn on_position_closed(&mut self, trade: &ClosedTrade) -> Result<(), ModuleError> {
        let t = self.store.data_mut();
        if t.trades.len() == RECENT_TRADES {
            t.trades.pop_front();
        }
        t.trades.push_back(trade.clone());
        self.call("on-position-closed", |w, s| {
            w.trading_contract_strategy()
                .call_on_position_closed(s, trade)
        })
    }

    pub fn get_state(&mut self) -> Result<Vec<u8>, ModuleError> {
        let state = self.call("get-state", |w, s| {
            w.trading_contract_strategy().call_get_state(s)
        })?;
        if state.len() > self.limits.max_state_bytes {
            return Err(ModuleError::BadOutput {
                call: "get-state",
                reason: format!(
                    "state of {} bytes exceeds the {}-byte cap",
                    state.len(),
                    self.limits.max_state_bytes
                ),
            });
        }
        Ok(state)
    }

    pub fn load_state(&mut self, state: &[u8]) -> Result<(), ModuleError> {
        self.call("load-state", |w, s| {
            w.trading_contract_strategy().call_load_state(s, state)
        })?
        .map_err(|e| ModuleError::StateRefused(guest_text(&e, 1024)))
    }
}

/// Structural checks on what `analyze` returned: count, finite numbers in
/// range, known symbols, bounded strings. Risk limits are checked later by
/// the risk manager; this only refuses values no sane strategy produces.
pub fn validate_signals(
    signals: &[Signal],
    symbols: &[String],
    limits: &Limits,
) -> Result<(), String> {
    if signals.len() > limits.max_signals {
        return Err(format!(
            "{} signals, the cap is {}",
            signals.len(),
            limits.max_signals
        ));
    }
    for (i, s) in signals.iter().enumerate() {
        let at = |what: String| format!("signal {i} ({}): {what}", guest_text(&s.symbol, 32));
        if !symbols.iter().any(|x| x == &s.symbol) {
            return Err(at("unknown symbol".into()));
        }
        if !s.size_pct.is_finite() || s.size_pct < 0.0 || s.size_pct > 100.0 {
            return Err(at(format!("size-pct {} is not in 0..=100", s.size_pct)));
        }
        if !s.confidence.is_finite() || !(0.0..=1.0).contains(&s.confidence) {
            return Err(at(format!("confidence {} is not in 0..=1", s.confidence)));
        }
        for (name, v) in [
            ("limit-price", s.limit_price),
            ("stop-loss", s.stop_loss),
            ("take-profit", s.take_profit),
            ("slippage-tolerance", s.slippage_tolerance),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(at(format!(
                        "{name} {v} is not a finite non-negative number"
                    )));
                }
            }
        }
        for (name, v) in [("tag", &s.tag), ("reasoning", &s.reasoning)] {
            if v.len() > limits.max_string_bytes {
                return Err(at(format!(
                    "{name} is {} bytes, the cap is {}",
                    v.len(),
                    limits.max_string_bytes
                )));
            }
        }
    }
    Ok(())
}

/// A [`Candle`] as `market.latest` returns it: lowered into the guest's
/// memory with one bounds-checked write of its 48 bytes, where the derived
/// lowering looks the memory up and checks bounds once per field. Type-checked,
/// flattened and laid out exactly as `Candle`: only the store into memory
/// differs (`latest_lowers_every_candle_field_bit_for_bit` checks it).
#[derive(Clone, Copy, Debug)]
struct LatestCandle(Candle);

const CANDLE_BYTES: usize = 48;
const _: () = assert!(<Candle as ComponentType>::SIZE32 == CANDLE_BYTES);

/// Gives `$wrapper` the component type of `$inner`: type-checked, flattened
/// and laid out as `$inner`, so only its hand-written `Lower` differs.
macro_rules! component_type_of {
    ($wrapper:ty => $inner:ty) => {
        // SAFETY: every item delegates to `$inner`'s derived implementation,
        // so the flat and memory representations are `$inner`'s.
        unsafe impl ComponentType for $wrapper {
            type Lower = <$inner as ComponentType>::Lower;
            const ABI: CanonicalAbiInfo = <$inner as ComponentType>::ABI;
            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <$inner as ComponentType>::typecheck(ty, types)
            }
        }
    };
}

component_type_of!(LatestCandle => Candle);

// SAFETY: the flat form is `Candle`'s; the memory form writes the record's
// canonical layout (six 8-byte little-endian fields at offsets 0, 8, .., 40
// in declaration order), which `Candle`'s derived store writes field by field.
unsafe impl Lower for LatestCandle {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        dst: &mut std::mem::MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        self.0.linear_lower_to_flat(cx, ty, dst)
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let c = &self.0;
        let fields = [
            c.ts.to_le_bytes(),
            c.open.to_le_bytes(),
            c.high.to_le_bytes(),
            c.low.to_le_bytes(),
            c.close.to_le_bytes(),
            c.volume.to_le_bytes(),
        ];
        let dst: &mut [u8; CANDLE_BYTES] = cx.get(offset);
        for (d, f) in dst.chunks_exact_mut(8).zip(fields) {
            d.copy_from_slice(&f);
        }
        Ok(())
    }
}

/// Defines, over the bindgen'd ones (the linker must allow shadowing), the
/// imports that need the store: `host.log` (the guard's), `market.candles`
/// (charged per candle) and `market.latest`.
pub(super) fn define_imports(linker: &mut Linker<StrategyHost>) -> wasmtime::Result<()> {
    guard::define_log(linker)?;
    define_candles(linker)?;
    define_latest(linker)
}

/// `market.candles`, charged fuel for the call and for every candle it returns.
fn define_candles(linker: &mut Linker<StrategyHost>) -> wasmtime::Result<()> {
    linker.instance(&guard::interface("market"))?.func_wrap(
        "candles",
        |mut store: StoreContextMut<'_, StrategyHost>,
         (symbol, interval, n): (String, Interval, u32)| {
            let candles = market::Host::candles(store.data_mut(), symbol, interval, n);
            let limits = &store.data().guard.limits;
            let fuel = limits.import_fuel(candles.len() * CANDLE_BYTES);
            guard::charge(&mut store, fuel)?;
            Ok((candles,))
        },
    )
}

/// `market.latest`, called once per scan: the symbol is read in place from
/// the guest's memory (no `String`), the candle lowered as a [`LatestCandle`].
fn define_latest(linker: &mut Linker<StrategyHost>) -> wasmtime::Result<()> {
    linker.instance(&guard::interface("market"))?.func_wrap(
        "latest",
        |mut store: StoreContextMut<'_, StrategyHost>, (symbol, interval): (WasmStr, Interval)| {
            let name = symbol.to_str(&store)?;
            let latest = store.data().latest_candle(&name, interval);
            if latest.is_none() {
                // off the hot path: no candle at all, or none of this series
                let name = name.into_owned();
                store.data_mut().note_if_missing(&name, interval);
            }
            Ok((latest.map(LatestCandle),))
        },
    )
}

/// `strategy.analyze` called with a [`PortfolioArg`].
type AnalyzeFunc<'a> = TypedFunc<(i64, PortfolioArg<'a>), (Vec<Signal>,)>;

/// Looks up `strategy.analyze` in `instance` and type-checks it as [`AnalyzeFunc`].
fn analyze_func(store: &mut Store<StrategyHost>, instance: &Instance) -> wasmtime::Result<Func> {
    let name = format!(
        "{}/strategy@{}",
        super::bindings::CONTRACT_PACKAGE,
        super::bindings::CONTRACT_VERSION
    );
    let iface = instance
        .get_export_index(&mut *store, None, &name)
        .ok_or_else(|| wasmtime::format_err!("no export {name}"))?;
    let func = instance
        .get_export_index(&mut *store, Some(&iface), "analyze")
        .ok_or_else(|| wasmtime::format_err!("no export {name}#analyze"))?;
    let f: AnalyzeFunc<'_> = instance.get_typed_func(&mut *store, func)?;
    Ok(*f.func())
}

/// The `portfolio` argument of `analyze`. With no open positions (most
/// scans) its empty list is lowered as the pointer the guest's `realloc`
/// answers for zero bytes, the list's alignment, without a call into the
/// sandbox to ask for it; otherwise, and in memory, it is `Portfolio`'s
/// derived lowering (`analyze_sees_the_portfolio_bit_for_bit` checks both).
#[derive(Clone, Copy)]
struct PortfolioArg<'a>(&'a Portfolio);

/// `Portfolio`'s flat form: cash, total value, positions (pointer, length),
/// daily P&L, total P&L, fees, closed-trade count.
const PORTFOLIO_FLAT: usize = 8;
const _: () = assert!(
    std::mem::size_of::<<Portfolio as ComponentType>::Lower>()
        == PORTFOLIO_FLAT * std::mem::size_of::<ValRaw>()
);

component_type_of!(PortfolioArg<'_> => Portfolio);

// SAFETY: with positions, and in memory, `Portfolio`'s derived lowering;
// without, the flat values that lowering writes, in field order, each as it
// writes it (a list as two 64-bit values), the list's pointer being what
// the canonical ABI lets `realloc` answer for zero bytes.
unsafe impl Lower for PortfolioArg<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        dst: &mut std::mem::MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        let p = self.0;
        if !p.positions.is_empty() {
            return p.linear_lower_to_flat(cx, ty, dst);
        }
        let flat: [ValRaw; PORTFOLIO_FLAT] = [
            ValRaw::f64(p.cash.to_bits()),
            ValRaw::f64(p.total_value.to_bits()),
            ValRaw::i64(i64::from(<OpenPosition as ComponentType>::ALIGN32)),
            ValRaw::i64(0),
            ValRaw::f64(p.daily_pnl.to_bits()),
            ValRaw::f64(p.total_pnl.to_bits()),
            ValRaw::f64(p.fees_paid.to_bits()),
            ValRaw::u32(p.closed_trade_count),
        ];
        // SAFETY: `Self::Lower` is `PORTFOLIO_FLAT` `ValRaw`s (asserted above).
        unsafe {
            dst.as_mut_ptr()
                .cast::<[ValRaw; PORTFOLIO_FLAT]>()
                .write(flat)
        };
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        self.0.linear_lower_to_memory(cx, ty, offset)
    }
}
