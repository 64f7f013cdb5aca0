//! Cairn host: a Raft-replicated log whose state machines are WebAssembly plugins.
#![warn(missing_docs)]

pub mod config;
pub mod http_client;
pub mod raft;
pub mod state;
