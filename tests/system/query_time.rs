//! Time in queries: a query sees the serving node's clock (it moves on with
//! no write), never below the stamp of the last applied command.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Cluster, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_sees_the_node_clock_not_the_last_stamp() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let node = cluster.node(cluster.wait_leader().await?);
    node.deploy("n", &cairn_host::plugins::built("nondet"))
        .await?
        .expect(201)?;
    let applied = node.apply("n", &json!({})).await?.expect(200)?.json();
    let stamp = applied["timestamp_ms"].as_u64().expect("stamp");
    let now = |v: serde_json::Value| v["now_ms"].as_u64().expect("now_ms");
    let first = now(node.query("n", "", &json!({})).await?.expect(200)?.json());
    assert!(
        first >= stamp,
        "a query saw {first}, before the last stamp {stamp}"
    );
    // With no write in between, a later query sees a later time.
    let later = eventually(Duration::from_secs(5), "the query clock moves", || async {
        let t = now(node.query("n", "", &json!({})).await?.expect(200)?.json());
        Ok((t > first).then_some(t))
    })
    .await?;
    assert!(later > stamp);
    cluster.stop_all().await
}
