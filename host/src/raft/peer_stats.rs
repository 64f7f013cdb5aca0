//! Counters and log throttling for peer RPCs, shared by the sending side
//! (`raft::network`) and the receiving side (`raft::peer_listener`) and
//! rendered by the node's `/metrics`.
//!
//! A refused peer RPC is retried by openraft for as long as the refusal lasts,
//! so it must be visible (a warning and a counter) without flooding the log:
//! the first refusal of a kind is logged, then at most one line per
//! [`REFUSAL_LOG_INTERVAL`] that says how many were suppressed.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http_serve::ConnectionStats;
use crate::raft::types::NodeId;

/// Least time between two log lines about the same kind of peer RPC failure
/// (per peer on the sender, per endpoint, reason and sender on the receiver).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// When a throttled message was last logged and what was held back since.
struct Gate {
    last_logged: Instant,
    suppressed: u64,
}

/// Latency histograms keyed by label pairs (e.g. the RPC's endpoint).
pub type HistogramFamily = Family<Vec<(&'static str, String)>, Histogram, fn() -> Histogram>;

/// Peer RPC counters of one node.
pub struct PeerRpcStats {
    /// Sender: round-trip seconds of RPCs that got an answer, by endpoint path.
    rpc_seconds: HistogramFamily,
    /// Receiver: `(endpoint, reason)` → requests refused.
    refused: Mutex<BTreeMap<(String, String), u64>>,
    /// Sender: `(peer, reason)` → RPCs that failed.
    errors: Mutex<BTreeMap<(NodeId, &'static str), u64>>,
    /// Sender: append-entries batches cut to fit `max_append_bytes`.
    appends_split: AtomicU64,
    /// Receiver: peer connections open, and those closed at once because
    /// `peer_max_connections` were open.
    connections: Arc<ConnectionStats>,
    gates: Mutex<HashMap<String, Gate>>,
}

impl Default for PeerRpcStats {
    fn default() -> Self {
        Self {
            rpc_seconds: HistogramFamily::new_with_constructor(
                crate::raft::stats::latency_histogram,
            ),
            refused: Mutex::default(),
            errors: Mutex::default(),
            appends_split: AtomicU64::default(),
            connections: Arc::default(),
            gates: Mutex::default(),
        }
    }
}

/// Locks `m`; a poisoned lock only means a panic elsewhere while counting,
/// and counters stay usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PeerRpcStats {
    /// Counts one request this node refused on `endpoint` (reason: the error code).
    pub fn record_refused(&self, endpoint: &str, reason: &str) {
        *lock(&self.refused)
            .entry((endpoint.to_string(), reason.to_string()))
            .or_default() += 1;
    }

    /// Counts one RPC to `peer` that failed for `reason`.
    pub fn record_error(&self, peer: NodeId, reason: &'static str) {
        *lock(&self.errors).entry((peer, reason)).or_default() += 1;
    }

    /// Records the round trip of one answered RPC to `endpoint` (its path).
    pub fn record_rpc(&self, endpoint: &str, seconds: f64) {
        self.rpc_seconds
            .get_or_create(&vec![("endpoint", endpoint.to_string())])
            .observe(seconds);
    }

    /// Round-trip histograms of answered RPCs, by endpoint (shared series).
    pub fn rpc_seconds(&self) -> HistogramFamily {
        self.rpc_seconds.clone()
    }

    /// Counts one append-entries batch that was split.
    pub fn record_split(&self) {
        self.appends_split.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a message under `key` may be logged now; if so, how many were
    /// suppressed since the last one. The first message of a key always is.
    pub fn should_log(&self, key: &str) -> Option<u64> {
        self.should_log_at(key, Instant::now())
    }

    fn should_log_at(&self, key: &str, now: Instant) -> Option<u64> {
        let mut gates = lock(&self.gates);
        match gates.get_mut(key) {
            None => {
                gates.insert(
                    key.to_string(),
                    Gate {
                        last_logged: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
            Some(gate)
                if now.saturating_duration_since(gate.last_logged) >= REFUSAL_LOG_INTERVAL =>
            {
                let suppressed = gate.suppressed;
                *gate = Gate {
                    last_logged: now,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            Some(gate) => {
                gate.suppressed += 1;
                None
            }
        }
    }

    /// Refusals by `(endpoint, reason)`, in a stable order.
    pub fn refused(&self) -> Vec<((String, String), u64)> {
        lock(&self.refused)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Failed RPCs by `(peer, reason)`, in a stable order.
    pub fn errors(&self) -> Vec<((NodeId, &'static str), u64)> {
        lock(&self.errors).iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Peer connections: open now and refused so far (counted by the accept loop).
    pub fn connections(&self) -> &Arc<ConnectionStats> {
        &self.connections
    }

    /// Append-entries batches split so far.
    pub fn appends_split(&self) -> u64 {
        self.appends_split.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_at_most_once_per_interval_per_key() {
        let stats = PeerRpcStats::default();
        let t0 = Instant::now();
        assert_eq!(stats.should_log_at("peer-2", t0), Some(0));
        // Another key is independent.
        assert_eq!(stats.should_log_at("peer-3", t0), Some(0));
        for i in 1..=5 {
            assert_eq!(
                stats.should_log_at("peer-2", t0 + Duration::from_millis(i)),
                None
            );
        }
        let later = t0 + REFUSAL_LOG_INTERVAL;
        assert_eq!(stats.should_log_at("peer-2", later), Some(5));
        assert_eq!(stats.should_log_at("peer-2", later), None);
        assert_eq!(
            stats.should_log_at("peer-2", later + REFUSAL_LOG_INTERVAL),
            Some(1)
        );
    }

    #[test]
    fn counts_by_label() {
        let stats = PeerRpcStats::default();
        stats.record_refused("append", "body-too-large");
        stats.record_refused("append", "body-too-large");
        stats.record_refused("vote", "bad-raft-body");
        stats.record_error(2, "refused");
        stats.record_error(2, "timeout");
        stats.record_error(2, "refused");
        stats.record_split();
        assert_eq!(
            stats.refused(),
            [
                (("append".into(), "body-too-large".into()), 2),
                (("vote".into(), "bad-raft-body".into()), 1)
            ]
        );
        assert_eq!(stats.errors(), [((2, "refused"), 2), ((2, "timeout"), 1)]);
        assert_eq!(stats.appends_split(), 1);
    }
}
