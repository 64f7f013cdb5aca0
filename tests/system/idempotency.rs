//! Idempotency-Key: the same key twice applies once and both responses are identical.

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_idempotency_key_applies_once() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let node = &cluster.nodes[0];
    node.deploy("counter", cairn_host::plugins::example("counter").unwrap())
        .await?
        .expect(201)?;

    let cmd = json!({"increment": {"by": 5}});
    let first = node
        .apply_with_key("counter", &cmd, "req-1")
        .await?
        .expect(200)?;
    let second = node
        .apply_with_key("counter", &cmd, "req-1")
        .await?
        .expect(200)?;
    assert_eq!(first.json(), json!({"value": 5}));
    assert_eq!(second.body, first.body);
    let idx = first
        .header_u64("cairn-log-index")
        .expect("cairn-log-index");
    assert_eq!(second.header_u64("cairn-log-index"), Some(idx));
    let q = node
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 5}), "the retry was applied again");

    // A different key is a different request and does apply.
    let third = node
        .apply_with_key("counter", &cmd, "req-2")
        .await?
        .expect(200)?;
    assert_eq!(third.json(), json!({"value": 10}));
    assert!(third.header_u64("cairn-log-index").unwrap() > idx);
    // Without a key, the same body applies every time.
    let r = node.apply("counter", &cmd).await?.expect(200)?;
    assert_eq!(r.json(), json!({"value": 15}));
    cluster.stop_all().await
}
