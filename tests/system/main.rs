//! System tests: real Cairn nodes in-process on loopback ports, driven over HTTP.

mod harness;

mod bad_input;
mod idempotency;
mod leader_failover;
mod single_node;
mod three_nodes;
