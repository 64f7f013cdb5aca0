//! The runtime's configuration: engine and pool sizing, and the limits plugins see.

/// Limits that shape a call's outcome. They must be equal on every node of a
/// cluster, like the code itself.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4 * 1024,
            max_value_bytes: 1024 * 1024,
            max_scan_entries: 10_000,
            max_random_bytes: 64 * 1024,
            max_events_per_call: 256,
            max_event_bytes_per_call: 256 * 1024,
            max_output_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How the engine and its instance pool are sized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Fuel budget given to each call of a newly deployed plugin (recorded in
    /// the log with the deploy, so every node meters identically).
    pub default_fuel_per_call: u64,
    /// Largest component accepted for deploy.
    pub max_plugin_bytes: usize,
    /// Linear-memory cap of every instance (enforced deterministically).
    pub memory_per_instance_bytes: usize,
    /// Wasm stack cap; running past it is a trap.
    pub max_stack_bytes: usize,
    /// Instances that may be alive at once (the pooling allocator's size).
    pub pooled_instances: u32,
    /// Most elements a guest table may grow to.
    pub max_table_elements: usize,
    /// Guest stdout+stderr kept per call before the rest is dropped.
    pub max_guest_log_bytes: usize,
    /// Limits visible to plugins.
    pub limits: Limits,
    /// Where compiled components are cached across restarts (`None`: memory only).
    pub compiled_cache_dir: Option<std::path::PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            default_fuel_per_call: 100_000_000,
            max_plugin_bytes: 16 * 1024 * 1024,
            memory_per_instance_bytes: 64 * 1024 * 1024,
            max_stack_bytes: 512 * 1024,
            pooled_instances: 64,
            max_table_elements: 100_000,
            max_guest_log_bytes: 16 * 1024,
            limits: Limits::default(),
            compiled_cache_dir: None,
        }
    }
}
