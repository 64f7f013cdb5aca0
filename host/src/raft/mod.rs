//! Everything openraft: type config, durable log store, state-machine adapter, network.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod peer_server;
pub mod peer_stats;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod network_tests;
#[cfg(test)]
pub(crate) mod test_support;
