//! The replicated state: plugin registry, per-plugin ordered KV, idempotency table.

mod command;

pub use command::*;
