//! The deterministic WebAssembly runtime: validates, compiles and caches
//! plugin components, and runs one `apply` or `query` call in a fresh instance.
//!
//! It touches no sockets, real clocks or OS randomness (DESIGN.md rules 3–5).

mod bindings;
mod context_host;
mod disk_cache;
mod engine;
mod kv_host;
mod store;
mod wasi;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};

use crate::state::{ErrorBody, Output};
use bindings::{Plugin, PluginPre};
pub use store::CallMode;
use store::{CallState, Limiter};

/// A plugin's committed key-value data: a persistent ordered map, so taking a
/// snapshot or starting a call is an O(1) clone.
pub type Kv = imbl::OrdMap<Vec<u8>, Vec<u8>>;

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
            max_guest_log_bytes: 16 * 1024,
            limits: Limits::default(),
            compiled_cache_dir: None,
        }
    }
}

/// Why a component was refused at deploy time.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The upload exceeds `max_plugin_bytes`.
    #[error("component is {size_bytes} bytes, the limit is {max_bytes} bytes")]
    TooLarge {
        /// Size of the upload.
        size_bytes: usize,
        /// The configured limit.
        max_bytes: usize,
    },
    /// The bytes do not start with the WebAssembly magic number.
    #[error("not a WebAssembly binary (missing the \\0asm header)")]
    NotWasm,
    /// A core module was uploaded; plugins must be components.
    #[error(
        "this is a core WebAssembly module, not a component; build with --target wasm32-wasip2"
    )]
    CoreModule,
    /// The component failed to parse or compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not implement the `cairn:plugin/plugin` world.
    #[error("component does not match the cairn:plugin world: {0}")]
    WrongWorld(String),
}

impl ValidateError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ValidateError::TooLarge { .. } => "plugin-too-large",
            ValidateError::NotWasm => "not-wasm",
            ValidateError::CoreModule => "not-a-component",
            ValidateError::Invalid(_) => "invalid-component",
            ValidateError::WrongWorld(_) => "wrong-world",
        }
    }
}

/// Why a call produced no output. Each kind is distinguishable by its code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned `err(plugin-error)` on purpose.
    #[error("{code}: {message}")]
    Plugin {
        /// The plugin's code.
        code: String,
        /// The plugin's message.
        message: String,
    },
    /// The call used up its fuel budget.
    #[error("out of fuel after {fuel} units")]
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// The instance tried to grow memory beyond its cap.
    #[error("memory limit exceeded: {0}")]
    MemoryLimit(String),
    /// The guest trapped (panic, unreachable, stack overflow, …).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// A `query` tried to write to the KV.
    #[error("query attempted to write to the key-value store")]
    WriteInQuery,
    /// The output exceeded `max_output_bytes`.
    #[error("output of {0} bytes exceeds the limit")]
    OutputTooLarge(usize),
    /// The host could not run the call (e.g. the pool is exhausted).
    #[error("host failure: {0}")]
    Host(String),
}

impl CallError {
    /// The stable error code, also used as the HTTP error code.
    pub fn code(&self) -> String {
        match self {
            CallError::Plugin { code, .. } => code.clone(),
            CallError::OutOfFuel { .. } => "out-of-fuel".into(),
            CallError::MemoryLimit(_) => "memory-limit".into(),
            CallError::Trap(_) => "plugin-trap".into(),
            CallError::WriteInQuery => "write-in-query".into(),
            CallError::OutputTooLarge(_) => "output-too-large".into(),
            CallError::Host(_) => "host-error".into(),
        }
    }

    /// The error as a wire body.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            CallError::Plugin { code, message } => ErrorBody::new(code.clone(), message.clone()),
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }
}

/// What a plugin call needs to know about its command.
#[derive(Clone, Debug)]
pub struct CallContext<'a> {
    /// Plugin name (part of the random seed).
    pub plugin: &'a str,
    /// Log index of the command (or last applied index for queries).
    pub log_index: u64,
    /// Leader's timestamp for the command.
    pub timestamp_ms: u64,
    /// Fuel budget.
    pub fuel: u64,
    /// Per-instance memory cap recorded at deploy.
    pub memory_limit_bytes: usize,
}

/// The result of one call: the outcome and, on success, the writes to commit.
#[derive(Debug)]
pub struct CallOutcome {
    /// Output or the reason there is none.
    pub result: Result<Output, CallError>,
    /// Writes to commit (`None` = delete); empty unless `result` is `Ok`.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Fuel the call consumed.
    pub fuel_used: u64,
}

/// A compiled, linked plugin ready to instantiate.
struct Compiled {
    pre: PluginPre<CallState>,
}

/// Errors building the runtime itself.
#[derive(Debug, thiserror::Error)]
#[error("runtime setup failed: {0}")]
pub struct RuntimeError(String);

/// The wasmtime engine, linker and compiled-component cache of one node.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Mutex<HashMap<[u8; 32], Arc<Compiled>>>,
    disk: Option<disk_cache::DiskCache>,
    config: RuntimeConfig,
}

/// Component bytes with their sha256, computed once: hashing a 200 KB
/// component costs more than running a call, so it must not happen per call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    sha256: [u8; 32],
    bytes: Arc<Vec<u8>>,
}

impl Code {
    /// Wraps component bytes, hashing them.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            sha256: Sha256::digest(&bytes).into(),
            bytes: Arc::new(bytes),
        }
    }

    /// The component bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The sha256 of the bytes.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The sha256 as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Hex sha256 of component bytes: a plugin version's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Runtime {
    /// Builds the engine (deterministic configuration) and links the host imports.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine = engine::build(&config).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        let disk = match &config.compiled_cache_dir {
            Some(dir) => Some(
                disk_cache::DiskCache::open(dir)
                    .map_err(|e| RuntimeError(format!("compiled cache {}: {e}", dir.display())))?,
            ),
            None => None,
        };
        Ok(Self {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
            disk,
            config,
        })
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Checks that `wasm` is a component implementing the cairn world, compiles
    /// it and caches the result. Returns its hex sha256.
    pub fn validate(&self, wasm: &[u8]) -> Result<String, ValidateError> {
        let sha: [u8; 32] = Sha256::digest(wasm).into();
        self.compiled(&sha, wasm).map(|_| hex::encode(sha))
    }

    /// Whether the component with this sha256 is already compiled.
    pub fn is_cached(&self, sha: &[u8; 32]) -> bool {
        self.lock_cache().contains_key(sha)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Compiled>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The compiled component for `sha` (which must be the sha256 of `wasm`),
    /// compiling and caching it on first use.
    fn compiled(&self, sha: &[u8; 32], wasm: &[u8]) -> Result<Arc<Compiled>, ValidateError> {
        if let Some(c) = self.lock_cache().get(sha) {
            return Ok(c.clone());
        }
        let sha = *sha;
        if wasm.len() > self.config.max_plugin_bytes {
            return Err(ValidateError::TooLarge {
                size_bytes: wasm.len(),
                max_bytes: self.config.max_plugin_bytes,
            });
        }
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(ValidateError::NotWasm);
        }
        // Core modules carry version 1 (`01 00 00 00`); components a layer
        // field (`0d 00 01 00`). Telling them apart gives a helpful message.
        if wasm[4..8] == [1, 0, 0, 0] {
            return Err(ValidateError::CoreModule);
        }
        let started = std::time::Instant::now();
        let cached = self.disk.as_ref().and_then(|d| d.load(&self.engine, &sha));
        let from_disk = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => Component::new(&self.engine, wasm)
                .map_err(|e| ValidateError::Invalid(format!("{e:#}")))?,
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ValidateError::WrongWorld(format!("{e:#}")))?;
        let pre = PluginPre::new(instance_pre)
            .map_err(|e| ValidateError::WrongWorld(format!("{e:#}")))?;
        if let (Some(disk), false) = (&self.disk, from_disk) {
            disk.store(&sha, &component);
        }
        tracing::debug!(sha = %hex::encode(sha), from_disk, elapsed_ms = started.elapsed().as_millis() as u64, "compiled plugin");
        let compiled = Arc::new(Compiled { pre });
        self.lock_cache().insert(sha, compiled.clone());
        Ok(compiled)
    }

    /// Runs one `apply` or `query` of `code` in a fresh instance.
    ///
    /// `base` is the plugin's committed KV; it is never modified here. On `Ok`
    /// the returned writes are what the caller must commit.
    pub fn call(
        &self,
        code: &Code,
        mode: CallMode,
        input: &[u8],
        ctx: &CallContext<'_>,
        base: &Kv,
    ) -> CallOutcome {
        let failed = |e: CallError| CallOutcome {
            result: Err(e),
            writes: BTreeMap::new(),
            fuel_used: 0,
        };
        let compiled = match self.compiled(code.sha256(), code.bytes()) {
            Ok(c) => c,
            Err(e) => return failed(CallError::Host(format!("cannot compile plugin: {e}"))),
        };
        let output = wasi::CapturedOutput::new(self.config.max_guest_log_bytes);
        let state = CallState {
            mode,
            plugin: ctx.plugin.to_string(),
            log_index: ctx.log_index,
            timestamp_ms: ctx.timestamp_ms,
            base: base.clone(),
            overlay: BTreeMap::new(),
            events: Vec::new(),
            event_bytes: 0,
            write_in_query: false,
            random_calls: 0,
            limits: self.config.limits.clone(),
            limiter: Limiter {
                memory_limit_bytes: ctx
                    .memory_limit_bytes
                    .min(self.config.memory_per_instance_bytes),
                table_elements_max: 100_000,
                memory_limit_hit: false,
            },
            wasi: wasi::build_ctx(ctx.log_index, ctx.plugin, ctx.timestamp_ms, &output),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if let Err(e) = store.set_fuel(ctx.fuel) {
            return failed(CallError::Host(format!("{e:#}")));
        }
        let result = compiled
            .pre
            .instantiate(&mut store)
            .and_then(|plugin| match mode {
                CallMode::Apply => plugin.call_apply(&mut store, input),
                CallMode::Query => plugin.call_query(&mut store, input),
            });
        let fuel_used = ctx.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let log = output.take();
        if !log.is_empty() {
            tracing::info!(
                plugin = ctx.plugin,
                index = ctx.log_index,
                "guest output: {}",
                String::from_utf8_lossy(&log).trim_end()
            );
        }
        let state = store.into_data();
        let result = match result {
            _ if state.write_in_query => Err(CallError::WriteInQuery),
            Ok(Ok(out)) if out.len() > self.config.limits.max_output_bytes => {
                Err(CallError::OutputTooLarge(out.len()))
            }
            Ok(Ok(out)) => Ok(Output {
                output: out,
                events: state.events,
            }),
            Ok(Err(pe)) => Err(CallError::Plugin {
                code: pe.code,
                message: pe.message,
            }),
            Err(e) => Err(classify_trap(
                e,
                ctx.fuel,
                state.limiter.memory_limit_hit,
                &log,
            )),
        };
        let writes = if result.is_ok() {
            state.overlay
        } else {
            BTreeMap::new()
        };
        CallOutcome {
            result,
            writes,
            fuel_used,
        }
    }
}

/// How much guest stderr a trap message carries.
const MAX_TRAP_DETAIL_CHARS: usize = 512;

/// Maps a wasmtime error to its failure kind. The memory flag is checked first
/// because a refused grow surfaces as a plain error, not a `Trap`.
fn classify_trap(e: wasmtime::Error, fuel: u64, memory_limit_hit: bool, log: &[u8]) -> CallError {
    if memory_limit_hit {
        return CallError::MemoryLimit(format!("{:#}", e.root_cause()));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        if *trap == Trap::OutOfFuel {
            return CallError::OutOfFuel { fuel };
        }
        // A Rust panic prints "panicked at file:line:col:" and then its message
        // to stderr before trapping; that is the most useful thing to show.
        let text = String::from_utf8_lossy(log);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with"))
            .collect();
        let start = lines
            .iter()
            .rposition(|l| l.contains("panicked at"))
            .unwrap_or(0);
        let detail: String = lines[start..]
            .join(" ")
            .chars()
            .take(MAX_TRAP_DETAIL_CHARS)
            .collect();
        let msg = if detail.is_empty() {
            trap.to_string()
        } else {
            format!("{trap}; guest stderr: {detail}")
        };
        return CallError::Trap(msg);
    }
    CallError::Trap(format!("{e:#}"))
}

#[cfg(test)]
mod tests;
