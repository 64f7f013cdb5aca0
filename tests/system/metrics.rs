//! `GET /metrics` exposes Raft state, request counters, latency histograms and
//! per-plugin call counters in the OpenMetrics text format.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Cluster, eventually};

/// The value of an unlabelled or labelled sample line, e.g. `cairn_raft_term`.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_report_raft_state_and_requests() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let node = cluster.node(1);
    node.deploy(
        "counter",
        cairn_host::plugins::example("counter").expect("built in"),
    )
    .await?
    .expect(201)?;
    node.apply("counter", &json!({"increment": {"by": 1}}))
        .await?
        .expect(200)?;
    let failed = node
        .apply("counter", &json!({"nonsense": {}}))
        .await?
        .expect(422)?;
    let last = failed
        .header_u64("cairn-log-index")
        .expect("log index header");
    // openraft publishes its metrics a moment after the state machine answers
    // the client, so wait for the applied index to catch up before reading.
    let text = eventually(
        Duration::from_secs(10),
        "metrics show the last apply",
        || async {
            let resp = node.get("/metrics").await?.expect(200)?;
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            Ok(sample(&text, "cairn_raft_applied_index")
                .is_some_and(|applied| applied >= last)
                .then_some(text))
        },
    )
    .await?;
    assert_eq!(sample(&text, "cairn_raft_is_leader"), Some(1), "{text}");
    assert_eq!(sample(&text, "cairn_plugins"), Some(1), "{text}");
    assert_eq!(
        sample(&text, r#"cairn_applies_total{outcome="ok"}"#),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"cairn_applies_total{outcome="failed"}"#),
        Some(1),
        "{text}"
    );
    // Both applies ran the plugin once each on this (only) node, used fuel,
    // and the refused one is counted under its error code.
    let calls = r#"{plugin="counter",mode="apply"}"#;
    assert_eq!(
        sample(&text, &format!("cairn_plugin_calls_total{calls}")),
        Some(2),
        "{text}"
    );
    assert!(
        sample(&text, &format!("cairn_plugin_fuel_total{calls}")) > Some(1000),
        "{text}"
    );
    let failure_prefix = r#"cairn_plugin_call_failures_total{plugin="counter",mode="apply",code=""#;
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(failure_prefix))
        .collect();
    assert!(
        failures.len() == 1 && failures[0].ends_with("} 1"),
        "{text}"
    );
    // Latency histograms saw the work: two applies proposed and committed,
    // their log appends fsynced, their batches applied.
    for (series, at_least) in [
        ("cairn_apply_seconds_count", 2),
        ("cairn_raft_client_write_seconds_count", 3),
        ("cairn_log_flush_seconds_count", 3),
        ("cairn_apply_batch_seconds_count", 1),
    ] {
        assert!(sample(&text, series) >= Some(at_least), "{series}: {text}");
    }
    node.query("counter", "consistency=stale", &json!({"get": {}}))
        .await?
        .expect(200)?;
    let resp = node.get("/metrics").await?.expect(200)?;
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(
        sample(&text, "cairn_query_seconds_count"),
        Some(1),
        "{text}"
    );
    assert!(
        text.contains(r#"cairn_query_seconds_bucket{le="+Inf"} 1"#),
        "{text}"
    );
    cluster.stop_all().await
}
