// hostile: option_env! through a macro: compiles either way, the value must be None
// sandbox: builds
use guest_sdk::{Init, LogLevel, MarketView, Portfolio, Signal, Strategy};
macro_rules! m { ($x:ident, $v:literal) => { $x!($v) } }
fn leak() -> String { m!(option_env, "@CANARY_VAR@").unwrap_or("unset").to_string() }

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
