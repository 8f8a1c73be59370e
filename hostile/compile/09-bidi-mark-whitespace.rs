// hostile: U+200E between env and ! is whitespace to rustc, not to the old tokenizer
// sandbox: fails
use guest_sdk::{Init, LogLevel, MarketView, Portfolio, Signal, Strategy};
fn leak() -> String { env‎!("@CANARY_VAR@").to_string() }

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
