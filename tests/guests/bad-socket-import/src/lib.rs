//! Test guest: a strategy that imports `wasi:sockets/tcp-create-socket@0.2.0`
//! (besides the contract's `host` and `market`) and calls it in `analyze`, so
//! the import survives componentisation. The host must refuse to load it.

wit_bindgen::generate!({
    path: "wit",
    world: "socket-strategy",
    generate_all,
});

use exports::trading::contract::strategy::{ClosedTrade, Fill, Guest, Portfolio, RiskLimits, Signal};
use std::cell::RefCell;
use std::hint::black_box;
use trading::contract::host::{log, LogLevel};
use trading::contract::market;
use trading::contract::types::Interval;
use wasi::sockets::tcp_create_socket::create_tcp_socket;

thread_local! {
    static SYMBOLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

pub struct SocketImport;

impl Guest for SocketImport {
    fn initialize(_limits: RiskLimits, symbols: Vec<String>, _params: Vec<(String, String)>) -> Result<(), String> {
        SYMBOLS.with(|s| *s.borrow_mut() = symbols);
        Ok(())
    }
    fn scan_interval_minutes() -> u32 {
        60
    }
    fn analyze(_now: i64, _portfolio: Portfolio) -> Vec<Signal> {
        let socket = black_box(create_tcp_socket(black_box(4)));
        let first = SYMBOLS.with(|s| s.borrow().first().cloned());
        let candles = first.map_or(0, |sym| market::candles(&sym, Interval::H1, 1).len());
        log(LogLevel::Info, &format!("socket {socket}, {candles} candles"));
        Vec::new()
    }
    fn on_fill(_fill: Fill) {}
    fn on_position_closed(_trade: ClosedTrade) {}
    fn get_state() -> Vec<u8> {
        Vec::new()
    }
    fn load_state(_state: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(SocketImport);
