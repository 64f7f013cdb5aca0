//! Everything openraft: type config, durable log store, state-machine adapter,
//! and the peer channel with both sides of each RPC (`network` sends,
//! `peer_listener` and `peer_server` receive), its authentication (`peer_auth`)
//! and joining (`join`).

pub mod codec;
pub mod join;
pub mod log_store;
pub mod network;
pub mod peer_auth;
pub mod peer_checks;
pub mod peer_listener;
pub mod peer_server;
pub mod peer_stats;
pub mod state_machine;
pub mod stats;
pub mod types;

#[cfg(test)]
pub(crate) mod codec_props;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod peer_tests;
#[cfg(test)]
pub(crate) mod test_support;
