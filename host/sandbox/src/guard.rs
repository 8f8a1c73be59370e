//! The part of every sandboxed store that enforces the limits, shared by the
//! strategy and analysis worlds: the memory cap (one total per instance),
//! fresh fuel and epoch deadline for each call, the fuel charged for work a
//! host import does, the sanitised log lines and panic message of the last
//! call, and the classification of a trap.
//!
//! Invariants: the [`Guard`] in a store's data holds every limit that store
//! is under ([`Limits`]); an import that does work proportional to its
//! input or output charges fuel for it through [`charge`]; no module text
//! reaches the host's log without passing through [`guest_text`].

use super::bindings::{LogLevel, CONTRACT_PACKAGE, CONTRACT_VERSION};
use super::{classify_trap, guest_text, Limits, MemoryCap, ModuleError, ModuleInfo, Runtime};
use std::time::Instant;
use wasmtime::component::{Linker, WasmStr};
use wasmtime::{Store, StoreContextMut};

/// Limit state held in a store's data.
pub struct Guard {
    cap: MemoryCap,
    /// Log lines of the last call: (level, sanitised message).
    pub logs: Vec<(LogLevel, String)>,
    panic: Option<String>,
    pub(super) limits: Limits,
    module: String,
    deadline_ticks: u64,
    /// When the current call (instantiation included) started.
    call_started: Instant,
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
            cap: MemoryCap::new(limits.memory_bytes, limits.table_elements),
            logs: Vec::new(),
            panic: None,
            module: info.hash[..12].to_string(),
            deadline_ticks: runtime.deadline_ticks(),
            limits,
            call_started: Instant::now(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes of linear memory the instance holds, all memories together.
    pub fn memory_bytes(&self) -> usize {
        self.cap.used_bytes
    }

    /// The wall-clock deadline of the current call: host work done on the
    /// module's behalf (SQL) stops there too.
    pub(super) fn call_deadline(&self) -> Instant {
        self.call_started + self.limits.deadline()
    }

    /// A module's log line: sanitised and clipped, capped in number,
    /// forwarded to tracing; a `panic: ` line is kept as the reason of the
    /// coming trap.
    pub(super) fn log(&mut self, level: LogLevel, message: &str) {
        let message = guest_text(message, self.limits.max_string_bytes);
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

/// A store for `data` with the memory cap installed. What one import call
/// may take from the module is bounded by the module's own memory cap
/// (wasmtime checks it before copying anything), and charged as fuel.
pub(super) fn new_store<T: Guarded>(runtime: &Runtime, data: T) -> Store<T> {
    let mut store = Store::new(runtime.engine(), data);
    store.limiter(|d| &mut d.guard_mut().cap);
    let max_in = store.data().guard().limits.memory_bytes;
    store.set_hostcall_fuel(max_in);
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
        g.call_started = Instant::now();
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

/// Fuel left in the current call.
pub(super) fn fuel_left<T: Guarded>(store: &StoreContextMut<'_, T>) -> u64 {
    store.get_fuel().unwrap_or(0)
}

/// Charges `fuel` for work an import did: a call that cannot pay is left
/// with none, and the module traps out of fuel as soon as it runs again.
pub(super) fn charge<T: Guarded>(
    store: &mut StoreContextMut<'_, T>,
    fuel: u64,
) -> wasmtime::Result<()> {
    let left = store.get_fuel()?;
    store.set_fuel(left.saturating_sub(fuel))
}

/// `trading:contract/host@<version>`'s instance name for `item`.
pub(super) fn interface(item: &str) -> String {
    format!("{CONTRACT_PACKAGE}/{item}@{CONTRACT_VERSION}")
}

/// Defines `host.log` for a world: the message is read in place from the
/// module's memory (never copied whole), sanitised and clipped, and the call
/// costs fuel for every byte the module passed.
pub(super) fn define_log<T: Guarded>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.instance(&interface("host"))?.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, T>, (level, message): (LogLevel, WasmStr)| {
            let max = store.data().guard().limits.max_string_bytes;
            let (text, len) = {
                // Validated in place (bounded by the module's memory cap);
                // only what sanitising to `max` bytes can use is copied.
                let s = message.to_str(&store)?;
                let mut end = s.len().min(max.saturating_add(4));
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                (s[..end].to_string(), s.len())
            };
            let fuel = store.data().guard().limits.import_fuel(len);
            charge(&mut store, fuel)?;
            store.data_mut().guard_mut().log(level, &text);
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModuleKind, TrapKind};
    use wasm_encoder::{
        Component, InstanceSection, MemorySection, MemoryType, Module, ModuleSection,
    };

    struct Bare(Guard);
    impl Guarded for Bare {
        fn guard(&self) -> &Guard {
            &self.0
        }
        fn guard_mut(&mut self) -> &mut Guard {
            &mut self.0
        }
    }

    /// A component that instantiates one core module `copies` times, each
    /// instance with its own memory of `mib` MiB.
    fn memories(copies: usize, mib: u64) -> Vec<u8> {
        let mut core = Module::new();
        let mut mems = MemorySection::new();
        mems.memory(MemoryType {
            minimum: mib * 16,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        core.section(&mems);
        let mut c = Component::new();
        c.section(&ModuleSection(&core));
        let mut inst = InstanceSection::new();
        for _ in 0..copies {
            inst.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
        }
        c.section(&inst);
        c.finish()
    }

    fn instantiate(rt: &Runtime, bytes: &[u8]) -> (Result<(), ModuleError>, usize) {
        let component = wasmtime::component::Component::new(rt.engine(), bytes).unwrap();
        let info = ModuleInfo {
            hash: "0".repeat(64),
            kind: ModuleKind::Strategy,
            contract_version: String::new(),
            size: bytes.len(),
        };
        let mut store = new_store(rt, Bare(Guard::new(rt, &info)));
        let linker = Linker::<Bare>::new(rt.engine());
        let r = call(&mut store, "instantiate", |s| {
            linker.instantiate(s, &component).map(drop)
        });
        (r, store.data().0.memory_bytes())
    }

    #[test]
    fn the_memory_cap_is_per_instance_not_per_memory() {
        let limits = Limits {
            memory_bytes: 32 << 20,
            ..Limits::default()
        };
        let rt = Runtime::new(limits, None).unwrap();
        let (ok, used) = instantiate(&rt, &memories(1, 20));
        ok.unwrap();
        assert_eq!(used, 20 << 20);
        // four memories of 20 MiB each: 80 MiB in one instance, over the 32 MiB cap
        let (err, used) = instantiate(&rt, &memories(4, 20));
        assert!(
            matches!(
                err,
                Err(ModuleError::Trap {
                    kind: TrapKind::MemoryCap,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(used <= 32 << 20, "{used}");
    }
}
