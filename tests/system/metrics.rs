//! `GET /metrics` exposes Raft and request counters in the Prometheus text format.

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
    node.apply("counter", &json!({"nonsense": {}}))
        .await?
        .expect(422)?;
    let resp = node.get("/metrics").await?.expect(200)?;
    let text = String::from_utf8_lossy(&resp.body).into_owned();
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
    cluster.stop_all().await
}
