//! Idempotency-Key on deploys (a retry gets the first answer; other code or
//! limits under the key are refused), and a removed plugin's keys go with it.

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_keys_and_removal() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader = cluster.wait_leader().await?;
    let follower = cluster.running().find(|n| n.id != leader).unwrap();
    let counter = cairn_host::plugins::example("counter").unwrap();
    let kv = cairn_host::plugins::example("kv").unwrap();
    let key = [("idempotency-key", "deploy-1")];

    let first = follower
        .deploy_with("counter", counter, "fuel_per_call=2000000", &key)
        .await?
        .expect(201)?;
    let retry = follower
        .deploy_with("counter", counter, "fuel_per_call=2000000", &key)
        .await?
        .expect(201)?;
    assert_eq!(retry.json(), first.json());
    assert_eq!(
        retry.header_u64("cairn-log-index"),
        first.header_u64("cairn-log-index")
    );
    for (wasm, params) in [
        (kv, "fuel_per_call=2000000"),
        (counter, "fuel_per_call=2000001"),
    ] {
        let r = cluster
            .node(leader)
            .deploy_with("counter", wasm, params, &key)
            .await?;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (409, Some("idempotency-key-reused"))
        );
    }
    // Registry reads answer from the node's applied state.
    follower
        .wait_applied(first.header_u64("cairn-log-index").expect("index"))
        .await?;
    let info = follower
        .get("/v1/plugins/counter")
        .await?
        .expect(200)?
        .json();
    assert_eq!(
        (&info["version"], &info["sha256"]),
        (&json!(1), &first.json()["sha256"])
    );

    // An apply key, then the plugin is removed: re-deployed, the key applies anew.
    let cmd = json!({"increment": {"by": 2}});
    let applied = follower
        .apply_with_key("counter", &cmd, "apply-1")
        .await?
        .expect(200)?;
    let idx = applied.header_u64("cairn-log-index").expect("index");
    follower
        .req(
            http::Method::DELETE,
            "/v1/plugins/counter",
            &[],
            bytes::Bytes::new(),
        )
        .await?
        .expect(200)?;
    let again = follower
        .deploy_with("counter", counter, "fuel_per_call=2000000", &key)
        .await?
        .expect(201)?;
    assert_eq!(again.json()["version"], json!(1));
    assert!(again.header_u64("cairn-log-index") > first.header_u64("cairn-log-index"));
    let anew = follower
        .apply_with_key("counter", &cmd, "apply-1")
        .await?
        .expect(200)?;
    assert_eq!(anew.json(), json!({"value": 2}));
    assert!(anew.header_u64("cairn-log-index").expect("index") > idx);
    cluster.converge().await?;
    cluster.stop_all().await
}
