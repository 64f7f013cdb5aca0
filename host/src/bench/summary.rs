//! One workload's outcome: throughput and latency percentiles from raw samples.

use std::time::Duration;

use serde::Serialize;

use super::Workload;

/// The outcome of one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Workload name.
    pub workload: Workload,
    /// Concurrent clients.
    pub clients: u32,
    /// Successful (2xx) requests.
    pub ok: u64,
    /// Failed requests: non-2xx, transport errors and timeouts.
    pub errors: u64,
    /// The first failure, e.g. `HTTP 503 no-leader`.
    pub first_error: Option<String>,
    /// Wall time from the first request to the last answer.
    pub elapsed_secs: f64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Latency percentiles of successful requests, in milliseconds (0 when none succeeded).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Summary {
    /// Builds a summary from every successful request's latency (µs, any order).
    pub fn from_samples(
        workload: Workload,
        clients: u32,
        mut latencies_us: Vec<u64>,
        errors: u64,
        first_error: Option<String>,
        elapsed: Duration,
    ) -> Self {
        latencies_us.sort_unstable();
        let ms = |us: Option<u64>| us.map_or(0.0, |us| us as f64 / 1000.0);
        let ok = latencies_us.len() as u64;
        let secs = elapsed.as_secs_f64();
        Self {
            workload,
            clients,
            ok,
            errors,
            first_error,
            elapsed_secs: secs,
            throughput_rps: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            p50_ms: ms(percentile(&latencies_us, 50.0)),
            p99_ms: ms(percentile(&latencies_us, 99.0)),
            max_ms: ms(latencies_us.last().copied()),
        }
    }

    /// One human-readable line.
    pub fn line(&self) -> String {
        let mut out = format!(
            "{:<19} clients {:>4}  {:>10.1} req/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ok {:>8}  errors {}",
            self.workload.name(),
            self.clients,
            self.throughput_rps,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.ok,
            self.errors
        );
        if let Some(e) = &self.first_error {
            out.push_str(&format!(" (first: {e})"));
        }
        out
    }
}

/// Nearest-rank percentile of ascending `sorted`: the smallest sample with at
/// least `p`% of samples at or below it. `None` for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}
