//! Everything openraft: type config, durable log store, state-machine adapter, network.

pub mod codec;
pub mod types;
