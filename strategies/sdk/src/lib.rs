//! Guest SDK for trading modules: the contract's bindings generated once, a
//! `Strategy` trait that is plain Rust (testable natively with [`TestMarket`]),
//! `export_strategy!` / `export_analysis!` macros that wire a type to the
//! component exports, and the indicators strategies need.

mod analysis;
pub mod indicators;
mod market;
mod params;
pub mod state;
pub mod testing;

pub use analysis::{rows, Analysis, Database, DbValue, HostDatabase, Metric, MetricValue, Report, Rows, TestDatabase};
pub use market::{CandleCache, Closes, HostMarket, MarketView, TestMarket};
pub use params::{interval_minutes, ParamError, Params};

/// The contract's generated bindings (strategy world).
#[allow(clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "strategy-module",
        pub_export_macro: true,
        export_macro_name: "export_strategy_world",
        default_bindings_module: "guest_sdk::bindings",
        generate_all,
    });
}

/// The contract's generated bindings (analysis world).
#[allow(clippy::all, missing_docs)]
pub mod analysis_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "analysis-module",
        pub_export_macro: true,
        export_macro_name: "export_analysis_world",
        default_bindings_module: "guest_sdk::analysis_bindings",
        generate_all,
    });
}

pub use bindings::trading::contract::types::{
    Action, Candle, ClosedTrade, Fill, Intent, Interval, LogLevel, OpenPosition, OrderType, Portfolio, RiskLimits,
    Side, Signal, SymbolData,
};

/// The contract version this SDK was generated from.
pub const CONTRACT_VERSION: &str = "1.1.0";

/// What `initialize` hands a strategy.
#[derive(Debug, Clone)]
pub struct Init {
    pub limits: RiskLimits,
    pub symbols: Vec<String>,
    pub params: Params,
}

/// A trading strategy: state in, signals out. No I/O, no clock but `now`.
pub trait Strategy: Default + 'static {
    fn initialize(&mut self, init: &Init) -> Result<(), String>;
    fn scan_interval_minutes(&self) -> u32 {
        5
    }
    fn analyze(&mut self, now: i64, portfolio: &Portfolio, market: &dyn MarketView) -> Vec<Signal>;
    fn on_fill(&mut self, _fill: &Fill) {}
    fn on_position_closed(&mut self, _trade: &ClosedTrade) {}
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }
    fn load_state(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Sends a line to the host's log (a no-op outside the sandbox).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::trading::contract::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Forwards panic messages to the host log before the guest traps, so the
/// host can say why a module died.
pub fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| std::panic::set_hook(Box::new(|info| log(LogLevel::Error, &format!("panic: {info}")))));
    }
}

/// A signal with the usual defaults: market order, swing intent, no stops.
pub fn signal(symbol: &str, action: Action, size_pct: f64) -> Signal {
    Signal {
        symbol: symbol.to_string(),
        action,
        size_pct,
        order_type: OrderType::Market,
        limit_price: None,
        stop_loss: None,
        take_profit: None,
        intent: Intent::Swing,
        tag: String::new(),
        confidence: 0.5,
        reasoning: String::new(),
        slippage_tolerance: None,
    }
}

impl Portfolio {
    /// The open position in `symbol`, if any.
    pub fn position(&self, symbol: &str) -> Option<&OpenPosition> {
        self.positions.iter().find(|p| p.symbol == symbol)
    }
}

/// Adapter state behind the exported functions; one per component instance.
#[doc(hidden)]
pub mod runtime {
    use super::*;
    use std::cell::RefCell;

    /// Where an exporting macro keeps the component's one module value (a
    /// [`Strategy`] or an [`Analysis`]), typed, so a call finds it without a
    /// downcast.
    pub type Slot<S> = std::thread::LocalKey<RefCell<Option<S>>>;

    /// Runs `f` on the module value in `slot`, made with `Default` on first use.
    pub fn with<S: Default + 'static, R>(slot: &'static Slot<S>, f: impl FnOnce(&mut S) -> R) -> R {
        slot.with(|slot| f(slot.borrow_mut().get_or_insert_with(S::default)))
    }

    pub fn initialize<S: Strategy>(
        slot: &'static Slot<S>,
        limits: RiskLimits,
        symbols: Vec<String>,
        params: Vec<(String, String)>,
    ) -> Result<(), String> {
        install_panic_hook();
        let init = Init { limits, symbols, params: Params::new(params) };
        with(slot, |s| s.initialize(&init))
    }

    pub fn analyze<S: Strategy>(slot: &'static Slot<S>, now: i64, portfolio: Portfolio) -> Vec<Signal> {
        with(slot, |s| s.analyze(now, &portfolio, &HostMarket))
    }

    pub fn analysis<A: Analysis>(slot: &'static Slot<A>, now: i64) -> Result<Report, String> {
        install_panic_hook();
        with(slot, |a| a.analyze(now, &HostDatabase))
    }
}

/// Exports a [`Strategy`] type as the component's `strategy` interface.
/// The exports exist only on `wasm32`; a native build (unit tests) gets none,
/// so the crate's native `cdylib` links.
#[macro_export]
macro_rules! export_strategy {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        struct __GuestSdkStrategy;
        #[cfg(target_arch = "wasm32")]
        ::std::thread_local! {
            static __GUEST_SDK_SLOT: ::std::cell::RefCell<::std::option::Option<$ty>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }
        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::trading::contract::strategy::Guest for __GuestSdkStrategy {
            fn initialize(
                limits: $crate::RiskLimits,
                symbols: ::std::vec::Vec<::std::string::String>,
                params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::initialize(&__GUEST_SDK_SLOT, limits, symbols, params)
            }
            fn scan_interval_minutes() -> u32 {
                $crate::runtime::with(&__GUEST_SDK_SLOT, |s: &mut $ty| $crate::Strategy::scan_interval_minutes(s))
            }
            fn analyze(now: i64, portfolio: $crate::Portfolio) -> ::std::vec::Vec<$crate::Signal> {
                $crate::runtime::analyze(&__GUEST_SDK_SLOT, now, portfolio)
            }
            fn on_fill(fill: $crate::Fill) {
                $crate::runtime::with(&__GUEST_SDK_SLOT, |s: &mut $ty| $crate::Strategy::on_fill(s, &fill))
            }
            fn on_position_closed(trade: $crate::ClosedTrade) {
                $crate::runtime::with(&__GUEST_SDK_SLOT, |s: &mut $ty| $crate::Strategy::on_position_closed(s, &trade))
            }
            fn get_state() -> ::std::vec::Vec<u8> {
                $crate::runtime::with(&__GUEST_SDK_SLOT, |s: &mut $ty| $crate::Strategy::save_state(s))
            }
            fn load_state(state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::with(&__GUEST_SDK_SLOT, |s: &mut $ty| $crate::Strategy::load_state(s, &state))
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_strategy_world!(__GuestSdkStrategy with_types_in $crate::bindings);
    };
}

/// Exports an [`Analysis`] type as the component's `analysis` interface (on
/// `wasm32` only, like [`export_strategy!`]).
#[macro_export]
macro_rules! export_analysis {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        struct __GuestSdkAnalysis;
        #[cfg(target_arch = "wasm32")]
        ::std::thread_local! {
            static __GUEST_SDK_SLOT: ::std::cell::RefCell<::std::option::Option<$ty>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }
        #[cfg(target_arch = "wasm32")]
        impl $crate::analysis_bindings::exports::trading::contract::analysis::Guest for __GuestSdkAnalysis {
            fn analyze(now: i64) -> ::std::result::Result<$crate::Report, ::std::string::String> {
                $crate::runtime::analysis(&__GUEST_SDK_SLOT, now)
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::analysis_bindings::export_analysis_world!(__GuestSdkAnalysis with_types_in $crate::analysis_bindings);
    };
}
