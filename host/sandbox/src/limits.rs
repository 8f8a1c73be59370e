//! Per-store sandbox limits: fuel per call (charged for the guest's own
//! instructions and for the work its imports make the host do), a memory cap
//! per instance through a `ResourceLimiter`, a wall-clock deadline through
//! epoch interruption (and SQLite's progress handler), and caps on what a
//! module may return, log or read from the database.
//!
//! Invariant: every number here lives in the [`Guard`](crate::Guard) of each
//! store; nothing a module does is bounded by anything that is not in
//! [`Limits`].

use std::time::Duration;

/// Limits applied to every module call. Defaults are far above what a normal
/// strategy needs and low enough that a runaway module is stopped fast.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (about one unit per wasm instruction) per call.
    pub fuel_per_call: u64,
    /// Linear memory cap per instance (all its memories together), bytes.
    pub memory_bytes: usize,
    /// Table elements per instance (all its tables together).
    pub table_elements: usize,
    /// Wall-clock deadline per call, milliseconds; host imports (SQL) count.
    pub deadline_ms: u64,
    /// Most signals one `analyze` may return.
    pub max_signals: usize,
    /// Largest `get-state` blob, bytes.
    pub max_state_bytes: usize,
    /// Longest string field in a returned value or log line, bytes.
    pub max_string_bytes: usize,
    /// Most candles one `candles` call returns (10,000 covers seed 003's windows:
    /// 30 days of 5m = 8,640, a year of 1h = 8,760; the copy costs only what is asked).
    pub max_candles_per_call: u32,
    /// Most rows an analysis query returns.
    pub max_query_rows: usize,
    /// Most bytes one analysis query copies out of SQLite (running total over
    /// its rows); also SQLite's length limit for any one string or blob.
    pub max_query_bytes: usize,
    /// Longest SQL text a module may prepare, bytes.
    pub max_sql_bytes: usize,
    /// Largest analysis report (every string in it, plus 16 bytes a metric).
    pub max_report_bytes: usize,
    /// Most log lines kept per call.
    pub max_log_lines: usize,
    /// Fuel charged for each call of a host import that does work.
    pub fuel_per_import_call: u64,
    /// Fuel charged per byte a host import reads from or hands to a module
    /// (log text, candles, query results).
    pub fuel_per_import_byte: u64,
    /// Fuel charged per SQLite virtual-machine instruction of a query.
    pub fuel_per_sql_op: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: 2_000_000_000,
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            deadline_ms: 2_000,
            max_signals: 64,
            max_state_bytes: 1 << 20,
            max_string_bytes: 4_096,
            max_candles_per_call: 10_000,
            max_query_rows: 100_000,
            max_query_bytes: 16 << 20,
            max_sql_bytes: 100_000,
            max_report_bytes: 256 << 10,
            max_log_lines: 32,
            fuel_per_import_call: 1_000,
            fuel_per_import_byte: 1,
            fuel_per_sql_op: 1,
        }
    }
}

impl Limits {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Fuel for one import call that moved `bytes` bytes.
    pub fn import_fuel(&self, bytes: usize) -> u64 {
        self.fuel_per_import_call
            .saturating_add((bytes as u64).saturating_mul(self.fuel_per_import_byte))
    }
}

/// Memory limiter held in the store's data (one store per instance). It
/// keeps a running total over every memory and table of the instance, so a
/// module with several memories gets the cap once, not once per memory; it
/// remembers that it refused growth so a trap can be reported as "memory
/// cap" without parsing messages.
#[derive(Debug)]
pub struct MemoryCap {
    pub max_bytes: usize,
    pub max_table_elements: usize,
    /// Bytes of linear memory the instance holds (all memories).
    pub used_bytes: usize,
    /// Table elements the instance holds (all tables).
    pub used_elements: usize,
    pub denied: bool,
    /// The last approved growth, taken back if wasmtime reports it failed.
    last_memory_growth: usize,
    last_table_growth: usize,
}

impl MemoryCap {
    pub fn new(max_bytes: usize, max_table_elements: usize) -> MemoryCap {
        MemoryCap {
            max_bytes,
            max_table_elements,
            used_bytes: 0,
            used_elements: 0,
            denied: false,
            last_memory_growth: 0,
            last_table_growth: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(growth);
        if total > self.max_bytes {
            self.denied = true;
            return Err(wasmtime::Error::msg(format!(
                "memory cap: the instance asked for {total} bytes in all its memories, cap is {}",
                self.max_bytes
            )));
        }
        self.used_bytes = total;
        self.last_memory_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used_bytes = self.used_bytes.saturating_sub(self.last_memory_growth);
        self.last_memory_growth = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .used_elements
            .saturating_add(desired.saturating_sub(current));
        if total > self.max_table_elements {
            return Ok(false);
        }
        self.last_table_growth = total - self.used_elements;
        self.used_elements = total;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used_elements = self.used_elements.saturating_sub(self.last_table_growth);
        self.last_table_growth = 0;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn four_memories_share_one_cap() {
        let mut cap = MemoryCap::new(64 << 20, 1_000);
        assert!(cap.memory_growing(0, 30 << 20, None).unwrap());
        assert!(cap.memory_growing(0, 30 << 20, None).unwrap());
        assert!(cap.memory_growing(0, 30 << 20, None).is_err());
        assert!(cap.denied);
        assert_eq!(cap.used_bytes, 60 << 20);
    }

    #[test]
    fn a_failed_growth_is_taken_back() {
        let mut cap = MemoryCap::new(64 << 20, 1_000);
        assert!(cap.memory_growing(1 << 20, 40 << 20, None).unwrap());
        cap.memory_grow_failed(wasmtime::Error::msg("no")).unwrap();
        assert_eq!(cap.used_bytes, 0);
        assert!(!cap.table_growing(0, 1_001, None).unwrap());
        assert!(cap.table_growing(0, 600, None).unwrap());
        assert!(!cap.table_growing(0, 600, None).unwrap());
    }
}
