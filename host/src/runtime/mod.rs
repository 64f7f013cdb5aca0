//! The deterministic WebAssembly runtime: validates, compiles and caches
//! plugin components, and runs one `apply` or `query` call in a fresh instance.
//!
//! It touches no sockets, real clocks or OS randomness (DESIGN.md rules 3–5).

mod bindings;
mod call;
pub mod call_stats;
mod config;
mod context_host;
mod disk_cache;
mod engine;
mod error;
mod kv_host;
mod kv_key;
mod metering;
mod output;
mod store;
mod wasi;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

use bindings::{v1, v2};
pub use call::{CallOutcome, CallStats, commit};
pub use config::{EngineParams, Limits, RuntimeConfig};
pub use error::{CallError, HostFault, ValidateError};
pub use output::{ErrorBody, Event, Output};
pub use store::CallMode;
use store::CallState;

/// A plugin's committed key-value data: a persistent ordered map, so taking a
/// snapshot or starting a call is an O(1) clone.
pub type Kv = imbl::OrdMap<KvKey, KvBytes>;

pub use kv_key::{KV_KEY_INLINE_BYTES, KvKey};

/// A stored value. Shared rather than owned: a write to a persistent map
/// copies the nodes on its path (up to 64 entries each) whenever an older
/// version of the map is still alive — which, between applies, it always is
/// (the published state). Copying an entry is then a reference-count bump,
/// not an allocation and a copy of its bytes.
pub type KvBytes = std::sync::Arc<[u8]>;

/// What a plugin call needs to know about its command.
#[derive(Clone, Debug)]
pub struct CallContext<'a> {
    /// Plugin name (part of the random seed).
    pub plugin: &'a str,
    /// Log index of the command (or last applied index for queries).
    pub log_index: u64,
    /// Leader's timestamp for the command; for a query, the serving node's
    /// clock clamped to the last applied stamp.
    pub timestamp_ms: u64,
    /// Fuel budget.
    pub fuel: u64,
    /// Per-instance memory cap recorded at deploy.
    pub memory_limit_bytes: usize,
    /// The cluster's limits in force for this call.
    pub limits: &'a Limits,
    /// The engine the cluster's settings call for (stack and memory caps).
    pub engine: EngineParams,
}

/// A compiled, linked plugin ready to instantiate, with its exports resolved
/// to indices once (a call then looks up only the one export it runs, by
/// index, instead of all three by name).
///
/// The world version it targets is told apart by its exports: only
/// `cairn:plugin@0.2.0` has `migrate`. Both versions' `apply` and `query`
/// have the same types.
struct Compiled {
    pre: InstancePre<CallState>,
    apply: ComponentExportIndex,
    query: ComponentExportIndex,
    /// `None` for a `cairn:plugin@0.1.0` component.
    migrate: Option<ComponentExportIndex>,
}

impl Compiled {
    /// Whether the component exports `migrate`.
    fn has_migrate(&self) -> bool {
        self.migrate.is_some()
    }
}

/// Errors building the runtime itself.
#[derive(Debug, thiserror::Error)]
#[error("runtime setup failed: {0}")]
pub struct RuntimeError(String);

/// The compile of one component: filled once by whichever thread gets there
/// first (a background compile started by a deploy, or the first call);
/// every other caller waits on it instead of compiling the same bytes again.
type CompileSlot = Arc<OnceLock<Result<Arc<Compiled>, ValidateError>>>;

/// One engine built for one set of [`EngineParams`], with its linker and
/// compiled components (a compiled component belongs to the engine that made it).
struct EngineSet {
    params: EngineParams,
    engine: Engine,
    linker: Linker<CallState>,
    /// Compiled (or compiling) components by sha256. The lock is held only to
    /// find a slot, never while compiling: other plugins' calls do not wait.
    cache: Mutex<HashMap<[u8; 32], CompileSlot>>,
}

impl EngineSet {
    fn build(config: &RuntimeConfig, params: EngineParams) -> Result<Self, RuntimeError> {
        let engine = engine::build(config, &params).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        // The cairn imports are linked by hand (not through the generated
        // `Plugin::add_to_linker`): each must charge fuel, which needs the store.
        for version in bindings::WORLD_VERSIONS {
            kv_host::add_to_linker(&mut linker, version)
                .map_err(|e| RuntimeError(format!("{e:#}")))?;
            context_host::add_to_linker(&mut linker, version)
                .map_err(|e| RuntimeError(format!("{e:#}")))?;
        }
        Ok(Self {
            params,
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], CompileSlot>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The wasmtime engine, linker and compiled-component cache of one node.
pub struct Runtime {
    /// Per-plugin call counters for `/metrics` (node-local).
    calls: call_stats::CallCounters,
    current: Mutex<Arc<EngineSet>>,
    disk: Option<Arc<disk_cache::DiskCache>>,
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

impl Runtime {
    /// Builds the engine (deterministic configuration, default [`EngineParams`])
    /// and links the host imports.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let set = EngineSet::build(&config, EngineParams::default())?;
        let disk = match &config.compiled_cache_dir {
            Some(dir) => Some(Arc::new(disk_cache::DiskCache::open(dir).map_err(|e| {
                RuntimeError(format!("compiled cache {}: {e}", dir.display()))
            })?)),
            None => None,
        };
        Ok(Self {
            calls: call_stats::CallCounters::default(),
            current: Mutex::new(Arc::new(set)),
            disk,
            config,
        })
    }

    /// Per-plugin call counters (calls, failures by code, fuel used).
    pub fn call_counters(&self) -> &call_stats::CallCounters {
        &self.calls
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The engine for `params`, rebuilding it when the cluster's settings
    /// changed them. Calls already running keep the engine they started with.
    fn engine_set(&self, params: EngineParams) -> Result<Arc<EngineSet>, RuntimeError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.params != params {
            tracing::info!(
                ?params,
                "rebuilding the wasm engine for new cluster settings"
            );
            *current = Arc::new(EngineSet::build(&self.config, params)?);
        }
        Ok(current.clone())
    }

    /// Checks that `wasm` is a component implementing the cairn world and at
    /// most `max_plugin_bytes`, compiles it for `params` and caches the result.
    /// Returns its hex sha256.
    pub fn validate(
        &self,
        wasm: &[u8],
        params: EngineParams,
        max_plugin_bytes: usize,
    ) -> Result<String, ValidateError> {
        check_shape(wasm, max_plugin_bytes)?;
        let set = self
            .engine_set(params)
            .map_err(|e| ValidateError::Host(e.to_string()))?;
        let sha: [u8; 32] = Sha256::digest(wasm).into();
        self.compiled(&set, &sha, wasm).map(|_| hex::encode(sha))
    }

    /// Starts compiling `code` for `params` on a thread of its own unless it is
    /// compiled or compiling already, and returns at once: a deploy entry
    /// records the plugin without waiting for a compile that may take seconds,
    /// and only calls of that plugin wait for it (in [`Runtime::call`]).
    ///
    /// Failures are not reported here: the leader compiled the code before
    /// proposing it, so a failure on this node is a host fault that the first
    /// call of the plugin meets (and retries).
    pub fn compile_in_background(&self, code: &Code, params: EngineParams) {
        let set = match self.engine_set(params) {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(%e, "no engine for a background compile; the first call compiles");
                return;
            }
        };
        let slot = {
            let mut cache = set.lock_cache();
            if cache.contains_key(code.sha256()) {
                return;
            }
            let slot = CompileSlot::default();
            cache.insert(*code.sha256(), slot.clone());
            slot
        };
        let (disk, code) = (self.disk.clone(), code.clone());
        let spawned = std::thread::Builder::new()
            .name("cairn-compile".into())
            .spawn(move || {
                let result = fill_slot(&set, disk.as_deref(), &slot, code.sha256(), code.bytes());
                if let Err(e) = result {
                    tracing::warn!(sha = %code.sha256_hex(), %e, "background compile failed; the first call will retry");
                }
            });
        if let Err(e) = spawned {
            // The slot stays empty and the first call fills it itself.
            tracing::warn!(%e, "cannot start a compile thread; the first call compiles");
        }
    }

    /// The compiled component for `sha` (which must be the sha256 of `wasm`),
    /// compiling and caching it on first use, or waiting for a compile of the
    /// same bytes already under way.
    fn compiled(
        &self,
        set: &EngineSet,
        sha: &[u8; 32],
        wasm: &[u8],
    ) -> Result<Arc<Compiled>, ValidateError> {
        let slot = set.lock_cache().entry(*sha).or_default().clone();
        fill_slot(set, self.disk.as_deref(), &slot, sha, wasm)
    }
}

/// The checks a deploy entry's apply makes without compiling (cheap and
/// deterministic): at most `max_plugin_bytes`, a WebAssembly binary, a
/// component rather than a core module. Parsing, compiling and linking happen
/// before the leader proposes and, on every node, in the background.
pub fn check_shape(wasm: &[u8], max_plugin_bytes: usize) -> Result<(), ValidateError> {
    if wasm.len() > max_plugin_bytes {
        return Err(ValidateError::TooLarge {
            size_bytes: wasm.len(),
            max_bytes: max_plugin_bytes,
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
    Ok(())
}

/// Fills `slot` (of `set`'s cache, under `sha`) by compiling `wasm`, or waits
/// for the thread filling it. A failure is not kept: the slot is taken out of
/// the cache so that invalid uploads do not pile up there and a host fault
/// can be retried.
fn fill_slot(
    set: &EngineSet,
    disk: Option<&disk_cache::DiskCache>,
    slot: &CompileSlot,
    sha: &[u8; 32],
    wasm: &[u8],
) -> Result<Arc<Compiled>, ValidateError> {
    let result = slot.get_or_init(|| compile(set, disk, sha, wasm)).clone();
    if result.is_err() {
        let mut cache = set.lock_cache();
        if cache.get(sha).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            cache.remove(sha);
        }
    }
    result
}

/// Compiles and links `wasm` (whose sha256 is `sha`) for `set`, loading it
/// from the disk cache when a previous run stored it.
fn compile(
    set: &EngineSet,
    disk: Option<&disk_cache::DiskCache>,
    sha: &[u8; 32],
    wasm: &[u8],
) -> Result<Arc<Compiled>, ValidateError> {
    let sha = *sha;
    check_shape(wasm, usize::MAX)?;
    let started = std::time::Instant::now();
    let cached = disk.and_then(|d| d.load(&set.engine, &sha));
    let from_disk = cached.is_some();
    let component = match cached {
        Some(c) => c,
        None => Component::new(&set.engine, wasm)
            .map_err(|e| ValidateError::Invalid(format!("{e:#}")))?,
    };
    let instance_pre = set
        .linker
        .instantiate_pre(&component)
        .map_err(|e| ValidateError::WrongWorld(format!("{e:#}")))?;
    // The newest world first; a component without `migrate` may be 0.1.0.
    // The generated `PluginPre`s check the exports' names and types; the
    // indices are then taken from the component.
    let has_migrate = match v2::PluginPre::new(instance_pre.clone()) {
        Ok(_) => true,
        Err(newest) => v1::PluginPre::new(instance_pre.clone())
            .map(|_| false)
            .map_err(|_| ValidateError::WrongWorld(format!("{newest:#}")))?,
    };
    let export = |name: &str| {
        component
            .get_export_index(None, name)
            .ok_or_else(|| ValidateError::WrongWorld(format!("no export `{name}`")))
    };
    let compiled = Compiled {
        apply: export("apply")?,
        query: export("query")?,
        migrate: if has_migrate {
            Some(export("migrate")?)
        } else {
            None
        },
        pre: instance_pre,
    };
    if let (Some(disk), false) = (disk, from_disk) {
        disk.store(&sha, &component);
    }
    tracing::debug!(sha = %hex::encode(sha), from_disk, elapsed_ms = started.elapsed().as_millis() as u64, "compiled plugin");
    Ok(Arc::new(compiled))
}

#[cfg(test)]
mod tests;
