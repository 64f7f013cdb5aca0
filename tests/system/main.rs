//! System tests: real Cairn nodes in-process on loopback ports, driven over HTTP; and
//! separate `cairn` processes (the real binary) for crash, snapshot and membership scenarios.

mod harness;
mod http_node;
mod process;

mod bad_input;
mod code_once;
mod disk_alarm;
mod election_wait;
mod events;
mod failover_writes;
mod idempotency;
mod idempotency_deploy;
mod idempotency_failover;
mod kill9_leader;
mod large_plugin;
mod leader_failover;
mod linearizability;
mod malformed;
mod membership;
mod metrics;
mod partition;
mod polyglot_python;
mod query_admission;
mod settings;
mod single_node;
mod snapshot_rejoin;
mod three_nodes;
