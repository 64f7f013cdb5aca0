//! The one `bindgen!` of the host: Rust types for the `cairn:plugin` world.
//!
//! Only the exports (`PluginPre`, `Plugin::call_*`) and the `kv` types are
//! used: the imports are linked by hand in `kv_host` and `context_host`,
//! because they charge fuel and the generated `Host` traits get no store.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use cairn::plugin::kv;
