//! An idempotent retry after the leader is stopped: the new leader answers
//! the first attempt's result and index, and does not apply it again.

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_on_a_new_leader_gets_the_first_answer() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let old_leader = cluster.wait_leader().await?;
    let leader = cluster.node(old_leader);
    leader
        .deploy("counter", cairn_host::plugins::example("counter").unwrap())
        .await?
        .expect(201)?;
    let cmd = json!({"increment": {"by": 3}});
    let first = leader
        .apply_with_key("counter", &cmd, "before-failover")
        .await?
        .expect(200)?;
    let idx = first.header_u64("cairn-log-index").expect("index");
    cluster.converge().await?;

    cluster.node_mut(old_leader).stop().await?;
    let new_leader = cluster.wait_leader().await?;
    assert_ne!(new_leader, old_leader);
    let node = cluster.node(new_leader);
    let retry = node
        .apply_with_key("counter", &cmd, "before-failover")
        .await?
        .expect(200)?;
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header_u64("cairn-log-index"), Some(idx));
    let other = node
        .apply_with_key(
            "counter",
            &json!({"increment": {"by": 4}}),
            "before-failover",
        )
        .await?;
    assert_eq!(
        (other.status, other.code().as_deref()),
        (409, Some("idempotency-key-reused"))
    );
    let q = node
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 3}), "the retry applied again");
    cluster.converge().await?;
    cluster.stop_all().await
}
