//! The runtime's configuration: the limits a call runs under (replicated, decided
//! by the cluster), the engine parameters they imply, and node-local pool sizing.

use serde::{Deserialize, Serialize};

/// Limits that shape a call's outcome. They come from the replicated cluster
/// settings (never from a node's own flags), so every node decides alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest key a plugin may write.
    pub max_key_bytes: usize,
    /// Largest value a plugin may write.
    pub max_value_bytes: usize,
    /// Most entries one `scan` returns.
    pub max_scan_entries: usize,
    /// Most bytes one `random-bytes` call returns.
    pub max_random_bytes: usize,
    /// Most events one call may emit; further events are dropped.
    pub max_events_per_call: usize,
    /// Most event bytes (topic + payload) one call may emit.
    pub max_event_bytes_per_call: usize,
    /// Largest output a call may return; more is a `output-too-large` error.
    pub max_output_bytes: usize,
    /// Most elements a guest table may grow to.
    pub max_table_elements: usize,
    /// Most key + value bytes one call may hand to `set`/`delete`, summed over
    /// the call (overwrites count again); more fails the call with
    /// `write-budget-exceeded`.
    pub max_write_bytes_per_call: usize,
    /// Most key + value bytes one call may read through `scan`, summed over the
    /// call; more fails the call with `scan-budget-exceeded`.
    pub max_scan_bytes_per_call: usize,
    /// Fuel every host import call costs on top of the guest's own instructions.
    pub fuel_per_host_call: u64,
    /// Fuel per byte a host import moves between guest and host (keys, values,
    /// scan results, event payloads, random bytes).
    pub fuel_per_host_byte: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: usize = 1024 * 1024;
        Self {
            max_key_bytes: 4 * 1024,
            max_value_bytes: MIB,
            max_scan_entries: 10_000,
            max_random_bytes: 64 * 1024,
            max_events_per_call: 256,
            max_event_bytes_per_call: 256 * 1024,
            max_output_bytes: 4 * MIB,
            max_table_elements: 100_000,
            max_write_bytes_per_call: 16 * MIB,
            max_scan_bytes_per_call: 32 * MIB,
            fuel_per_host_call: 1_000,
            fuel_per_host_byte: 1,
        }
    }
}

/// What the engine itself is built with; decided by the cluster settings.
/// A change rebuilds the engine (and recompiles plugins on next use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EngineParams {
    /// Wasm stack cap; running past it is a trap.
    pub max_stack_bytes: usize,
    /// Largest linear memory any instance may have (the pool's slot size).
    pub max_memory_bytes: usize,
}

impl Default for EngineParams {
    fn default() -> Self {
        Self {
            max_stack_bytes: 512 * 1024,
            max_memory_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Node-local runtime settings: they size this node's resources and never
/// change an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Instances that may be alive at once (the pooling allocator's size).
    pub pooled_instances: u32,
    /// Guest stdout+stderr kept per call before the rest is dropped.
    pub max_guest_log_bytes: usize,
    /// Where compiled components are cached across restarts (`None`: memory only).
    pub compiled_cache_dir: Option<std::path::PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            pooled_instances: 64,
            max_guest_log_bytes: 16 * 1024,
            compiled_cache_dir: None,
        }
    }
}
