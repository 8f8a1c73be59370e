//! The sandbox. One `Engine` and one `Linker` per world for the process; each
//! component compiled once (and precompiled to a disk cache keyed by its hash,
//! loaded back only under the host's MAC, see [`cache`]); an `InstancePre`
//! per module; a `Store` per instance whose data holds the limits. Every
//! failure of a module becomes a [`ModuleError`] the shell handles, and every
//! module-supplied text that reaches the host is clipped and sanitised
//! ([`guest_text`]).

mod analysis;
pub mod bindings;
pub mod cache;
mod guard;
mod limits;
mod strategy;

pub use analysis::{
    open_read_only, AnalysisHost, AnalysisInstance, AnalysisModule, QueryError, ReadOnlyDb,
};
pub use cache::CacheStats;
pub use guard::{Guard, Guarded};
pub use limits::{Limits, MemoryCap};
pub use strategy::{validate_signals, StrategyHost, StrategyInstance, StrategyModule};

use bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Trap};

/// How often the epoch ticks; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a module call or load failed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error(
        "module was built for contract {found}, this host speaks {CONTRACT_PACKAGE}@{expected}"
    )]
    ContractMismatch {
        found: String,
        expected: &'static str,
    },
    #[error("module exports neither {CONTRACT_PACKAGE}/strategy nor {CONTRACT_PACKAGE}/analysis (exports: {exports})")]
    NotAModule { exports: String },
    #[error("module is a {found} module, expected a {expected} module")]
    WrongKind {
        found: ModuleKind,
        expected: ModuleKind,
    },
    #[error("module imports `{0}`, which this host does not provide (modules get no files, network, clock or environment)")]
    ForbiddenImport(String),
    #[error("{call} trapped: {kind}")]
    Trap { call: &'static str, kind: TrapKind },
    #[error("{call} returned a bad value: {reason}")]
    BadOutput { call: &'static str, reason: String },
    #[error("initialize refused: {0}")]
    InitRefused(String),
    #[error("load-state refused: {0}")]
    StateRefused(String),
    #[error("the instance trapped earlier and cannot be entered again")]
    Poisoned,
    #[error("{call} returned a report of {bytes} bytes, the cap is {cap}")]
    ReportTooLarge {
        call: &'static str,
        bytes: usize,
        cap: usize,
    },
    #[error("host error: {0}")]
    Host(String),
}

impl ModuleError {
    /// True when the instance can no longer be used and must be replaced.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ModuleError::Trap { .. } | ModuleError::Poisoned)
    }
}

/// What stopped a module.
#[derive(Debug, Clone, PartialEq)]
pub enum TrapKind {
    OutOfFuel,
    Deadline,
    MemoryCap,
    StackOverflow,
    Panic(String),
    Other(String),
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::OutOfFuel => {
                f.write_str("fuel exhausted (endless loop or too much work per call)")
            }
            TrapKind::Deadline => f.write_str("wall-clock deadline passed"),
            TrapKind::MemoryCap => f.write_str("memory cap reached"),
            TrapKind::StackOverflow => f.write_str("call stack exhausted (too deep recursion)"),
            TrapKind::Panic(m) => write!(f, "module panicked: {m}"),
            TrapKind::Other(m) => write!(f, "{m}"),
        }
    }
}

pub(crate) fn classify_trap(
    err: &wasmtime::Error,
    memory_denied: bool,
    panic: Option<&str>,
) -> TrapKind {
    if memory_denied {
        return TrapKind::MemoryCap;
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => TrapKind::OutOfFuel,
        Some(Trap::Interrupt) => TrapKind::Deadline,
        Some(Trap::StackOverflow) => TrapKind::StackOverflow,
        Some(Trap::UnreachableCodeReached) if panic.is_some() => {
            TrapKind::Panic(panic.unwrap_or_default().to_string())
        }
        Some(t) => TrapKind::Other(t.to_string()),
        None => match panic {
            Some(p) => TrapKind::Panic(p.to_string()),
            None => TrapKind::Other(format!("{err:#}")),
        },
    }
}

/// The two kinds of module the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    Strategy,
    Analysis,
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModuleKind::Strategy => "strategy",
            ModuleKind::Analysis => "analysis",
        })
    }
}

/// Facts about a validated component.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModuleInfo {
    /// sha256 of the component bytes, hex.
    pub hash: String,
    pub kind: ModuleKind,
    pub contract_version: String,
    pub size: usize,
}

pub fn module_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Splits `trading:contract/strategy@1.0.0` into (`strategy`, `1.0.0`).
fn contract_item(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(CONTRACT_PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@')
}

/// Checks the contract version and kind from the component's exports, and
/// that it imports nothing the host does not provide.
fn inspect(engine: &Engine, component: &Component) -> Result<(ModuleKind, String), ModuleError> {
    let ty = component.component_type();
    let mut kind = None;
    let mut names = Vec::new();
    for (name, _) in ty.exports(engine) {
        names.push(name.to_string());
        if let Some((item, version)) = contract_item(name) {
            let k = match item {
                "strategy" => ModuleKind::Strategy,
                "analysis" => ModuleKind::Analysis,
                _ => continue,
            };
            if version != CONTRACT_VERSION {
                return Err(ModuleError::ContractMismatch {
                    found: format!("{CONTRACT_PACKAGE}@{version}"),
                    expected: CONTRACT_VERSION,
                });
            }
            kind = Some(k);
        }
    }
    let kind = kind.ok_or_else(|| ModuleError::NotAModule {
        exports: names.join(", "),
    })?;
    let allowed: &[&str] = match kind {
        ModuleKind::Strategy => &["types", "host", "market"],
        ModuleKind::Analysis => &["types", "host", "database"],
    };
    for (name, _) in ty.imports(engine) {
        match contract_item(name) {
            Some((item, version)) if allowed.contains(&item) => {
                if version != CONTRACT_VERSION {
                    return Err(ModuleError::ContractMismatch {
                        found: format!("{CONTRACT_PACKAGE}@{version}"),
                        expected: CONTRACT_VERSION,
                    });
                }
            }
            _ => return Err(ModuleError::ForbiddenImport(name.to_string())),
        }
    }
    Ok((kind, CONTRACT_VERSION.to_string()))
}

/// Stops the epoch thread when the runtime is dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch ticker");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The process's sandbox: engine, linkers, limits and compiled-component cache.
pub struct Runtime {
    engine: Engine,
    strategy_linker: Linker<StrategyHost>,
    analysis_linker: Linker<AnalysisHost>,
    limits: Limits,
    cache: cache::DiskCache,
    compiled: Mutex<HashMap<String, Component>>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime whose precompiled components live in `cache_dir` (if any).
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Arc<Runtime>> {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.max_wasm_stack(512 << 10);
        // `perf` names guest functions (from the component's name section)
        // when this is set: for profiling modules, off by default.
        if std::env::var_os("HOST_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("wasmtime engine: {e:#}"))?;

        let mut strategy_linker = Linker::new(&engine);
        bindings::strategy_world::StrategyModule::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut strategy_linker, |s| s)
            .map_err(|e| anyhow::anyhow!("strategy linker: {e:#}"))?;
        strategy_linker.allow_shadowing(true);
        strategy::define_imports(&mut strategy_linker)
            .map_err(|e| anyhow::anyhow!("strategy linker: {e:#}"))?;
        strategy_linker.allow_shadowing(false);
        let mut analysis_linker = Linker::new(&engine);
        analysis::define_imports(&mut analysis_linker)
            .map_err(|e| anyhow::anyhow!("analysis linker: {e:#}"))?;

        let cache = cache::DiskCache::open(cache_dir)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Arc::new(Runtime {
            engine,
            strategy_linker,
            analysis_linker,
            limits,
            cache,
            compiled: Mutex::new(HashMap::new()),
            _ticker: ticker,
        }))
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What the precompiled cache did so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Compiles (or fetches from memory or the disk cache) and validates a component.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, ModuleInfo), ModuleError> {
        let hash = module_hash(bytes);
        let cached = self
            .compiled
            .lock()
            .expect("compile cache lock")
            .get(&hash)
            .cloned();
        let component = match cached {
            Some(c) => c,
            None => {
                let c = self.compile_uncached(&hash, bytes)?;
                self.compiled
                    .lock()
                    .expect("compile cache lock")
                    .insert(hash.clone(), c.clone());
                c
            }
        };
        let (kind, contract_version) = inspect(&self.engine, &component)?;
        Ok((
            component,
            ModuleInfo {
                hash,
                kind,
                contract_version,
                size: bytes.len(),
            },
        ))
    }

    fn compile_uncached(&self, hash: &str, bytes: &[u8]) -> Result<Component, ModuleError> {
        if let Some(c) = self.cache.load(&self.engine, hash) {
            return Ok(c);
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(ModuleError::Invalid("missing the \\0asm header".into()));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        self.cache.store(hash, &component);
        Ok(component)
    }

    /// Loads a strategy component, ready to instantiate.
    pub fn load_strategy(self: &Arc<Self>, bytes: &[u8]) -> Result<StrategyModule, ModuleError> {
        let (component, info) = self.compile(bytes)?;
        if info.kind != ModuleKind::Strategy {
            return Err(ModuleError::WrongKind {
                found: info.kind,
                expected: ModuleKind::Strategy,
            });
        }
        let pre = self
            .strategy_linker
            .instantiate_pre(&component)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        let pre = bindings::strategy_world::StrategyModulePre::new(pre)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        Ok(StrategyModule::new(self.clone(), pre, info))
    }

    /// Loads an analysis component, ready to instantiate.
    pub fn load_analysis(self: &Arc<Self>, bytes: &[u8]) -> Result<AnalysisModule, ModuleError> {
        let (component, info) = self.compile(bytes)?;
        if info.kind != ModuleKind::Analysis {
            return Err(ModuleError::WrongKind {
                found: info.kind,
                expected: ModuleKind::Analysis,
            });
        }
        let pre = self
            .analysis_linker
            .instantiate_pre(&component)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        let pre = bindings::analysis_world::AnalysisModulePre::new(pre)
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        Ok(AnalysisModule::new(self.clone(), pre, info))
    }

    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.limits.deadline_ms / EPOCH_TICK.as_millis() as u64).max(1) + 1
    }
}

/// True for characters that can forge or hide text on a terminal or in a
/// log file: C0/C1 controls (newline, carriage return, escape, bell, ...),
/// DEL, and the invisible or direction-changing format characters.
fn is_forging(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidi embeddings/overrides
            | '\u{2060}'..='\u{2069}' // word joiner, invisible operators, bidi isolates
            | '\u{feff}')
}

/// A module-supplied text made safe for the host's log and messages: every
/// control or bidi character is written as its escape (`\n`, `\u{1b}`), so
/// one call is one line whatever the module sent, then clipped to `max`
/// bytes (input beyond what `max` needs is never looked at).
pub fn guest_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let len_before = out.len();
        if is_forging(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(len_before);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::guest_text;

    #[test]
    fn guest_text_is_one_line_without_escapes() {
        let t = guest_text("a\nb\r\x1b[31mc\u{202e}d\u{7}", 100);
        assert_eq!(t, "a\\nb\\r\\u{1b}[31mc\\u{202e}d\\u{7}");
        assert!(!t.chars().any(|c| c.is_control()));
        let long = guest_text(&"é".repeat(10_000), 101);
        assert!(long.len() <= 101 + '…'.len_utf8(), "{}", long.len());
        assert_eq!(
            guest_text("plain text, ünïcode", 100),
            "plain text, ünïcode"
        );
    }
}
