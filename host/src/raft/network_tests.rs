//! End-to-end tests of the Raft network: real openraft nodes talking over loopback HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::BasicNode;
use openraft::async_runtime::WatchReceiver;

use crate::raft::test_support::{TestNode, start_node};
use crate::state::Command;

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn cmd(i: u64) -> Command {
    Command::Remove {
        name: format!("entry-{i:04}"),
    }
}

async fn wait_applied(node: &TestNode, index: u64) {
    node.raft
        .wait(WAIT)
        .applied_index_at_least(Some(index), format!("node {} applies {index}", node.id))
        .await
        .expect("applied in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate_over_http() {
    let nodes = vec![
        start_node(1, |_| {}).await,
        start_node(2, |_| {}).await,
        start_node(3, |_| {}).await,
    ];
    let members: BTreeMap<u64, BasicNode> = nodes
        .iter()
        .map(|n| {
            (
                n.id,
                BasicNode {
                    addr: n.addr.clone(),
                },
            )
        })
        .collect();
    nodes[0].raft.initialize(members).await.expect("initialize");

    // Every node must learn the same leader through votes and heartbeats over HTTP.
    let leader_id = nodes[0]
        .raft
        .wait(WAIT)
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .expect("leader elected")
        .current_leader
        .expect("leader");
    for n in &nodes {
        n.raft
            .wait(WAIT)
            .current_leader(leader_id, format!("node {} sees leader", n.id))
            .await
            .expect("agrees on leader");
    }
    let leader = nodes
        .iter()
        .find(|n| n.id == leader_id)
        .expect("leader node");

    let mut last_index = 0;
    for i in 0..10 {
        let resp = leader
            .raft
            .client_write(cmd(i))
            .await
            .expect("write commits");
        last_index = resp.log_id.index;
    }
    for n in &nodes {
        wait_applied(n, last_index).await;
    }
    let expected: Vec<String> = (0..10).map(|i| cmd(i).to_string()).collect();
    for n in &nodes {
        assert_eq!(n.state().applied, expected, "node {} state", n.id);
        assert_eq!(n.state().last_applied, nodes[0].state().last_applied);
    }
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_learner_receives_a_snapshot_in_many_chunks() {
    // Tiny chunks force a multi-request transfer; keeping no logs behind the
    // snapshot forces the leader to send it instead of replaying entries.
    let small = |c: &mut crate::config::Config| {
        c.snapshot_chunk_bytes = 64;
        c.max_in_snapshot_log_to_keep = 0;
        c.purge_batch_size = 1;
    };
    let leader = start_node(1, small).await;
    let learner = start_node(2, small).await;
    let members: BTreeMap<u64, BasicNode> = [(
        1,
        BasicNode {
            addr: leader.addr.clone(),
        },
    )]
    .into();
    leader.raft.initialize(members).await.expect("initialize");
    leader
        .raft
        .wait(WAIT)
        .current_leader(1, "self-elected")
        .await
        .expect("leader");

    let mut last_index = 0;
    for i in 0..40 {
        last_index = leader
            .raft
            .client_write(cmd(i))
            .await
            .expect("write")
            .log_id
            .index;
    }
    leader
        .raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    leader
        .raft
        .wait(WAIT)
        .metrics(
            |m| m.snapshot.as_ref().is_some_and(|s| s.index >= last_index),
            "snapshot built",
        )
        .await
        .expect("snapshot");
    leader
        .raft
        .trigger()
        .purge_log(last_index)
        .await
        .expect("purge");
    leader
        .raft
        .wait(WAIT)
        .metrics(
            |m| m.purged.as_ref().is_some_and(|p| p.index >= last_index),
            "log purged",
        )
        .await
        .expect("purged");

    leader
        .raft
        .add_learner(
            2,
            BasicNode {
                addr: learner.addr.clone(),
            },
            true,
        )
        .await
        .expect("learner added");
    wait_applied(&learner, last_index).await;

    assert_eq!(learner.state().applied, leader.state().applied);
    assert_eq!(
        learner
            .sm
            .installs
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "installed via snapshot"
    );
    let snapshot_bytes = serde_json::to_vec(&leader.state()).unwrap().len() as u64;
    let chunks = learner.api.raft().snapshot_chunks_received();
    assert!(
        chunks >= snapshot_bytes / 64,
        "{chunks} chunks for {snapshot_bytes} bytes"
    );
    // The follower keeps replicating normally after the snapshot.
    let next = leader
        .raft
        .client_write(cmd(99))
        .await
        .expect("write after snapshot")
        .log_id
        .index;
    wait_applied(&learner, next).await;
    // Counted only once install_full_snapshot returned, which precedes further replication.
    assert_eq!(learner.api.raft().snapshots_installed(), 1);
    assert_eq!(
        learner
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .as_ref()
            .map(|l| l.index),
        Some(next)
    );

    learner.stop().await;
    leader.stop().await;
}
