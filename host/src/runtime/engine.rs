//! The wasmtime engine in its deterministic configuration, with a pooling allocator.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{EngineParams, RuntimeConfig};

/// Most core instances, memories and tables one component may contain. These
/// are checked when a component is compiled (a bigger one is refused at
/// deploy, identically on every node), and the pool holds `pooled_instances`
/// times as many, so a component that was accepted always fits into an idle
/// pool: running out of pool slots then only ever means "busy", a fault of
/// this node that a plugin cannot provoke on every node. Generous enough for
/// interpreters built from many dynamically linked modules.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 32;

/// Native stack beyond the wasm stack cap: host frames under and above the
/// guest (imports, WASI, the trap handler).
pub(super) const HOST_STACK_HEADROOM_BYTES: usize = 1024 * 1024;

/// Builds the engine per DESIGN.md rules 3–4: fuel metering, NaN
/// canonicalisation, deterministic relaxed SIMD, no threads, fixed stack.
pub(super) fn build(cfg: &RuntimeConfig, params: &EngineParams) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    config.cranelift_nan_canonicalization(true);
    config.relaxed_simd_deterministic(true);
    // Compile a component's functions on every core (rayon): an interpreter
    // plugin (Python, JS) has tens of thousands. The compiled code is the same
    // whatever the thread count, so this decides no outcome.
    config.parallel_compilation(true);
    // Threads are not compiled in (no `threads` cargo feature); shared memory
    // cannot be created either way.
    config.max_wasm_stack(params.max_stack_bytes);
    // Only fibers (async, not compiled in) use this stack size, but the
    // engine refuses a wasm stack cap above it (2 MiB by default); calls with
    // a bigger cap run on a thread sized the same way (see `call`).
    config.async_stack_size(params.max_stack_bytes + HOST_STACK_HEADROOM_BYTES);

    // Each call instantiates afresh, so instantiation must be cheap: the pool
    // pre-reserves slots. A Rust wasip2 component holds a few core instances
    // (the program plus adapter shims).
    let instances = cfg.pooled_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances);
    pool.total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT);
    pool.total_memories(instances * MEMORIES_PER_COMPONENT);
    pool.total_tables(instances * TABLES_PER_COMPONENT);
    pool.total_stacks(instances);
    pool.max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT);
    pool.max_memories_per_component(MEMORIES_PER_COMPONENT);
    pool.max_tables_per_component(TABLES_PER_COMPONENT);
    pool.max_memory_size(params.max_memory_bytes);
    // Reset memory by rewriting only the pages a call dirtied (pagemap scan,
    // Linux 6.7+) instead of unmapping them: the next instance then takes no
    // page faults. Measured: ~69 µs → ~42 µs per fresh-instance call.
    pool.linear_memory_keep_resident(2 << 20);
    pool.table_keep_resident(1 << 20);
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}
