//! Separate processes with a small snapshot policy: a node stopped (SIGTERM) while the others
//! take ≥ 1500 puts is behind the purged log when it restarts, so it must install a snapshot
//! from the leader; it then converges to the same state hash with every acknowledged put.

use std::time::Duration;

use crate::http_node::HttpNode;
use crate::process::{ProcCluster, check_acked, writers::Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopped_node_catches_up_by_snapshot_after_log_purge() -> anyhow::Result<()> {
    let mut cluster = ProcCluster::start(
        3,
        &[
            "--snapshot-logs-since-last",
            "200",
            "--max-in-snapshot-log-to-keep",
            "50",
        ],
    )
    .await?;
    let leader = cluster.wait_leader().await?;
    cluster.deploy_kv(leader).await?;

    cluster.node_mut(3).stop().await?;
    let log_before = cluster.node(3).log().len();
    assert!(
        !cluster.node(3).log().contains("installed snapshot"),
        "node 3 installed a snapshot before it fell behind"
    );
    cluster.wait_leader().await?;

    let addrs: Vec<String> = [1, 2].iter().map(|&id| cluster.node(id).addr()).collect();
    let writers = Writers::spawn("s", 8, addrs, 400);
    writers.wait_acked(1500, Duration::from_secs(40)).await?;
    let acked = writers.stop().await?;
    // Snapshots and the purge behind them run in the background: wait until
    // the leader's log no longer holds what node 3 needs, so it must take a snapshot.
    let leader = cluster.wait_leader().await?;
    let stopped_at = {
        let hashes = cluster.node(leader).get("/v1/state-hash").await?.json();
        hashes["applied_index"].as_u64().unwrap_or(0)
    };
    crate::harness::eventually(
        Duration::from_secs(30),
        "the leader to purge its log past node 3's position",
        || async {
            let text =
                String::from_utf8(cluster.node(leader).get("/metrics").await?.body.to_vec())?;
            let purged = text
                .lines()
                .find(|l| l.starts_with("cairn_raft_purged_index"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            Ok((purged > stopped_at.min(1000)).then_some(()))
        },
    )
    .await?;

    cluster.node_mut(3).restart().await?;
    let (applied, _) = cluster.converge().await?;
    assert!(
        applied >= 1500,
        "applied index {applied} below the puts made"
    );
    let new_log = cluster.node(3).log()[log_before..].to_string();
    assert!(
        new_log.contains("installed snapshot"),
        "node 3 caught up without installing a snapshot (log purge expected)"
    );

    // Node 3 serves every acknowledged put.
    let found = cluster.node(3).kv_scan("s").await?;
    check_acked(&acked, &found)?;
    let (applied, hash) = cluster.converge().await?;
    let installed = new_log
        .lines()
        .find(|l| l.contains("installed snapshot"))
        .unwrap_or_default();
    eprintln!(
        "snapshot_rejoin: {} acknowledged, converged at {applied} {hash}; node 3: {installed}",
        acked.len()
    );
    cluster.finish().await
}
