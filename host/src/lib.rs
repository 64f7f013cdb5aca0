//! Cairn host: a Raft-replicated log whose state machines are WebAssembly plugins.
#![warn(missing_docs)]

pub mod api;
pub mod bench;
mod bounded_decode;
pub mod cli;
pub mod config;
pub mod http_client;
mod http_serve;
pub mod node;
pub mod plugins;
pub mod raft;
pub mod runtime;
pub mod state;
#[cfg(test)]
mod test_props;
pub mod tls;
pub mod worker_pool;
