//! Operational counters of one node and their Prometheus text rendering.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::RaftMetrics;

use crate::api::server::ConnectionStats;
use crate::raft::peer_stats::PeerRpcStats;
use crate::raft::types::TypeConfig;
use crate::state::State;

/// Node-level gauges that are not in openraft's metrics.
pub(super) struct NodeGauges {
    /// The disk watcher's last measurement.
    pub(super) disk: super::disk::DiskStatus,
    /// Raft stopped without being asked to (a storage error, a panic).
    pub(super) raft_fatal: bool,
}

/// Counters of client requests this node handled (not forwarded ones).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) applies_ok: AtomicU64,
    pub(super) applies_failed: AtomicU64,
    pub(super) queries_ok: AtomicU64,
    pub(super) queries_failed: AtomicU64,
    /// Queries turned away with `503 overloaded` (no instance slot free).
    pub(super) queries_refused: AtomicU64,
    /// Client connections, counted by the HTTP server.
    pub(super) http: Arc<ConnectionStats>,
    /// Peer RPC counters, shared with the network and the `/raft/…` handlers.
    pub(super) peers: Arc<PeerRpcStats>,
}

impl Counters {
    /// Counts one apply by whether the plugin accepted it.
    pub(super) fn apply(&self, ok: bool) {
        let c = if ok {
            &self.applies_ok
        } else {
            &self.applies_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query by whether it produced output.
    pub(super) fn query(&self, ok: bool) {
        let c = if ok {
            &self.queries_ok
        } else {
            &self.queries_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one query refused for lack of an instance slot.
    pub(super) fn query_refused(&self) {
        self.queries_refused.fetch_add(1, Ordering::Relaxed);
    }
}

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }
}

/// Renders the node's metrics in the Prometheus text exposition format.
pub(super) fn render(
    m: &RaftMetrics<TypeConfig>,
    state: &State,
    counters: &Counters,
    node: &NodeGauges,
) -> String {
    let idx = |l: Option<openraft::alias::LogIdOf<TypeConfig>>| l.map_or(0, |l| l.index);
    let voters = m.membership_config.membership().voter_ids().count() as u64;
    let plugins = state.plugins();
    let kv_entries: u64 = plugins.iter().map(|p| state.kv(&p.name).len() as u64).sum();
    let mut out = Out(String::new());
    out.metric(
        "cairn_raft_term",
        "gauge",
        "Current Raft term.",
        &[("", m.current_term)],
    );
    out.metric(
        "cairn_raft_is_leader",
        "gauge",
        "1 if this node is the leader.",
        &[("", u64::from(m.state == openraft::ServerState::Leader))],
    );
    out.metric(
        "cairn_raft_leader_id",
        "gauge",
        "Known leader id (0 if none).",
        &[("", m.current_leader.unwrap_or(0))],
    );
    out.metric(
        "cairn_raft_voters",
        "gauge",
        "Voters in the effective membership.",
        &[("", voters)],
    );
    out.metric(
        "cairn_raft_last_log_index",
        "gauge",
        "Last index in the local log.",
        &[("", m.last_log_index.unwrap_or(0))],
    );
    out.metric(
        "cairn_raft_committed_index",
        "gauge",
        "Last index known committed.",
        &[("", idx(m.local_committed))],
    );
    out.metric(
        "cairn_raft_applied_index",
        "gauge",
        "Last index applied to the state machine.",
        &[("", idx(m.last_applied))],
    );
    out.metric(
        "cairn_raft_snapshot_index",
        "gauge",
        "Last index covered by a snapshot.",
        &[("", idx(m.snapshot))],
    );
    out.metric(
        "cairn_raft_purged_index",
        "gauge",
        "Last index purged from the log.",
        &[("", idx(m.purged))],
    );
    out.metric(
        "cairn_plugins",
        "gauge",
        "Deployed plugins.",
        &[("", plugins.len() as u64)],
    );
    out.metric(
        "cairn_kv_entries",
        "gauge",
        "Key-value entries over all plugins.",
        &[("", kv_entries)],
    );
    out.metric(
        "cairn_raft_fatal",
        "gauge",
        "1 if Raft stopped on an error (e.g. storage); the node must be restarted.",
        &[("", u64::from(node.raft_fatal))],
    );
    out.metric(
        "cairn_disk_free_bytes",
        "gauge",
        "Bytes free on the data dir's filesystem.",
        &[("", node.disk.free_bytes)],
    );
    out.metric(
        "cairn_disk_min_free_bytes",
        "gauge",
        "Free-space watermark below which writes are refused (0: disabled).",
        &[("", node.disk.min_free_bytes)],
    );
    out.metric(
        "cairn_disk_alarm",
        "gauge",
        "1 while free space is below the watermark and writes are refused.",
        &[("", u64::from(node.disk.alarm))],
    );
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    out.metric(
        "cairn_applies_total",
        "counter",
        "Apply requests this node proposed, by outcome.",
        &[
            (r#"{outcome="ok"}"#, load(&counters.applies_ok)),
            (r#"{outcome="failed"}"#, load(&counters.applies_failed)),
        ],
    );
    out.metric(
        "cairn_queries_total",
        "counter",
        "Queries this node answered, by outcome.",
        &[
            (r#"{outcome="ok"}"#, load(&counters.queries_ok)),
            (r#"{outcome="failed"}"#, load(&counters.queries_failed)),
            (r#"{outcome="overloaded"}"#, load(&counters.queries_refused)),
        ],
    );
    out.metric(
        "cairn_http_connections_open",
        "gauge",
        "Client connections being served.",
        &[("", counters.http.open())],
    );
    out.metric(
        "cairn_http_connections_refused_total",
        "counter",
        "Connections refused because max_connections were open.",
        &[("", counters.http.refused())],
    );
    render_peers(&mut out, &counters.peers);
    out.0
}

/// The peer RPC counters: refusals this node answered, failures of RPCs it
/// sent, and append batches it split to fit `max_append_bytes`.
fn render_peers(out: &mut Out, peers: &PeerRpcStats) {
    let refused: Vec<(String, u64)> = peers
        .refused()
        .into_iter()
        .map(|((endpoint, reason), n)| {
            (format!(r#"{{endpoint="{endpoint}",reason="{reason}"}}"#), n)
        })
        .collect();
    let samples: Vec<(&str, u64)> = refused.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    out.metric(
        "cairn_peer_rpc_refused_total",
        "counter",
        "Requests on the peer port this node refused, by endpoint and reason (error code; unauthenticated, stale-request and replayed are refused before the body is read).",
        &samples,
    );
    let errors: Vec<(String, u64)> = peers
        .errors()
        .into_iter()
        .map(|((peer, reason), n)| (format!(r#"{{peer="{peer}",reason="{reason}"}}"#), n))
        .collect();
    let samples: Vec<(&str, u64)> = errors.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    out.metric(
        "cairn_peer_rpc_errors_total",
        "counter",
        "Raft RPCs this node sent that failed, by peer and reason (refused, timeout, unreachable, network, bad-reply).",
        &samples,
    );
    out.metric(
        "cairn_peer_connections_open",
        "gauge",
        "Connections open on the peer port.",
        &[("", peers.connections_open())],
    );
    out.metric(
        "cairn_peer_connections_refused_total",
        "counter",
        "Peer-port connections closed at once because peer_max_connections were open.",
        &[("", peers.connections_refused())],
    );
    out.metric(
        "cairn_peer_append_splits_total",
        "counter",
        "Append-entries batches cut to fit max_append_bytes (the rest followed in the next request).",
        &[("", peers.appends_split())],
    );
}
