//! `/raft/…` bodies: random and mutated frames are refused with a 400; frames
//! that decode but that no correct peer sends (a snapshot that is not one, a
//! vote naming the receiver, entries that skip indexes) are refused too instead
//! of stopping Raft on the node.

use bytes::Bytes;
use cairn_host::raft::codec;
use cairn_host::raft::network::SnapshotChunkHeader;
use http::Method;
use openraft::Vote;
use openraft::async_runtime::WatchReceiver;
use serde_json::json;

use crate::harness::{Cluster, Node};

/// The node still has a working Raft: a write commits and is applied.
async fn still_writes(node: &Node, key: &str) -> anyhow::Result<()> {
    let r = node
        .apply("kv", &json!({"put": {"key": key, "value": 1}}))
        .await?
        .expect(200)?;
    anyhow::ensure!(r.header_u64("cairn-log-index").is_some(), "no log index");
    Ok(())
}

/// A snapshot upload from a (pretend) newer leader whose data is not a snapshot,
/// or is a real snapshot offered at another position: refused as a bad request.
/// Before, openraft accepted the upload and the state machine's install failed,
/// which openraft treats as a storage error: Raft stopped on the node for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstallable_snapshot_upload_is_refused_and_raft_keeps_running() -> anyhow::Result<()>
{
    let mut cluster = Cluster::start(1).await?;
    let node = &cluster.nodes[0];
    node.deploy("kv", cairn_host::plugins::example("kv").expect("kv"))
        .await?
        .expect(201)?;
    still_writes(node, "before").await?;
    let before = node.state_hash();
    let m = node
        .handle()
        .service
        .raft()
        .metrics()
        .borrow_watched()
        .clone();
    let committed = m.local_committed.expect("committed");
    let mut last = committed;
    last.index += 1000;
    let newer_leader = Vote::new_committed(m.vote.leader_id.term + 5, 2);
    let meta = openraft::SnapshotMeta {
        last_log_id: Some(last),
        last_membership: m.membership_config.as_ref().clone(),
    };
    // A real snapshot of this node, to be offered at a position it does not describe.
    let raft = node.handle().service.raft();
    raft.trigger().snapshot().await?;
    let snapshot = crate::harness::eventually(crate::harness::WAIT, "a snapshot", || async {
        Ok(raft.get_snapshot().await?)
    })
    .await?;
    let real = snapshot.snapshot.into_inner();
    let mut corrupt = real.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 1;
    for (transfer_id, data) in [
        (1u64, b"this is not a snapshot".to_vec()),
        (2, corrupt),
        (3, real),
    ] {
        let header = SnapshotChunkHeader {
            vote: newer_leader,
            transfer_id,
            offset: 0,
            done: true,
            meta: Some(meta.clone()),
        };
        let frame = codec::encode_with_tail(&header, &data)?;
        let r = node
            .req(Method::POST, "/raft/snapshot", &[], Bytes::from(frame))
            .await?;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("invalid-snapshot")),
            "transfer {transfer_id}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(node.state_hash().1, before.1);
    still_writes(node, "after").await?;
    cluster.stop_all().await
}
