//! The part of every sandboxed store that enforces the limits, shared by the
//! strategy and analysis worlds: the memory cap, fresh fuel and epoch
//! deadline for each call, the log lines and panic message of the last call,
//! and the classification of a trap.

use super::bindings::LogLevel;
use super::{classify_trap, clip, Limits, MemoryCap, ModuleError, ModuleInfo, Runtime};
use wasmtime::Store;

/// Limit state held in a store's data.
pub struct Guard {
    cap: MemoryCap,
    /// Log lines of the last call: (level, message).
    pub logs: Vec<(LogLevel, String)>,
    panic: Option<String>,
    pub(super) limits: Limits,
    module: String,
    deadline_ticks: u64,
}

/// Store data that carries a [`Guard`].
pub trait Guarded: 'static {
    fn guard(&self) -> &Guard;
    fn guard_mut(&mut self) -> &mut Guard;
}

impl Guard {
    pub(super) fn new(runtime: &Runtime, info: &ModuleInfo) -> Guard {
        let limits = runtime.limits().clone();
        Guard {
            cap: MemoryCap {
                max_bytes: limits.memory_bytes,
                denied: false,
            },
            logs: Vec::new(),
            panic: None,
            module: info.hash[..12].to_string(),
            deadline_ticks: runtime.deadline_ticks(),
            limits,
        }
    }

    /// A module's log line: clipped, capped in number, forwarded to tracing;
    /// a `panic: ` line is kept as the reason of the coming trap.
    pub(super) fn log(&mut self, level: LogLevel, message: &str) {
        let message = clip(message, self.limits.max_string_bytes);
        if let Some(p) = message.strip_prefix("panic: ") {
            self.panic = Some(p.to_string());
        }
        if self.logs.len() >= self.limits.max_log_lines {
            return;
        }
        let module = self.module.as_str();
        match level {
            LogLevel::Debug => tracing::debug!(module, "{message}"),
            LogLevel::Info => tracing::info!(module, "{message}"),
            LogLevel::Warn => tracing::warn!(module, "{message}"),
            LogLevel::Error => tracing::error!(module, "{message}"),
        }
        self.logs.push((level, message));
    }

    fn trap(&self, call: &'static str, e: &wasmtime::Error) -> ModuleError {
        ModuleError::Trap {
            call,
            kind: classify_trap(e, self.cap.denied, self.panic.as_deref()),
        }
    }
}

fn host_error(e: wasmtime::Error) -> ModuleError {
    ModuleError::Host(format!("{e:#}"))
}

/// A store for `data` with the memory cap installed.
pub(super) fn new_store<T: Guarded>(runtime: &Runtime, data: T) -> Store<T> {
    let mut store = Store::new(runtime.engine(), data);
    store.limiter(|d| &mut d.guard_mut().cap);
    store
}

/// Runs one call into the guest (instantiation included) with fresh fuel
/// and a fresh deadline, the last call's logs and panic cleared; a trap
/// comes back as [`ModuleError::Trap`] with its kind.
pub(super) fn call<T: Guarded, R>(
    store: &mut Store<T>,
    name: &'static str,
    f: impl FnOnce(&mut Store<T>) -> wasmtime::Result<R>,
) -> Result<R, ModuleError> {
    let (fuel, ticks) = {
        let g = store.data_mut().guard_mut();
        g.cap.denied = false;
        g.panic = None;
        g.logs.clear();
        (g.limits.fuel_per_call, g.deadline_ticks)
    };
    store.set_fuel(fuel).map_err(host_error)?;
    store.set_epoch_deadline(ticks);
    f(store).map_err(|e| store.data().guard().trap(name, &e))
}

/// Fuel the last call consumed.
pub(super) fn fuel_used<T: Guarded>(store: &Store<T>) -> u64 {
    store.data().guard().limits.fuel_per_call - store.get_fuel().unwrap_or(0)
}
