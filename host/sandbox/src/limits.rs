//! Per-store sandbox limits: fuel per call, a memory cap through a
//! `ResourceLimiter`, a wall-clock deadline through epoch interruption, and
//! caps on what a module may return.

use std::time::Duration;

/// Limits applied to every module call. Defaults are far above what a normal
/// strategy needs and low enough that a runaway module is stopped fast.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (about one unit per wasm instruction) per call.
    pub fuel_per_call: u64,
    /// Linear memory cap per instance, bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline per call, milliseconds.
    pub deadline_ms: u64,
    /// Most signals one `analyze` may return.
    pub max_signals: usize,
    /// Largest `get-state` blob, bytes.
    pub max_state_bytes: usize,
    /// Longest string field in a returned value, bytes.
    pub max_string_bytes: usize,
    /// Most candles one `candles` call returns.
    pub max_candles_per_call: u32,
    /// Most rows an analysis query returns.
    pub max_query_rows: usize,
    /// Most log lines kept per call.
    pub max_log_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: 2_000_000_000,
            memory_bytes: 64 << 20,
            deadline_ms: 2_000,
            max_signals: 64,
            max_state_bytes: 1 << 20,
            max_string_bytes: 4_096,
            max_candles_per_call: 5_000,
            max_query_rows: 100_000,
            max_log_lines: 32,
        }
    }
}

impl Limits {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// Memory limiter held in the store's data; remembers that it refused growth
/// so a trap can be reported as "memory cap" without parsing messages.
#[derive(Debug)]
pub struct MemoryCap {
    pub max_bytes: usize,
    pub denied: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.denied = true;
            return Err(wasmtime::Error::msg(format!(
                "memory cap: module asked for {desired} bytes, cap is {}",
                self.max_bytes
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        4
    }
}
