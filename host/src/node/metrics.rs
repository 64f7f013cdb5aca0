//! Operational metrics of one node, rendered with `prometheus-client` in the
//! OpenMetrics text format: Raft state, request counters and latency
//! histograms, per-plugin call counters, follower lag, snapshot timings.
//!
//! Long-lived series (counters, histograms) are kept here and in the layers
//! that record them; gauges derived from state are computed per scrape. Each
//! scrape registers clones of them (they share their values) in a fresh
//! registry, so nothing is registered twice and removed plugins drop out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use openraft::RaftMetrics;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::server::ConnectionStats;
use crate::raft::peer_stats::PeerRpcStats;
use crate::raft::stats::{StateMachineStats, latency_histogram};
use crate::raft::types::TypeConfig;
use crate::runtime::call_stats::CallCounters;
use crate::state::State;

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// Node-level gauges that are not in openraft's metrics.
pub(super) struct NodeGauges {
    /// The disk watcher's last measurement.
    pub(super) disk: super::disk::DiskStatus,
    /// Raft stopped without being asked to (a storage error, a panic).
    pub(super) raft_fatal: bool,
}

/// Series recorded by lower layers, read at scrape time.
pub(super) struct Sources<'a> {
    /// Apply-batch and snapshot timings.
    pub(super) state_machine: &'a StateMachineStats,
    /// Per-plugin calls, failures and fuel.
    pub(super) calls: &'a CallCounters,
    /// Writes handed to Raft and in how many messages.
    pub(super) proposer: &'a super::proposer::ProposerStats,
}

/// Counters and latencies of client requests this node handled (not forwarded ones).
pub(super) struct Counters {
    /// Apply requests by outcome (`ok`, `failed`).
    applies: Family<Labels, Counter>,
    /// Queries by outcome (`ok`, `failed`, `overloaded`).
    queries: Family<Labels, Counter>,
    /// Linearizable reads the leader confirmed, by how (`lease`, `read_index`).
    linearizable_reads: Family<Labels, Counter>,
    /// An apply from the service call to its answer (proposal, commit, apply).
    pub(super) apply_seconds: Histogram,
    /// A query from the service call to its answer (read index included).
    pub(super) query_seconds: Histogram,
    /// openraft's `client_write`: proposal until committed and applied here.
    pub(super) client_write_seconds: Histogram,
    /// The log store's append-to-durable wait (set once the store is open).
    pub(super) log_flush_seconds: Histogram,
    /// Bytes of records in the log's live segments (set once the store is open).
    pub(super) log_bytes: Gauge,
    /// Client connections, counted by the HTTP server.
    pub(super) http: Arc<ConnectionStats>,
    /// Peer RPC counters, shared with the network and the `/raft/…` handlers.
    pub(super) peers: Arc<PeerRpcStats>,
}

impl Default for Counters {
    fn default() -> Self {
        // Every outcome is shown from the start (at 0), as scrapers expect.
        let (applies, queries): (Family<Labels, Counter>, Family<Labels, Counter>) =
            Default::default();
        for o in ["ok", "failed"] {
            applies.get_or_create(&outcome(o)).inc_by(0);
        }
        for o in ["ok", "failed", "overloaded"] {
            queries.get_or_create(&outcome(o)).inc_by(0);
        }
        let linearizable_reads = Family::<Labels, Counter>::default();
        for p in ["lease", "read_index"] {
            linearizable_reads.get_or_create(&path(p)).inc_by(0);
        }
        Self {
            applies,
            queries,
            linearizable_reads,
            apply_seconds: latency_histogram(),
            query_seconds: latency_histogram(),
            client_write_seconds: latency_histogram(),
            log_flush_seconds: latency_histogram(),
            log_bytes: Gauge::default(),
            http: Arc::default(),
            peers: Arc::default(),
        }
    }
}

fn outcome(label: &str) -> Labels {
    vec![("outcome", label.to_string())]
}

fn path(label: &str) -> Labels {
    vec![("path", label.to_string())]
}

impl Counters {
    /// Counts one apply by whether the plugin accepted it.
    pub(super) fn apply(&self, ok: bool) {
        self.applies
            .get_or_create(&outcome(if ok { "ok" } else { "failed" }))
            .inc();
    }

    /// Counts one query by whether it produced output.
    pub(super) fn query(&self, ok: bool) {
        self.queries
            .get_or_create(&outcome(if ok { "ok" } else { "failed" }))
            .inc();
    }

    /// Counts one linearizable read confirmed by `how` (`lease`, `read_index`).
    pub(super) fn linearizable_read(&self, how: &str) {
        self.linearizable_reads.get_or_create(&path(how)).inc();
    }

    /// Counts one query refused for lack of an instance slot.
    pub(super) fn query_refused(&self) {
        self.queries.get_or_create(&outcome("overloaded")).inc();
    }
}

/// A gauge holding `v` (saturating into the i64 the format carries).
fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// A counter holding `v` (for totals kept elsewhere as plain numbers).
fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// Renders the node's metrics in the OpenMetrics text format.
pub(super) fn render(
    m: &RaftMetrics<TypeConfig>,
    state: &State,
    counters: &Counters,
    node: &NodeGauges,
    sources: &Sources<'_>,
) -> String {
    let idx = |l: Option<openraft::alias::LogIdOf<TypeConfig>>| l.map_or(0, |l| l.index);
    let voters = m.membership_config.membership().voter_ids().count() as u64;
    let plugins = state.plugins();
    let kv_entries: u64 = plugins.iter().map(|p| state.kv(&p.name).len() as u64).sum();
    let mut reg = Registry::default();
    let r = &mut reg;
    let is_leader = m.state == openraft::ServerState::Leader;
    for (name, help, v) in [
        ("cairn_raft_term", "Current Raft term.", m.current_term),
        (
            "cairn_raft_is_leader",
            "1 if this node is the leader.",
            u64::from(is_leader),
        ),
        (
            "cairn_raft_leader_id",
            "Known leader id (0 if none).",
            m.current_leader.unwrap_or(0),
        ),
        (
            "cairn_raft_voters",
            "Voters in the effective membership.",
            voters,
        ),
        (
            "cairn_raft_last_log_index",
            "Last index in the local log.",
            m.last_log_index.unwrap_or(0),
        ),
        (
            "cairn_raft_committed_index",
            "Last index known committed.",
            idx(m.local_committed),
        ),
        (
            "cairn_raft_applied_index",
            "Last index applied to the state machine.",
            idx(m.last_applied),
        ),
        (
            "cairn_raft_snapshot_index",
            "Last index covered by a snapshot.",
            idx(m.snapshot),
        ),
        (
            "cairn_raft_purged_index",
            "Last index purged from the log.",
            idx(m.purged),
        ),
        ("cairn_plugins", "Deployed plugins.", plugins.len() as u64),
        (
            "cairn_kv_entries",
            "Key-value entries over all plugins.",
            kv_entries,
        ),
        (
            "cairn_log_bytes",
            "Bytes of records in the Raft log's live segments (files are preallocated larger).",
            u64::try_from(counters.log_bytes.get()).unwrap_or(0),
        ),
        (
            "cairn_raft_fatal",
            "1 if Raft stopped on an error (e.g. storage); the node must be restarted.",
            u64::from(node.raft_fatal),
        ),
        (
            "cairn_disk_free_bytes",
            "Bytes free on the data dir's filesystem.",
            node.disk.free_bytes,
        ),
        (
            "cairn_disk_min_free_bytes",
            "Free-space watermark below which writes are refused (0: disabled).",
            node.disk.min_free_bytes,
        ),
        (
            "cairn_disk_alarm",
            "1 while free space is below the watermark and writes are refused.",
            u64::from(node.disk.alarm),
        ),
        (
            "cairn_http_connections_open",
            "Client connections being served.",
            counters.http.open(),
        ),
    ] {
        r.register(name, help, gauge(v));
    }
    render_follower_lag(r, m);

    // prometheus-client appends `_total` to counter names.
    r.register(
        "cairn_applies",
        "Apply requests this node proposed, by outcome.",
        counters.applies.clone(),
    );
    r.register(
        "cairn_queries",
        "Queries this node answered, by outcome.",
        counters.queries.clone(),
    );
    r.register(
        "cairn_linearizable_reads",
        "Linearizable reads this node confirmed as leader, by path (lease, read_index).",
        counters.linearizable_reads.clone(),
    );
    r.register(
        "cairn_write_batches",
        "Messages that handed proposed writes to Raft (writes waiting together go as one).",
        counter(sources.proposer.batches.load(Ordering::Relaxed)),
    );
    r.register(
        "cairn_writes_proposed",
        "Writes this node handed to Raft as leader.",
        counter(sources.proposer.writes.load(Ordering::Relaxed)),
    );
    r.register(
        "cairn_http_connections_refused",
        "Connections refused because max_connections were open.",
        counter(counters.http.refused()),
    );
    for (name, help, h) in [
        (
            "cairn_apply_seconds",
            "Apply requests handled here, from the service call to the answer (propose, commit, apply).",
            &counters.apply_seconds,
        ),
        (
            "cairn_query_seconds",
            "Queries answered here, from the service call to the answer (read index included).",
            &counters.query_seconds,
        ),
        (
            "cairn_raft_client_write_seconds",
            "Proposal to commit and apply on the leader (openraft client_write).",
            &counters.client_write_seconds,
        ),
        (
            "cairn_log_flush_seconds",
            "Raft log append until the fsync that made it durable (group commit included).",
            &counters.log_flush_seconds,
        ),
        (
            "cairn_apply_batch_seconds",
            "Applying one batch of committed entries to the state machine.",
            &sources.state_machine.apply_batch_seconds,
        ),
        (
            "cairn_snapshot_build_seconds",
            "Encoding and persisting a snapshot built here.",
            &sources.state_machine.snapshot_build_seconds,
        ),
        (
            "cairn_snapshot_install_seconds",
            "Checking, persisting and loading a snapshot received from the leader.",
            &sources.state_machine.snapshot_install_seconds,
        ),
    ] {
        r.register(name, help, h.clone());
    }
    r.register(
        "cairn_snapshot_size_bytes",
        "Size of the last snapshot built or installed here.",
        sources.state_machine.snapshot_size_bytes.clone(),
    );
    render_plugin_calls(r, sources.calls);
    render_peers(r, &counters.peers);

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// Per follower (on the leader only): entries its matched index trails the
/// leader's last log index by.
fn render_follower_lag(reg: &mut Registry, m: &RaftMetrics<TypeConfig>) {
    let lag: Family<Labels, Gauge> = Family::default();
    let last = m.last_log_index.unwrap_or(0);
    if let Some(replication) = &m.replication {
        for (peer, matched) in replication {
            if *peer == m.id {
                continue;
            }
            let matched = matched.as_ref().map_or(0, |l| l.index);
            lag.get_or_create(&vec![("peer", peer.to_string())])
                .set(i64::try_from(last.saturating_sub(matched)).unwrap_or(i64::MAX));
        }
    }
    reg.register(
        "cairn_raft_follower_lag_entries",
        "Leader only: log entries each follower's replicated index trails the leader's last index.",
        lag,
    );
}

/// Calls, failures by code and fuel of every plugin, by mode.
fn render_plugin_calls(reg: &mut Registry, calls: &CallCounters) {
    let (count, failures, fuel): (
        Family<Labels, Counter>,
        Family<Labels, Counter>,
        Family<Labels, Counter>,
    ) = Default::default();
    for ((plugin, mode), c) in calls.snapshot() {
        let labels = vec![("plugin", plugin.clone()), ("mode", mode.to_string())];
        count.get_or_create(&labels).inc_by(c.calls);
        fuel.get_or_create(&labels).inc_by(c.fuel_consumed);
        for (code, n) in c.failures {
            let mut labels = labels.clone();
            labels.push(("code", code));
            failures.get_or_create(&labels).inc_by(n);
        }
    }
    reg.register(
        "cairn_plugin_calls",
        "Plugin calls run on this node, by plugin and mode (apply, query).",
        count,
    );
    reg.register(
        "cairn_plugin_call_failures",
        "Plugin calls that failed, by plugin, mode and error code.",
        failures,
    );
    reg.register(
        "cairn_plugin_fuel",
        "Fuel consumed by plugin calls on this node, by plugin and mode.",
        fuel,
    );
}

/// The peer RPC series: refusals this node answered, failures of RPCs it
/// sent, append batches it split to fit `max_append_bytes`, and round trips.
fn render_peers(reg: &mut Registry, peers: &PeerRpcStats) {
    let refused: Family<Labels, Counter> = Family::default();
    for ((endpoint, reason), n) in peers.refused() {
        refused
            .get_or_create(&vec![("endpoint", endpoint), ("reason", reason)])
            .inc_by(n);
    }
    reg.register(
        "cairn_peer_rpc_refused",
        "Raft RPCs from peers this node refused, by endpoint and reason (error code).",
        refused,
    );
    let errors: Family<Labels, Counter> = Family::default();
    for ((peer, reason), n) in peers.errors() {
        errors
            .get_or_create(&vec![
                ("peer", peer.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc_by(n);
    }
    reg.register(
        "cairn_peer_rpc_errors",
        "Raft RPCs this node sent that failed, by peer and reason (refused, timeout, unreachable, network, bad-reply).",
        errors,
    );
    reg.register(
        "cairn_peer_connections_open",
        "Connections open on the peer port.",
        gauge(peers.connections().open()),
    );
    reg.register(
        "cairn_peer_connections_refused",
        "Peer-port connections closed at once because peer_max_connections were open.",
        counter(peers.connections().refused()),
    );
    reg.register(
        "cairn_peer_append_splits",
        "Append-entries batches cut to fit max_append_bytes (the rest followed in the next request).",
        counter(peers.appends_split()),
    );
    reg.register(
        "cairn_peer_rpc_seconds",
        "Round trip of Raft RPCs this node sent that got an answer, by endpoint.",
        peers.rpc_seconds(),
    );
}
