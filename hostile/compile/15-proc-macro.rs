// hostile: a #[proc_macro] that would read the canary inside the compiler
// sandbox: fails
use guest_sdk::{Init, LogLevel, MarketView, Portfolio, Signal, Strategy};
extern crate proc_macro;
use proc_macro::TokenStream;
#[proc_macro]
pub fn leak_macro(_t: TokenStream) -> TokenStream {
    std::fs::read_to_string("@CANARY_FILE@").unwrap_or_default().parse().unwrap()
}
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
