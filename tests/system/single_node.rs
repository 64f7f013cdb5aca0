//! One node: deploy counter, apply, query, restart on the same data dir, state preserved.

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_state_survives_restart() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let wasm = cairn_host::plugins::example("counter").expect("counter embedded");

    let deployed = cluster.nodes[0]
        .deploy("counter", wasm)
        .await?
        .expect(201)?
        .json();
    assert_eq!(deployed["name"], "counter");
    assert!(deployed["log_index"].as_u64().unwrap() > 0);

    let r = cluster.nodes[0]
        .apply("counter", &json!({"increment": {"by": 5}}))
        .await?
        .expect(200)?;
    assert_eq!(r.json(), json!({"value": 5}));
    assert!(r.header_u64("cairn-log-index").is_some());
    let r = cluster.nodes[0]
        .apply("counter", &json!({"increment": {"by": 2}}))
        .await?
        .expect(200)?;
    assert_eq!(r.json(), json!({"value": 7}));

    let q = cluster.nodes[0]
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 7}));
    let before = cluster.nodes[0].state_hash();
    let http_hash = cluster.nodes[0]
        .get("/v1/state-hash")
        .await?
        .expect(200)?
        .json();
    assert_eq!(http_hash["hash"], before.1.as_str());
    assert_eq!(http_hash["applied_index"], before.0);

    cluster.nodes[0].restart().await?;
    cluster.wait_leader().await?;

    // The restarted node replays its log; the same entries give the same state.
    let node = &cluster.nodes[0];
    crate::harness::eventually(
        crate::harness::WAIT,
        "state replayed after restart",
        || async {
            let (idx, _) = node.state_hash();
            Ok((idx >= before.0).then_some(()))
        },
    )
    .await?;
    let q = node
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 7}));
    let stale = node
        .query("counter", "consistency=stale", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(stale.json(), json!({"value": 7}));
    // The hash covers plugin state only (not the applied index), so it must be identical
    // even though the new leader term appended a blank entry.
    let after = node.state_hash();
    assert!(
        after.0 >= before.0,
        "applied index went backwards: {before:?} -> {after:?}"
    );
    assert_eq!(after.1, before.1, "state hash changed across restart");

    let r = node
        .apply("counter", &json!({"increment": {"by": 1}}))
        .await?
        .expect(200)?;
    assert_eq!(r.json(), json!({"value": 8}));
    cluster.stop_all().await
}
