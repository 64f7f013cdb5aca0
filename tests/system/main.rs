//! System tests: real Cairn nodes in-process on loopback ports, driven over HTTP; and
//! separate `cairn` processes (the real binary) for crash, snapshot and membership scenarios.

mod harness;
mod http_node;
mod process;

mod auth;
mod backup_restore;
mod bad_input;
mod cli_commands;
mod code_once;
mod compile_off_apply;
mod dashboard;
mod disk_alarm;
mod election_wait;
mod events;
mod events_watch;
mod failover_writes;
mod idempotency;
mod idempotency_deploy;
mod idempotency_failover;
mod join_token;
mod kill9_leader;
mod large_plugin;
mod leader_failover;
mod lease_read;
mod linearizability;
mod log_format;
mod malformed;
mod membership;
mod metrics;
mod migrate;
mod partition;
mod peer_channel;
mod polyglot_js;
mod polyglot_python;
mod query_admission;
mod query_time;
mod scaffold;
mod sched_policy;
mod settings;
mod single_node;
mod snapshot_rejoin;
mod three_nodes;
mod tls;
