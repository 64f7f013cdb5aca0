//! Latency histograms the Raft layer records (log flushes, apply batches,
//! snapshots) for `/metrics`; node/metrics renders them.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Smallest latency bucket: 100 µs (a loopback RPC or an idle fsync).
const LATENCY_FIRST_BUCKET_SECONDS: f64 = 0.0001;
/// Each bucket doubles the previous one…
const LATENCY_BUCKET_FACTOR: f64 = 2.0;
/// …up to ~13 s (a large snapshot or a plugin compile).
const LATENCY_BUCKETS: u16 = 18;

/// A histogram of durations in seconds with Cairn's latency buckets.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_FIRST_BUCKET_SECONDS,
        LATENCY_BUCKET_FACTOR,
        LATENCY_BUCKETS,
    ))
}

/// What the state machine measures. Clones share the same series.
#[derive(Clone)]
pub struct StateMachineStats {
    /// Time to apply one sub-batch of committed entries (plugin calls included).
    pub apply_batch_seconds: Histogram,
    /// Time to encode and persist a snapshot this node built.
    pub snapshot_build_seconds: Histogram,
    /// Time to check, persist and load a snapshot received from the leader.
    pub snapshot_install_seconds: Histogram,
    /// Size of the last snapshot built or installed.
    pub snapshot_size_bytes: Gauge,
}

impl Default for StateMachineStats {
    fn default() -> Self {
        Self {
            apply_batch_seconds: latency_histogram(),
            snapshot_build_seconds: latency_histogram(),
            snapshot_install_seconds: latency_histogram(),
            snapshot_size_bytes: Gauge::default(),
        }
    }
}
