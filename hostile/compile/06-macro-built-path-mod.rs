// hostile: #[$a = ...] mod $n; built by a macro (the attribute route)
// sandbox: fails
use guest_sdk::{Init, LogLevel, MarketView, Portfolio, Signal, Strategy};
macro_rules! m { ($a:ident, $n:ident) => { #[$a = "@CANARY_FILE@"] mod $n; } }
m!(path, secret);
fn leak() -> String { String::new() }

#[derive(Default)]
pub struct S;
impl Strategy for S {
    fn initialize(&mut self, _init: &Init) -> Result<(), String> {
        // the leak's channels: the host's log, and the refusal that becomes an observation
        guest_sdk::log(LogLevel::Info, &leak());
        Err(leak())
    }
    fn analyze(&mut self, _now: i64, _p: &Portfolio, _m: &dyn MarketView) -> Vec<Signal> {
        guest_sdk::log(LogLevel::Info, &leak());
        Vec::new()
    }
}
guest_sdk::export_strategy!(S);
