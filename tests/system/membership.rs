//! Separate processes: a 4th process joins with `--join`, node 2 is removed and stopped while
//! the cluster keeps taking writes; then every remaining process is stopped (SIGTERM) and
//! restarted on its data dir, and they converge with every acknowledged put present.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::http_node::HttpNode;
use crate::process::{ProcCluster, check_acked, writers::Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_remove_and_full_restart_keep_every_acknowledged_put() -> anyhow::Result<()> {
    let mut cluster = ProcCluster::start(3, &[]).await?;
    let leader = cluster.wait_leader().await?;
    cluster.deploy_kv(leader).await?;

    // A 4th process joins through node 1 and becomes a voter everywhere.
    cluster.add(4, Vec::new()).await?;
    cluster.wait_voter_ids(&[1, 2, 3, 4]).await?;
    let c = cluster.node(1).cluster_json().await?;
    let voters = c["members"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "voter").count());
    assert_eq!(voters, 4, "node 1 lists {c}");

    let mut acked = BTreeMap::new();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    let writers = Writers::spawn("a", 4, addrs, 1_000);
    writers.wait_acked(200, Duration::from_secs(30)).await?;
    acked.extend(writers.stop().await?);

    // Remove node 2 (whatever its role) and stop its process.
    cluster
        .node(1)
        .req(Method::DELETE, "/v1/cluster/members/2", Bytes::new())
        .await?
        .expect(200)?;
    cluster.node_mut(2).stop().await?;
    cluster.wait_voter_ids(&[1, 3, 4]).await?;
    cluster.wait_leader().await?;
    let c = cluster.node(1).cluster_json().await?;
    let ids: Vec<u64> = c["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default();
    assert!(
        !ids.contains(&2),
        "node 2 is still a member (learner?): {c}"
    );

    // The three remaining voters keep serving writes.
    let addrs: Vec<String> = [1, 3, 4]
        .iter()
        .map(|&id| cluster.node(id).addr())
        .collect();
    let writers = Writers::spawn("b", 4, addrs, 1_000);
    writers.wait_acked(200, Duration::from_secs(30)).await?;
    acked.extend(writers.stop().await?);

    // Full stop and restart of every remaining process on its data dir.
    for id in [1, 3, 4] {
        cluster.node_mut(id).stop().await?;
    }
    for id in [1, 3, 4] {
        cluster.node_mut(id).restart().await?;
    }
    cluster.wait_leader().await?;
    cluster.wait_voter_ids(&[1, 3, 4]).await?;

    let mut found = cluster.node(4).kv_scan("a").await?;
    found.extend(cluster.node(3).kv_scan("b").await?);
    check_acked(&acked, &found)?;
    let (applied, hash) = cluster.converge().await?;
    eprintln!(
        "membership: {} acknowledged, converged after full restart at {applied} {hash}",
        acked.len()
    );
    cluster.finish().await
}
