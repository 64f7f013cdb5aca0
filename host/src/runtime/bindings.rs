//! The one `bindgen!` of the host: Rust types for the `cairn:plugin` world.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use cairn::plugin::context;
pub use cairn::plugin::kv;
