//! `/raft/…` bodies: random and mutated frames are refused with a 400; frames
//! that decode but that no correct peer sends (a snapshot that is not one, a
//! vote naming the receiver, entries that skip indexes) are refused too instead
//! of stopping Raft on the node.

use bytes::Bytes;
use cairn_host::raft::codec;
use cairn_host::raft::network::SnapshotChunkHeader;
use cairn_host::raft::types::TypeConfig;
use http::Method;
use openraft::async_runtime::WatchReceiver;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::AppendEntriesRequest;
use openraft::{Entry, EntryPayload, Vote};
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

fn log_id(term: u64, node_id: u64, index: u64) -> openraft::LogId<LeaderId<u64, u64>> {
    openraft::LogId::new(LeaderId { term, node_id }, index)
}

fn blank(log_id: openraft::LogId<LeaderId<u64, u64>>) -> openraft::alias::EntryOf<TypeConfig> {
    Entry {
        log_id,
        payload: EntryPayload::Blank,
    }
}

/// Frames that decode but that no correct leader sends. Each of these stopped
/// Raft on the receiving node (an openraft assertion or an empty membership);
/// now each is a 400 and the node goes on leading and writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_raft_frames_are_refused_and_raft_keeps_running() -> anyhow::Result<()> {
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
    let own = m.vote;
    let term = own.leader_id.term;
    let last = m.last_log_index.expect("a log");
    let prev = Some(log_id(term, 1, last));
    let other = Vote::new_committed(term + 5, 2);
    let append = |vote, entries| AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: prev,
        entries,
        leader_commit: None,
    };
    let appends = [
        ("this node's own vote", append(own, vec![])),
        (
            "this node's id at a higher term",
            append(Vote::new_committed(term + 5, 1), vec![]),
        ),
        (
            "an uncommitted vote",
            append(Vote::new(term + 5, 2), vec![]),
        ),
        (
            "a gap after prev_log_id",
            append(other, vec![blank(log_id(term + 5, 2, last + 5))]),
        ),
        (
            "indexes going back",
            append(
                other,
                vec![
                    blank(log_id(term + 5, 2, last + 1)),
                    blank(log_id(term + 5, 2, last)),
                ],
            ),
        ),
        (
            "an entry from a newer leader than the sender",
            append(other, vec![blank(log_id(term + 9, 3, last + 1))]),
        ),
        (
            "a membership without voters",
            append(
                other,
                vec![Entry {
                    log_id: log_id(term + 5, 2, last + 1),
                    payload: EntryPayload::Membership(Default::default()),
                }],
            ),
        ),
    ];
    for (what, req) in &appends {
        let r = node
            .req(Method::POST, "/raft/append", &[], codec::encode(req)?)
            .await?;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("impossible-raft-rpc")),
            "{what}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // A whole snapshot "from" this node's own leadership.
    let snapshot = node.handle().service.raft().get_snapshot().await?;
    let header = SnapshotChunkHeader {
        vote: own,
        transfer_id: 9,
        offset: 0,
        done: true,
        meta: Some(openraft::SnapshotMeta {
            last_log_id: prev,
            last_membership: m.membership_config.as_ref().clone(),
        }),
    };
    let data = snapshot
        .map(|s| s.snapshot.into_inner())
        .unwrap_or_default();
    let r = node
        .req(
            Method::POST,
            "/raft/snapshot",
            &[],
            codec::encode_with_tail(&header, &data)?,
        )
        .await?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (400, Some("impossible-raft-rpc")),
        "own snapshot: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let after = node
        .handle()
        .service
        .raft()
        .metrics()
        .borrow_watched()
        .clone();
    assert_eq!(after.vote, own, "the node's vote moved");
    assert_eq!(node.state_hash().1, before.1);
    still_writes(node, "after").await?;
    cluster.stop_all().await
}
