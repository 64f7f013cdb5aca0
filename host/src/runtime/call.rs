//! Running one `apply` or `query` in a fresh instance: metered, bounded by the
//! call's budgets, on a native stack big enough for the cluster's wasm stack
//! cap, with every failure sorted into a plugin outcome or a host fault.

use std::collections::BTreeMap;

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Instance, ResourceTable};

use super::Output;
use super::bindings::v2;
use super::engine::HOST_STACK_HEADROOM_BYTES;
use super::error::{Failure, classify_trap, is_resource_fault};
use super::store::{Budget, CallState, LazyWasi, Limiter};
use super::{CallContext, CallError, CallMode, Code, Compiled, EngineSet, HostFault, Kv, Runtime};

/// Largest wasm stack run on the caller's own thread. Callers are tokio
/// blocking threads or test threads, which have 2 MiB native stacks; wasm
/// frames and the host calls beneath them must fit in that.
const INLINE_WASM_STACK_BYTES_MAX: usize = 1024 * 1024;

/// The result of one call: the outcome and, on success, the writes to commit.
#[derive(Debug)]
pub struct CallOutcome {
    /// Output or the reason there is none.
    pub result: Result<Output, CallError>,
    /// Writes to commit (`None` = delete); empty unless `result` is `Ok`.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// What the call used (for tests, benchmarks and tuning the defaults).
    pub stats: CallStats,
}

/// What one call used. Deterministic, like the outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Fuel spent (guest instructions plus host-import charges).
    pub fuel_consumed: u64,
    /// Key + value bytes the host accepted from `set`/`delete` (at most
    /// `max_write_bytes_per_call`; bounds what the call's overlay held).
    pub write_bytes: usize,
    /// Key + value bytes the host gathered for `scan` results (at most
    /// `max_scan_bytes_per_call`).
    pub scan_bytes: usize,
}

/// Applies a successful call's `writes` to the plugin's committed `kv`.
pub fn commit(kv: &mut Kv, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
    for (k, v) in writes {
        match v {
            Some(v) => {
                kv.insert(k.into(), v.into());
            }
            None => {
                kv.remove(k.as_slice());
            }
        }
    }
}

/// Which export a call runs, with its argument.
#[derive(Clone, Copy, Debug)]
enum Export<'a> {
    Apply(&'a [u8]),
    Query(&'a [u8]),
    /// `migrate(from-version)`: writable like `apply`; events it emits are
    /// dropped (an upgrade has no caller to return them to).
    Migrate(u64),
}

impl Export<'_> {
    fn mode(self) -> CallMode {
        match self {
            Export::Apply(_) | Export::Migrate(_) => CallMode::Apply,
            Export::Query(_) => CallMode::Query,
        }
    }
}

/// A plugin's own error, whichever world version it came through.
struct GuestError {
    code: String,
    message: String,
}

/// The result type both world versions give `apply`, `query` and `migrate`
/// (the 0.1.0 error record has the same shape as 0.2.0's).
type Returned<T> = (Result<T, v2::PluginError>,);

/// Instantiates `compiled` in `store` and runs `export`. The outer error is
/// the engine's (instantiation or a trap); the inner one the plugin's.
fn instantiate_and_call(
    compiled: &Compiled,
    store: &mut Store<CallState>,
    export: Export<'_>,
) -> Result<wasmtime::Result<Result<Vec<u8>, GuestError>>, wasmtime::Error> {
    let instance = compiled.pre.instantiate(&mut *store)?;
    let called = match export {
        Export::Apply(input) => call_bytes(&instance, store, &compiled.apply, input),
        Export::Query(input) => call_bytes(&instance, store, &compiled.query, input),
        // `Runtime::migrate` never calls a component without the export.
        Export::Migrate(from) => match &compiled.migrate {
            Some(index) => (|| {
                let func = instance.get_typed_func::<(u64,), Returned<()>>(&mut *store, index)?;
                let (returned,) = func.call(&mut *store, (from,))?;
                Ok(returned.map(|()| Vec::new()))
            })(),
            None => Ok(Ok(Vec::new())),
        },
    };
    Ok(called.map(|r| {
        r.map_err(|e| GuestError {
            code: e.code,
            message: e.message,
        })
    }))
}

/// Calls the `list<u8> -> result<list<u8>, plugin-error>` export at `index`.
fn call_bytes(
    instance: &Instance,
    store: &mut Store<CallState>,
    index: &ComponentExportIndex,
    input: &[u8],
) -> wasmtime::Result<Result<Vec<u8>, v2::PluginError>> {
    let func = instance.get_typed_func::<(&[u8],), Returned<Vec<u8>>>(&mut *store, index)?;
    let (returned,) = func.call(&mut *store, (input,))?;
    Ok(returned)
}

fn failed(e: CallError) -> CallOutcome {
    CallOutcome {
        result: Err(e),
        writes: BTreeMap::new(),
        stats: CallStats::default(),
    }
}

impl Runtime {
    /// Runs one `apply` or `query` of `code` in a fresh instance.
    ///
    /// `base` is the plugin's committed KV; it is never modified here. On `Ok`
    /// the returned writes are what the caller must commit. A
    /// [`CallError::Host`] is this node's fault, never the plugin's outcome.
    pub fn call(
        &self,
        code: &Code,
        mode: CallMode,
        input: &[u8],
        ctx: &CallContext<'_>,
        base: &Kv,
    ) -> CallOutcome {
        let outcome = self.call_uncounted(code, mode, input, ctx, base);
        self.call_counters().record(ctx.plugin, mode, &outcome);
        outcome
    }

    fn call_uncounted(
        &self,
        code: &Code,
        mode: CallMode,
        input: &[u8],
        ctx: &CallContext<'_>,
        base: &Kv,
    ) -> CallOutcome {
        let export = match mode {
            CallMode::Apply => Export::Apply(input),
            CallMode::Query => Export::Query(input),
        };
        self.call_export(code, export, ctx, base)
    }

    /// Runs `code`'s `migrate(from_version)` as an upgrade's log entry does,
    /// writable, in a fresh instance. `None`: the component has no `migrate`
    /// (it targets `cairn:plugin@0.1.0`), so there is nothing to run. Waits
    /// for the component's compile; failing to compile is this node's fault.
    pub fn migrate(
        &self,
        code: &Code,
        from_version: u64,
        ctx: &CallContext<'_>,
        base: &Kv,
    ) -> Result<Option<CallOutcome>, HostFault> {
        let set = self
            .engine_set(ctx.engine)
            .map_err(|e| HostFault(e.to_string()))?;
        let compiled = self
            .compiled(&set, code.sha256(), code.bytes())
            .map_err(|e| HostFault(format!("cannot compile plugin {}: {e}", code.sha256_hex())))?;
        if !compiled.has_migrate() {
            return Ok(None);
        }
        Ok(Some(self.call_export(
            code,
            Export::Migrate(from_version),
            ctx,
            base,
        )))
    }

    /// Whether `code` exports `migrate` (targets `cairn:plugin@0.2.0`); false
    /// if it does not compile. Compiles it if needed (for the default engine
    /// parameters' cache of today's engine).
    pub fn exports_migrate(&self, code: &Code) -> bool {
        let set = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.compiled(&set, code.sha256(), code.bytes())
            .is_ok_and(|c| c.has_migrate())
    }

    fn call_export(
        &self,
        code: &Code,
        export: Export<'_>,
        ctx: &CallContext<'_>,
        base: &Kv,
    ) -> CallOutcome {
        let set = match self.engine_set(ctx.engine) {
            Ok(set) => set,
            Err(e) => return failed(CallError::Host(e.to_string())),
        };
        // The code is in the state, so the leader validated it: failing to
        // compile it here is this node's problem.
        let compiled = match self.compiled(&set, code.sha256(), code.bytes()) {
            Ok(c) => c,
            Err(e) => {
                return failed(CallError::Host(format!(
                    "cannot compile plugin {}: {e}",
                    code.sha256_hex()
                )));
            }
        };
        let log_cap = self.config.max_guest_log_bytes;
        let run = || run(&set, &compiled, export, ctx, base, log_cap);
        let wasm_stack = ctx.engine.max_stack_bytes;
        if wasm_stack <= INLINE_WASM_STACK_BYTES_MAX {
            return run();
        }
        // wasmtime does not check the native stack without async support: a
        // wasm stack cap above what this thread has would overflow it for
        // real and kill the process. Give such calls a thread of their own.
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("cairn-call".into())
                .stack_size(wasm_stack + HOST_STACK_HEADROOM_BYTES)
                .spawn_scoped(scope, run);
            match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(e) => failed(CallError::Host(format!(
                    "cannot start a thread for a {wasm_stack}-byte wasm stack: {e}"
                ))),
            }
        })
    }

    /// Instantiates `code` in a fresh store and drops it, calling nothing: the
    /// part of every call that is wasmtime's alone (store, instance, memory
    /// and table slots, and their reset). The runtime benchmark prints it next
    /// to whole calls; not for production use.
    #[doc(hidden)]
    pub fn instantiate_only(&self, code: &Code, ctx: &CallContext<'_>) -> Result<(), HostFault> {
        let set = self
            .engine_set(ctx.engine)
            .map_err(|e| HostFault(e.to_string()))?;
        let compiled = self
            .compiled(&set, code.sha256(), code.bytes())
            .map_err(|e| HostFault(e.to_string()))?;
        let mut store = new_store(&set, CallMode::Query, ctx, &Kv::new(), 0)
            .map_err(|e| HostFault(format!("{e:#}")))?;
        compiled
            .pre
            .instantiate(&mut store)
            .map_err(|e| HostFault(format!("{e:#}")))?;
        Ok(())
    }

    /// Instantiates `code` and keeps the instance alive in the returned store,
    /// holding one pool slot until it is dropped: how tests make the pool busy.
    #[cfg(test)]
    pub(crate) fn occupy_slot(&self, code: &Code, ctx: &CallContext<'_>) -> Store<CallState> {
        let set = self.engine_set(ctx.engine).expect("engine");
        let compiled = self
            .compiled(&set, code.sha256(), code.bytes())
            .expect("compiles");
        let mut store = new_store(&set, CallMode::Query, ctx, &Kv::new(), 0).expect("store");
        compiled.pre.instantiate(&mut store).expect("a free slot");
        store
    }
}

/// The memory cap a call runs under: the plugin's, within the engine's slot.
fn memory_limit_bytes(ctx: &CallContext<'_>) -> usize {
    ctx.memory_limit_bytes.min(ctx.engine.max_memory_bytes)
}

/// A fresh store for one call, with its fuel set.
fn new_store(
    set: &EngineSet,
    mode: CallMode,
    ctx: &CallContext<'_>,
    base: &Kv,
    log_cap_bytes: usize,
) -> wasmtime::Result<Store<CallState>> {
    let plugin: std::sync::Arc<str> = ctx.plugin.into();
    let wasi = LazyWasi::new(
        ctx.log_index,
        plugin.clone(),
        ctx.timestamp_ms,
        log_cap_bytes,
    );
    let state = CallState {
        mode,
        plugin,
        log_index: ctx.log_index,
        timestamp_ms: ctx.timestamp_ms,
        base: base.clone(),
        overlay: BTreeMap::new(),
        events: Vec::new(),
        event_bytes: 0,
        write_in_query: false,
        random_calls: 0,
        write_bytes: 0,
        scan_bytes: 0,
        budget_exceeded: None,
        limits: ctx.limits.clone(),
        limiter: Limiter {
            memory_limit_bytes: memory_limit_bytes(ctx),
            table_elements_max: ctx.limits.max_table_elements,
            memory_limit_hit: false,
        },
        wasi,
        table: ResourceTable::new(),
    };
    let mut store = Store::new(&set.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_fuel(ctx.fuel)?;
    Ok(store)
}

/// Instantiates `compiled` in a fresh store and runs the call.
fn run(
    set: &EngineSet,
    compiled: &Compiled,
    export: Export<'_>,
    ctx: &CallContext<'_>,
    base: &Kv,
    log_cap: usize,
) -> CallOutcome {
    let mut store = match new_store(set, export.mode(), ctx, base, log_cap) {
        Ok(store) => store,
        Err(e) => return failed(CallError::Host(format!("cannot set up a store: {e:#}"))),
    };
    let result = match instantiate_and_call(compiled, &mut store, export) {
        // No slot, no memory: the node is busy or short, the plugin did nothing.
        Err(e) if is_resource_fault(&e) => {
            return failed(CallError::Host(format!("cannot instantiate: {e:#}")));
        }
        Err(e) => Err(e),
        Ok(called) => called,
    };
    let fuel_consumed = ctx.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let (log, stderr_tail) = store.data().wasi.take_output();
    if !log.is_empty() {
        tracing::info!(
            plugin = ctx.plugin,
            index = ctx.log_index,
            "guest output: {}",
            String::from_utf8_lossy(&log).trim_end()
        );
    }
    let state = store.into_data();
    let result = match (result, state.budget_exceeded) {
        _ if state.write_in_query => Err(CallError::WriteInQuery),
        (_, Some(Budget::Write)) => Err(CallError::WriteBudgetExceeded {
            budget_bytes: ctx.limits.max_write_bytes_per_call,
        }),
        (_, Some(Budget::Scan)) => Err(CallError::ScanBudgetExceeded {
            budget_bytes: ctx.limits.max_scan_bytes_per_call,
        }),
        (Ok(Ok(out)), None) if out.len() > ctx.limits.max_output_bytes => {
            Err(CallError::OutputTooLarge(out.len()))
        }
        (Ok(Ok(out)), None) => Ok(Output {
            output: out,
            events: state.events,
        }),
        (Ok(Err(pe)), None) => Err(CallError::Plugin {
            code: pe.code,
            message: pe.message,
        }),
        (Err(e), None) => Err(classify_trap(
            &e,
            &Failure {
                fuel: ctx.fuel,
                memory_limit_bytes: memory_limit_bytes(ctx),
                memory_limit_hit: state.limiter.memory_limit_hit,
                stderr_tail: &stderr_tail,
            },
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
        stats: CallStats {
            fuel_consumed,
            write_bytes: state.write_bytes,
            scan_bytes: state.scan_bytes,
        },
    }
}
