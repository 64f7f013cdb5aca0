//! Everything openraft: type config, durable log store, state-machine adapter, network.

pub mod log_store;
pub mod types;
