//! System tests: real Cairn nodes in-process on loopback ports, driven over HTTP; and
//! separate `cairn` processes (the real binary) for crash, snapshot and membership scenarios.

mod harness;
mod http_node;
mod process;

mod auth;
mod bad_input;
mod disk_alarm;
mod events;
mod idempotency;
mod kill9_leader;
mod leader_failover;
mod linearizability;
mod membership;
mod metrics;
mod partition;
mod settings;
mod single_node;
mod snapshot_rejoin;
mod three_nodes;
