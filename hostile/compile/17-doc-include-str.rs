// hostile: #[doc = include_str!(...)]: the doc attribute carrying a file read
// sandbox: fails
use guest_sdk::{Init, LogLevel, MarketView, Portfolio, Signal, Strategy};
#[doc = include_str!("@CANARY_FILE@")]
pub mod documented {}
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
