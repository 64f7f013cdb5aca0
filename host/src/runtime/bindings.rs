//! The host's `bindgen!`s: Rust types for both versions of the `cairn:plugin`
//! world, so components built against 0.1.0 (no `migrate`) keep running next
//! to 0.2.0 ones.
//!
//! Only the exports (`PluginPre`, `Plugin::call_*`) and the `kv` types are
//! used: the imports are linked by hand in `kv_host` and `context_host`,
//! because they charge fuel and the generated `Host` traits get no store.

/// `cairn:plugin@0.2.0` (`wit/cairn.wit`): adds the `migrate` export.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
    });
}

/// `cairn:plugin@0.1.0` (`wit/v0.1.0/`): `apply` and `query` only.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
    });
}

/// The kv types are the same in both versions (the linker checks shapes, not
/// package names), so one set serves both.
pub use v2::cairn::plugin::kv;

/// The versions of the `cairn:plugin` package the host links, newest first.
pub const WORLD_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];
