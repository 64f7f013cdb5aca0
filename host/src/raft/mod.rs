//! Everything openraft: type config, durable log store, state-machine adapter, network.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod peer_checks;
pub mod peer_stats;
pub mod state_machine;
pub mod stats;
pub mod types;

#[cfg(test)]
pub(crate) mod codec_props;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
pub(crate) mod test_support;
