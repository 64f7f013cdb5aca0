//! Separate processes: the leader is SIGKILLed under a stream of writes; a new leader takes
//! over, the killed process restarts on its data dir, every acknowledged put is there and all
//! three nodes converge to the same state hash.

use std::time::Duration;

use crate::http_node::HttpNode;
use crate::process::{ProcCluster, check_acked, writers::Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill9_of_leader_process() -> anyhow::Result<()> {
    let mut cluster = ProcCluster::start(3, &[]).await?;
    let old_leader = cluster.wait_leader().await?;
    cluster.deploy_kv(old_leader).await?;

    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    let writers = Writers::spawn("k", 4, addrs, 5_000);
    writers.wait_acked(200, Duration::from_secs(30)).await?;

    cluster.node_mut(old_leader).kill();
    let at_kill = writers.count();

    let new_leader = cluster.wait_leader().await?;
    assert_ne!(
        new_leader, old_leader,
        "the killed process cannot still lead"
    );
    writers
        .wait_acked(at_kill + 100, Duration::from_secs(30))
        .await?;
    let acked = writers.stop().await?;

    cluster.node_mut(old_leader).restart().await?;
    cluster.wait_leader().await?;

    // Read through the restarted node (forwarded to the leader, linearizable).
    let found = cluster.node(old_leader).kv_scan("k").await?;
    check_acked(&acked, &found)?;
    let (applied, hash) = cluster.converge().await?;
    eprintln!(
        "kill9_leader: killed leader {old_leader} after {at_kill} acks, new leader {new_leader}, \
         {} acknowledged in all, converged at {applied} {hash}",
        acked.len()
    );
    cluster.finish().await
}
