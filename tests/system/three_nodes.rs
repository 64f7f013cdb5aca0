//! Three nodes: deploy and apply through a follower, all converge; linearizable and min_index reads on a follower see the write.

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_converge_and_followers_read_writes() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader = cluster.wait_leader().await?;
    let followers: Vec<u64> = cluster
        .running()
        .map(|n| n.id)
        .filter(|id| *id != leader)
        .collect();
    assert_eq!(followers.len(), 2);
    let (f1, f2) = (cluster.node(followers[0]), cluster.node(followers[1]));

    // Writes through a follower are forwarded to the leader.
    let wasm = cairn_host::plugins::example("kv").expect("kv embedded");
    f1.deploy("kv", wasm).await?.expect(201)?;
    let counter = cairn_host::plugins::example("counter").expect("counter embedded");
    f2.deploy("counter", counter).await?.expect(201)?;
    let r = f1
        .apply("kv", &json!({"put": {"key": "a", "value": 1}}))
        .await?
        .expect(200)?;
    let put_index = r
        .header_u64("cairn-log-index")
        .expect("cairn-log-index header");
    f2.apply("counter", &json!({"increment": {"by": 3}}))
        .await?
        .expect(200)?;

    // Linearizable read through the *other* follower sees the write made through f1.
    let q = f2
        .query(
            "kv",
            "consistency=linearizable",
            &json!({"get": {"key": "a"}}),
        )
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 1}));
    // Read-your-write on a follower with min_index (stale read waits for that index).
    let r = f1
        .apply("kv", &json!({"cas": {"key": "a", "expected": 1, "new": 2}}))
        .await?
        .expect(200)?;
    let cas_index = r
        .header_u64("cairn-log-index")
        .expect("cairn-log-index header");
    assert!(cas_index > put_index);
    let q = f2
        .query(
            "kv",
            &format!("consistency=stale&min_index={cas_index}"),
            &json!({"get": {"key": "a"}}),
        )
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 2}));
    assert!(q.header_u64("cairn-applied-index").unwrap() >= cas_index);
    let q = f1
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 3}));

    // A failed cas is a 422 with the plugin's code, through a follower too.
    let r = f2
        .apply("kv", &json!({"cas": {"key": "a", "expected": 1, "new": 5}}))
        .await?;
    assert_eq!(r.status, 422, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.code().as_deref(), Some("cas-mismatch"));

    // Every node converges to the same applied index and state hash, also as seen over HTTP.
    let (index, hash) = cluster.converge().await?;
    assert!(index >= cas_index);
    for n in cluster.running() {
        let h = n.get("/v1/state-hash").await?.expect(200)?.json();
        assert_eq!(h["hash"], hash.as_str(), "node {}", n.id);
    }
    cluster.stop_all().await
}
