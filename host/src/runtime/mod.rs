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
mod metering;
mod output;
mod store;
mod wasi;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use bindings::PluginPre;
pub use call::{CallOutcome, CallStats, commit};
pub use config::{EngineParams, Limits, RuntimeConfig};
pub use error::{CallError, HostFault, ValidateError};
pub use output::{ErrorBody, Event, Output};
pub use store::CallMode;
use store::CallState;

/// A plugin's committed key-value data: a persistent ordered map, so taking a
/// snapshot or starting a call is an O(1) clone.
pub type Kv = imbl::OrdMap<Vec<u8>, Vec<u8>>;

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
    /// The cluster's limits in force for this call.
    pub limits: &'a Limits,
    /// The engine the cluster's settings call for (stack and memory caps).
    pub engine: EngineParams,
}

/// A compiled, linked plugin ready to instantiate.
struct Compiled {
    pre: PluginPre<CallState>,
}

/// Errors building the runtime itself.
#[derive(Debug, thiserror::Error)]
#[error("runtime setup failed: {0}")]
pub struct RuntimeError(String);

/// One engine built for one set of [`EngineParams`], with its linker and
/// compiled components (a compiled component belongs to the engine that made it).
struct EngineSet {
    params: EngineParams,
    engine: Engine,
    linker: Linker<CallState>,
    cache: Mutex<HashMap<[u8; 32], Arc<Compiled>>>,
}

impl EngineSet {
    fn build(config: &RuntimeConfig, params: EngineParams) -> Result<Self, RuntimeError> {
        let engine = engine::build(config, &params).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        // The cairn imports are linked by hand (not through the generated
        // `Plugin::add_to_linker`): each must charge fuel, which needs the store.
        kv_host::add_to_linker(&mut linker).map_err(|e| RuntimeError(format!("{e:#}")))?;
        context_host::add_to_linker(&mut linker).map_err(|e| RuntimeError(format!("{e:#}")))?;
        Ok(Self {
            params,
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Compiled>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The wasmtime engine, linker and compiled-component cache of one node.
pub struct Runtime {
    /// Per-plugin call counters for `/metrics` (node-local).
    calls: call_stats::CallCounters,
    current: Mutex<Arc<EngineSet>>,
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

impl Runtime {
    /// Builds the engine (deterministic configuration, default [`EngineParams`])
    /// and links the host imports.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let set = EngineSet::build(&config, EngineParams::default())?;
        let disk = match &config.compiled_cache_dir {
            Some(dir) => Some(
                disk_cache::DiskCache::open(dir)
                    .map_err(|e| RuntimeError(format!("compiled cache {}: {e}", dir.display())))?,
            ),
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
        if wasm.len() > max_plugin_bytes {
            return Err(ValidateError::TooLarge {
                size_bytes: wasm.len(),
                max_bytes: max_plugin_bytes,
            });
        }
        let set = self
            .engine_set(params)
            .map_err(|e| ValidateError::Host(e.to_string()))?;
        let sha: [u8; 32] = Sha256::digest(wasm).into();
        self.compiled(&set, &sha, wasm).map(|_| hex::encode(sha))
    }

    /// The compiled component for `sha` (which must be the sha256 of `wasm`),
    /// compiling and caching it on first use.
    fn compiled(
        &self,
        set: &EngineSet,
        sha: &[u8; 32],
        wasm: &[u8],
    ) -> Result<Arc<Compiled>, ValidateError> {
        if let Some(c) = set.lock_cache().get(sha) {
            return Ok(c.clone());
        }
        let sha = *sha;
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(ValidateError::NotWasm);
        }
        // Core modules carry version 1 (`01 00 00 00`); components a layer
        // field (`0d 00 01 00`). Telling them apart gives a helpful message.
        if wasm[4..8] == [1, 0, 0, 0] {
            return Err(ValidateError::CoreModule);
        }
        let started = std::time::Instant::now();
        let cached = self.disk.as_ref().and_then(|d| d.load(&set.engine, &sha));
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
        let pre = PluginPre::new(instance_pre)
            .map_err(|e| ValidateError::WrongWorld(format!("{e:#}")))?;
        if let (Some(disk), false) = (&self.disk, from_disk) {
            disk.store(&sha, &component);
        }
        tracing::debug!(sha = %hex::encode(sha), from_disk, elapsed_ms = started.elapsed().as_millis() as u64, "compiled plugin");
        let compiled = Arc::new(Compiled { pre });
        set.lock_cache().insert(sha, compiled.clone());
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests;
