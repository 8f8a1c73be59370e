//! The API reference the writer model gets, generated from the sources it
//! describes so it cannot drift from them: the SDK's public items (every
//! `pub` signature with its doc lines, struct fields, trait methods, with
//! test modules, hidden items and function bodies left out) read from
//! `strategies/sdk/src/*.rs` at build time; the contract's types rendered as
//! the Rust the SDK's bindings generate from `wit/contract.wit` (records as
//! structs with snake_case fields, `option<T>` as `Option<T>`, enums with
//! CamelCase variants) plus the WIT itself; the rules the checks enforce;
//! two short examples (compiled by the test suite through the real
//! compiler); and the default example strategy and analysis sources, also
//! embedded at build time.

/// The SDK's sources, embedded at build time (file name, text).
pub const SDK_SOURCES: [(&str, &str); 6] = [
    ("lib.rs", include_str!("../../../strategies/sdk/src/lib.rs")),
    (
        "market.rs",
        include_str!("../../../strategies/sdk/src/market.rs"),
    ),
    (
        "params.rs",
        include_str!("../../../strategies/sdk/src/params.rs"),
    ),
    (
        "indicators.rs",
        include_str!("../../../strategies/sdk/src/indicators.rs"),
    ),
    (
        "state.rs",
        include_str!("../../../strategies/sdk/src/state.rs"),
    ),
    (
        "analysis.rs",
        include_str!("../../../strategies/sdk/src/analysis.rs"),
    ),
];

/// The contract.
pub const CONTRACT_WIT: &str = include_str!("../../../wit/contract.wit");

/// The example strategy when the incumbent's source is not archived.
pub const EXAMPLE_STRATEGY_SOURCE: &str =
    include_str!("../../../strategies/sma-crossover/src/lib.rs");

/// The default analysis modules' sources (what `update_analysis` edits
/// until a module has been replaced).
pub const MARKET_ANALYSIS_SOURCE: &str =
    include_str!("../../../analysis/market-analysis/src/lib.rs");
pub const TRADE_PERFORMANCE_SOURCE: &str =
    include_str!("../../../analysis/trade-performance/src/lib.rs");

/// A short strategy showing the parts models get wrong: `Option` returns,
/// parameters, state, the portfolio, the export macro. Compiled by the tests.
pub const STRATEGY_EXAMPLE: &str = r#"use guest_sdk::indicators::{atr, closes, ema, rsi};
use guest_sdk::{signal, state::State, Action, Init, Interval, MarketView, Portfolio, Signal, Strategy};

#[derive(Default)]
pub struct Example {
    period: usize,
    size_pct: f64,
    symbols: Vec<String>,
    entries: f64,
}

impl Strategy for Example {
    fn initialize(&mut self, init: &Init) -> Result<(), String> {
        // parameters: absent means the default; a bad value is an error (ParamError -> String via ?)
        self.period = init.params.usize_or("period", 14)?;
        self.size_pct = init.params.f64_or("size_pct", init.limits.default_trade_pct)?;
        self.symbols = init.symbols.clone();
        Ok(())
    }

    fn scan_interval_minutes(&self) -> u32 {
        60
    }

    fn analyze(&mut self, _now: i64, portfolio: &Portfolio, market: &dyn MarketView) -> Vec<Signal> {
        let mut out = Vec::new();
        for sym in &self.symbols {
            // may return fewer than asked (or none): every indicator returns Option
            let candles = market.candles(sym, Interval::H1, (self.period * 10 + 1) as u32);
            let c = closes(&candles);
            let (Some(r), Some(trend), Some(a), Some(&price)) =
                (rsi(&c, self.period), ema(&c, 50), atr(&candles, self.period), c.last())
            else {
                continue; // not enough history yet: no signal, never a panic
            };
            let held = portfolio.position(sym).is_some();
            if !held && r < 30.0 && price > trend {
                let mut s = signal(sym, Action::Buy, self.size_pct);
                let stop = price - 2.0 * a;
                s.stop_loss = (stop > 0.0).then_some(stop);
                s.tag = "example-entry".into();
                s.confidence = 0.6;
                s.reasoning = format!("RSI {r:.1} under 30 above EMA50");
                self.entries += 1.0;
                out.push(s);
            } else if held && r > 70.0 {
                out.push(signal(sym, Action::Close, 100.0));
            }
        }
        out
    }

    fn save_state(&self) -> Vec<u8> {
        let mut s = State::default();
        s.set("entries", self.entries);
        s.encode()
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        self.entries = State::decode(state)?.get("entries").unwrap_or(0.0);
        Ok(())
    }
}

guest_sdk::export_strategy!(Example);
"#;

/// A short analysis module: one read-only query, a report. Compiled by the tests.
pub const ANALYSIS_EXAMPLE: &str = r#"use guest_sdk::{Analysis, Database, DbValue, Report};

#[derive(Default)]
pub struct Coverage;

impl Analysis for Coverage {
    fn analyze(&mut self, now: i64, db: &dyn Database) -> Result<Report, String> {
        let rows = db.query(
            "SELECT symbol, COUNT(*) FROM candles WHERE interval = '1h' AND ts <= ?1 GROUP BY symbol",
            &[DbValue::Integer(now)],
        )?;
        let mut r = Report::new("coverage", &format!("{} symbols", rows.rows.len()));
        for row in &rows.rows {
            if let (Some(DbValue::Text(sym)), Some(n)) = (row.first(), row.get(1).and_then(DbValue::as_f64)) {
                r.number(&format!("symbol:{sym}"), "hourly_candles", n);
            }
        }
        Ok(r)
    }
}

guest_sdk::export_analysis!(Coverage);
"#;

/// What the checks enforce, in the order they run.
pub const RULES: &str = "\
1. Source check (before anything is compiled): one file, src/lib.rs, depending only on guest_sdk (and std/core/alloc \
without fs, net, process, env, os, arch, ffi). Refused anywhere: unsafe, extern, include!/include_str!/include_bytes!, \
env!/option_env!, asm!/global_asm!, #[path], #[link], #[no_mangle], #[export_name], #[link_section], proc_macro, \
`mod name;` (modules must be inline), crate attributes other than lints, non-ASCII outside strings and comments.
2. Compile: wasm32-unknown-unknown, release, panic = abort, offline, with a time and size cap. Warnings are fine; errors \
are sent back to you.
3. Contract: the component loads, `initialize` succeeds with no parameters (so every parameter needs a default) and names \
its scan interval. End the file with guest_sdk::export_strategy!(Type); the type derives Default.
4. Fuzz: `analyze` is called on random markets: no candles at all, 1-5 candles, hundreds; prices of 1e-6 and 1e6, flat \
prices, zero volume, gaps of days; cash of 0, 1 or 1e9. It must never panic or trap (no unwrap on an indicator, no \
indexing past a slice, no division by zero producing NaN sizes). A trap ends the candidate.
5. Lookahead: signals with the history cut at a bar equal the signals on the full history at that bar; and with the whole \
calendar moved by 53 weeks the signals move with it. Never key a decision to a date, a timestamp or a price level you \
remember; use only what `market` returns at `now`.
6. Startup sensitivity: two runs whose history starts 200 and 400 bars before the compared window must give the same \
signals: no counters of scans since start, no state that depends on how long the module has run (warm-up must come from \
the candles, which the host provides in full).
7. Backtest and review: the candidate is backtested beside the incumbent (fees, slippage, the user's risk limits) and must \
do better out of sample without breaching the drawdown limit; then a reviewer reads your diff and every check's result.
Limits per call: fuel 2e9 instructions, 64 MiB memory, 2 s wall clock, at most 64 signals, state at most 1 MiB, strings \
at most 4 KiB. Sizes are percent of portfolio value and are clipped to the risk limits.";

/// Doc lines kept per item.
const MAX_DOC_LINES: usize = 4;

/// Counts `{` minus `}` outside strings, chars and comments.
fn brace_delta(line: &str) -> i32 {
    let b = line.as_bytes();
    let mut d = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => break,
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            // a char literal ('{', '\''), not a lifetime ('a)
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
            }
            b'{' => d += 1,
            b'}' => d -= 1,
            _ => {}
        }
        i += 1;
    }
    d
}

/// A signature without its body: up to the `{` that opens it (or the `;`).
fn signature(lines: &[&str], start: usize) -> (String, usize) {
    let mut sig = String::new();
    let mut i = start;
    while i < lines.len() {
        let l = lines[i].trim();
        if let Some(pos) = l.find('{').filter(|_| !l.starts_with("pub use")) {
            sig.push_str(l[..pos].trim_end());
            return (sig, i);
        }
        sig.push_str(l);
        if l.ends_with(';') {
            return (sig, i);
        }
        if !l.ends_with('(') {
            sig.push(' ');
        }
        i += 1;
    }
    (sig.trim_end().to_string(), i)
}

fn is_item(l: &str) -> bool {
    [
        "pub fn ",
        "pub struct ",
        "pub trait ",
        "pub enum ",
        "pub use ",
        "pub const ",
        "pub type ",
        "fn ",
        "impl ",
        "impl<",
        "macro_rules! ",
    ]
    .iter()
    .any(|p| l.starts_with(p))
}

/// The public surface of one SDK source file.
pub fn public_items(src: &str) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::new();
    let mut docs: Vec<&str> = Vec::new();
    let mut skip_next_item = false;
    // (depth at which the block's items live, kind): trait → every fn,
    // impl → pub fns, struct → pub fields
    let mut block: Option<(i32, &str)> = None;
    let mut depth = 0i32;
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let l = raw.trim();
        let before = depth;
        if let Some(doc) = l.strip_prefix("///") {
            docs.push(doc.trim());
            i += 1;
            continue;
        }
        if l.starts_with("#[cfg(test)]") || l.starts_with("#[doc(hidden)]") {
            skip_next_item = true;
            i += 1;
            continue;
        }
        if l.starts_with("#[") || l.starts_with("//") || l.is_empty() {
            i += 1;
            continue;
        }
        let in_block = block.is_some_and(|(d, _)| before == d);
        let top = before == 0;
        if (top || in_block) && (is_item(l) || l.starts_with("pub mod ") || l.starts_with("mod ")) {
            let (sig, end) = signature(&lines, i);
            let delta: i32 = lines[i..=end.min(lines.len() - 1)]
                .iter()
                .map(|x| brace_delta(x))
                .sum();
            let opens = delta > 0;
            let kind = block.map(|(_, k)| k);
            let wanted = if skip_next_item {
                false
            } else if top {
                l.starts_with("pub ") || l.starts_with("impl") || l.starts_with("macro_rules!")
            } else {
                match kind {
                    Some("trait") => l.starts_with("fn ") || l.starts_with("pub fn "),
                    Some("impl") => l.starts_with("pub fn "),
                    _ => false,
                }
            };
            let private_impl = l.starts_with("impl") && top && !wanted;
            if wanted && !(l.starts_with("impl") && top) {
                let indent = if top { "" } else { "    " };
                for d in docs.iter().take(MAX_DOC_LINES) {
                    out.push_str(&format!("{indent}/// {d}\n"));
                }
                let shown = if l.starts_with("macro_rules!") {
                    let name = l
                        .trim_start_matches("macro_rules!")
                        .trim()
                        .trim_end_matches('{')
                        .trim();
                    format!("macro {name}!(YourType);")
                } else if sig.ends_with(';') {
                    sig.clone()
                } else if opens
                    && (l.starts_with("pub struct")
                        || l.starts_with("pub enum")
                        || l.starts_with("pub trait"))
                {
                    format!("{sig} {{")
                } else {
                    format!("{sig};")
                };
                out.push_str(&format!("{indent}{shown}\n"));
            }
            if top && opens && wanted {
                if l.starts_with("pub trait") {
                    block = Some((1, "trait"));
                } else if l.starts_with("pub struct") || l.starts_with("pub enum") {
                    block = Some((
                        1,
                        if l.starts_with("pub enum") {
                            "enum"
                        } else {
                            "struct"
                        },
                    ));
                }
            }
            if top && opens && l.starts_with("impl") && !skip_next_item && !private_impl {
                // an inherent impl: list its pub fns under its header
                if !l.contains(" for ") {
                    out.push_str(&format!("{sig} {{\n"));
                    block = Some((1, "impl"));
                }
            }
            if l.starts_with("macro_rules!") && top {
                skip_next_item = true; // its body is not API
            }
            depth += delta;
            docs.clear();
            if depth == 0 {
                if block.is_some() && before == 1 {
                    // closed within the same item
                }
                skip_next_item = false;
            }
            i = end + 1;
            continue;
        }
        // fields and variants of a struct or enum block
        if let Some((d, k)) = block {
            if before == d && (k == "struct" || k == "enum") {
                let shown = if k == "struct" {
                    l.starts_with("pub ").then_some(l)
                } else {
                    Some(l)
                };
                if let Some(s) = shown {
                    for doc in docs.iter().take(MAX_DOC_LINES) {
                        out.push_str(&format!("    /// {doc}\n"));
                    }
                    out.push_str(&format!("    {s}\n"));
                }
            }
        }
        docs.clear();
        depth += brace_delta(raw);
        if let Some((d, _)) = block {
            if depth < d {
                out.push_str("}\n");
                block = None;
            }
        }
        if depth == 0 {
            skip_next_item = false;
        }
        i += 1;
    }
    out
}

fn camel(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A WIT type as the Rust the bindings generate.
fn rust_type(t: &str) -> String {
    let t = t.trim();
    if let Some(inner) = t.strip_prefix("option<").and_then(|r| r.strip_suffix('>')) {
        return format!("Option<{}>", rust_type(inner));
    }
    if let Some(inner) = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
        return format!("Vec<{}>", rust_type(inner));
    }
    if let Some(inner) = t.strip_prefix("tuple<").and_then(|r| r.strip_suffix('>')) {
        let parts: Vec<String> = inner.split(',').map(rust_type).collect();
        return format!("({})", parts.join(", "));
    }
    match t {
        "string" => "String".into(),
        "s64" | "timestamp" => "i64".into(),
        "u32" | "u8" | "f64" | "bool" => t.into(),
        other => camel(other),
    }
}

/// The contract's records and enums as the SDK's Rust types.
pub fn contract_types(wit: &str) -> String {
    let mut out = String::new();
    let mut open: Option<&str> = None;
    for line in wit.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("record ") {
            let name = rest.trim_end_matches('{').trim();
            out.push_str(&format!("pub struct {} {{\n", camel(name)));
            open = Some("record");
        } else if let Some(rest) = l.strip_prefix("enum ") {
            let (name, body) = rest.split_once('{').unwrap_or((rest, ""));
            let variants: Vec<String> = body
                .trim_end_matches('}')
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(camel)
                .collect();
            out.push_str(&format!(
                "pub enum {} {{ {} }}\n",
                camel(name.trim()),
                variants.join(", ")
            ));
        } else if let Some(rest) = l.strip_prefix("variant ") {
            out.push_str(&format!(
                "pub enum {} {{\n",
                camel(rest.trim_end_matches('{').trim())
            ));
            open = Some("variant");
        } else if l == "}" && open.is_some() {
            out.push_str("}\n");
            open = None;
        } else if let (Some(kind), Some((name, ty))) =
            (open, l.trim_end_matches(',').split_once(':'))
        {
            if kind == "record" {
                out.push_str(&format!(
                    "    pub {}: {},\n",
                    name.trim().replace('-', "_"),
                    rust_type(ty)
                ));
            }
        } else if let Some(kind) = open {
            if kind == "variant" && !l.is_empty() && !l.starts_with("//") {
                let v = l.trim_end_matches(',');
                let shown = match v.split_once('(') {
                    Some((n, t)) => format!("{}({})", camel(n), rust_type(t.trim_end_matches(')'))),
                    None => camel(v),
                };
                out.push_str(&format!("    {shown},\n"));
            }
        } else if let Some(d) = l.strip_prefix("///") {
            out.push_str(&format!("///{d}\n"));
        }
    }
    out
}

/// The whole reference: rules, contract types, SDK surface, examples.
pub fn api_reference() -> String {
    let mut s = String::new();
    s.push_str(
        "=== API REFERENCE (generated from the SDK and the contract this host runs) ===\n\n",
    );
    s.push_str("--- Rules the checks enforce ---\n");
    s.push_str(RULES);
    s.push_str("\n\n--- Contract types (wit/contract.wit as the Rust the SDK exposes: `guest_sdk::{Signal, Portfolio, OpenPosition, Candle, ...}`) ---\n");
    s.push_str(&contract_types(CONTRACT_WIT));
    for (name, src) in SDK_SOURCES {
        s.push_str(&format!("\n--- guest_sdk {name} (public items) ---\n"));
        s.push_str(&public_items(src));
    }
    s.push_str("\n--- Example strategy (compiles against this SDK) ---\n```rust\n");
    s.push_str(STRATEGY_EXAMPLE);
    s.push_str("```\n\n--- Example analysis module (compiles against this SDK) ---\n```rust\n");
    s.push_str(ANALYSIS_EXAMPLE);
    s.push_str("```\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_names_what_models_get_wrong() {
        let r = api_reference();
        for needle in [
            "pub fn sma(values: &[f64], n: usize) -> Option<f64>;",
            "pub fn rsi(closes: &[f64], n: usize) -> Option<f64>;",
            "pub fn atr(candles: &[Candle], n: usize) -> Option<f64>;",
            "fn candles(&self, symbol: &str, interval: Interval, n: u32) -> Vec<Candle>;",
            "pub fn f64_or(&self, name: &str, default: f64) -> Result<f64, ParamError>;",
            "pub fn usize_or(&self, name: &str, default: usize) -> Result<usize, ParamError>;",
            "pub fn position(&self, symbol: &str) -> Option<&OpenPosition>;",
            "fn save_state(&self) -> Vec<u8>;",
            "fn load_state(&mut self, _state: &[u8]) -> Result<(), String>;",
            "pub struct Init {",
            "    pub params: Params,",
            "    pub stop_loss: Option<f64>,",
            "    pub slippage_tolerance: Option<f64>,",
            "pub enum Action { Buy, Sell, Close, Modify }",
            "fn query(&self, sql: &str, params: &[DbValue]) -> Result<Rows, String>;",
            "pub fn number(&mut self, section: &str, key: &str, value: f64) -> &mut Self;",
            "macro export_strategy!(YourType);",
            "macro export_analysis!(YourType);",
            "Lookahead",
            "Startup sensitivity",
        ] {
            assert!(r.contains(needle), "{needle:?} missing from\n{r}");
        }
        // the signal record has its twelve fields
        let signal = r.split("pub struct Signal {").nth(1).unwrap();
        let fields = signal.split('}').next().unwrap().matches("pub ").count();
        assert_eq!(fields, 12);
        // no test module, hidden runtime or function body leaks in
        for absent in [
            "mod tests",
            "fn runtime",
            "thread_local",
            "assert",
            "Slot<S>",
        ] {
            assert!(!r.contains(absent), "{absent:?} leaked into the reference");
        }
        assert!(r.len() < 40_000, "{} bytes", r.len());
    }
}
