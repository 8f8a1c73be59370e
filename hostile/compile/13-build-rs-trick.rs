// hostile: a build.rs written into the source: reads the canary with std::fs and emits cargo:rustc-env for option_env!
// sandbox: builds
use guest_sdk::{Init, LogLevel, MarketView, Portfolio, Signal, Strategy};
// [package] build = "src/lib.rs"  (the host writes the manifest: build = false)
pub mod build {
    pub fn main() {
        let s = std::fs::read_to_string("@CANARY_FILE@").unwrap_or_default();
        println!("cargo:rustc-env=LEAKED={s}");
    }
}
fn leak() -> String { option_env!("LEAKED").unwrap_or("not leaked").to_string() }

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
