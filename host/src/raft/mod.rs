//! Everything openraft: type config, durable log store, state-machine adapter, network.

pub mod log_store;
pub mod state_machine;
pub mod types;
