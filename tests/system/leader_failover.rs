//! Leader stopped under a stream of writes: a new leader is elected, writes resume, every acknowledged put survives.

use std::time::Duration;

use crate::harness::Cluster;
use crate::http_node::HttpNode;
use crate::process::{check_acked, writers::Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_stop() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let old_leader = cluster.wait_leader().await?;
    let survivors: Vec<String> = cluster
        .running()
        .filter(|n| n.id != old_leader)
        .map(|n| n.addr().to_string())
        .collect();
    cluster
        .node(old_leader)
        .deploy("kv", cairn_host::plugins::example("kv").unwrap())
        .await?
        .expect(201)?;

    // Puts streamed through the two surviving nodes (forwarded to whoever leads);
    // failures during the election are expected and not recorded.
    let writers = Writers::spawn("k", 1, survivors, 100_000);
    let wait = Duration::from_secs(20);
    writers.wait_acked(20, wait).await?;
    cluster.node_mut(old_leader).stop().await?;
    let at_stop = writers.count();

    let new_leader = cluster.wait_leader().await?;
    assert_ne!(new_leader, old_leader);
    writers.wait_acked(at_stop + 20, wait).await?;
    let acked = writers.stop().await?;

    for n in cluster.running() {
        check_acked(&acked, &n.kv_scan("k").await?)?;
    }
    cluster.converge().await?;
    cluster.stop_all().await
}
