//! `/raft/…` bodies: random and mutated frames are refused with a 400; frames
//! that decode but that no correct peer sends (a snapshot that is not one, a
//! vote naming the receiver, entries that skip indexes) are refused too instead
//! of stopping Raft on the node.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use cairn_host::raft::codec;
use cairn_host::raft::network::SnapshotChunkHeader;
use cairn_host::raft::types::TypeConfig;
use http::Method;
use openraft::async_runtime::WatchReceiver;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{Entry, EntryPayload, Vote};
use serde_json::json;

use cairn_host::state::Command;

use super::{Fixture, Probe, damaged, run_cases};
use crate::harness::{Cluster, Node, Resp};

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
        let r = send_raft(node, "/raft/snapshot", frame).await?;
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

/// Sends a Raft frame to `node`'s peer port, signed with its cluster's secret.
async fn send_raft(node: &Node, path: &str, body: impl Into<Vec<u8>>) -> anyhow::Result<Resp> {
    crate::malformed::send(node.addr(), &Probe::new(Method::POST, path, body))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
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
        let r = send_raft(node, "/raft/append", codec::encode(req)?).await?;
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
    let r = send_raft(
        node,
        "/raft/snapshot",
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

/// A valid frame for each endpoint, from a pretend peer (node 2) at term 0: the
/// seed that random damage is applied to.
fn valid_frames() -> Vec<(&'static str, Vec<u8>)> {
    let vote = Vote::new_committed(0, 2);
    let entries = vec![
        blank(log_id(0, 2, 1)),
        Entry {
            log_id: log_id(0, 2, 2),
            payload: EntryPayload::Normal(Command::Apply {
                plugin: "kv".into(),
                input: br#"{"put":{"key":"forged","value":1}}"#.to_vec(),
                timestamp_ms: 1,
                idempotency_key: Some("k".into()),
            }),
        },
        Entry {
            log_id: log_id(0, 2, 3),
            payload: EntryPayload::Membership(openraft::Membership::new_with_defaults(
                vec![BTreeSet::from([1, 2])],
                [3],
            )),
        },
    ];
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(log_id(0, 2, 0)),
        entries,
        leader_commit: Some(log_id(0, 2, 1)),
    };
    let vote_req = VoteRequest::<TypeConfig> {
        vote: Vote::new(0, 2),
        last_log_id: Some(log_id(0, 2, 3)),
        leadership_transfer: false,
    };
    let chunk = SnapshotChunkHeader {
        vote,
        transfer_id: 5,
        offset: 0,
        done: false,
        meta: None,
    };
    vec![
        ("append", codec::encode(&append).expect("encodes")),
        ("vote", codec::encode(&vote_req).expect("encodes")),
        ("pre-vote", codec::encode(&vote_req).expect("encodes")),
        (
            "snapshot",
            codec::encode_with_tail(&chunk, b"snapshot bytes").expect("encodes"),
        ),
    ]
}

/// Whether `body` decodes as the frame `endpoint` takes.
fn decodes(endpoint: &str, body: &[u8]) -> bool {
    match endpoint {
        "append" => codec::decode::<AppendEntriesRequest<TypeConfig>>(body).is_ok(),
        "vote" | "pre-vote" => codec::decode::<VoteRequest<TypeConfig>>(body).is_ok(),
        _ => codec::decode_with_tail::<SnapshotChunkHeader>(Bytes::copy_from_slice(body)).is_ok(),
    }
}

/// Random bytes, junk behind a valid frame prefix, and damaged valid frames, to
/// every `/raft/…` route: a 400 with the envelope, nothing changes. (Damage that
/// still decodes is a well-formed frame; the forged-frame test covers those.)
#[test]
fn random_and_damaged_frames_are_400() {
    use proptest::prelude::*;

    let fx = Fixture::start(&|_| {});
    let frames = valid_frames();
    let damaged_frame =
        proptest::sample::select(frames).prop_flat_map(|(ep, frame)| (Just(ep), damaged(frame)));
    let endpoint = proptest::sample::select(vec!["append", "vote", "pre-vote", "snapshot"]);
    let random = (
        endpoint.clone(),
        proptest::collection::vec(any::<u8>(), 0..256),
    );
    let behind_prefix = (
        endpoint,
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..128),
    )
        .prop_map(|(ep, len, junk)| {
            let mut frame = b"CRN\x01".to_vec();
            frame.extend_from_slice(&len.to_le_bytes());
            frame.extend_from_slice(&junk);
            (ep, frame)
        });
    let strategy = prop_oneof![3 => damaged_frame, 1 => random, 1 => behind_prefix];
    run_cases("raft frames", 256, strategy, |(ep, body)| {
        prop_assume!(!decodes(ep, &body));
        let probe = Probe::new(Method::POST, format!("/raft/{ep}"), body);
        fx.check(&probe, |_, r| r.status == 400, |_, _| false)
    });
}

/// The one thing that makes a forged append impossible.
#[derive(Clone, Copy, Debug)]
enum Flaw {
    /// It names the receiving node as the sender.
    OwnId,
    /// Its vote is not committed.
    Uncommitted,
    /// Its first entry skips an index.
    Gap,
    /// Two entries share an index.
    Repeat,
    /// An entry's leader is older than the entry before it.
    OlderLeader,
    /// An entry's leader is newer than the sender.
    NewerThanSender,
    /// A membership entry without voters.
    EmptyMembership,
    /// A membership entry with a voter that has no node.
    VoterWithoutNode,
    /// prev_log_id below the committed entry, from a newer leader.
    PrevAgainstCommitted,
    /// leader_commit below the committed entry, from a newer leader.
    CommitAgainstCommitted,
}

/// A forged append from pretend peer `sender`, `term_ahead` terms past the node,
/// continuing its log from its committed entry with `entries` blanks and puts,
/// then spoiled by `flaw`.
#[derive(Clone, Debug)]
struct ForgedAppend {
    term_ahead: u64,
    sender: u64,
    entries: Vec<Option<u8>>,
    flaw: Flaw,
}

impl ForgedAppend {
    fn build(&self, m: &openraft::RaftMetrics<TypeConfig>) -> AppendEntriesRequest<TypeConfig> {
        let committed = m.local_committed.expect("a committed entry");
        let term = m.vote.leader_id.term + self.term_ahead;
        let sender = match self.flaw {
            Flaw::OwnId => 1,
            _ => self.sender,
        };
        let vote = match self.flaw {
            Flaw::Uncommitted => Vote::new(term, sender),
            _ => Vote::new_committed(term, sender),
        };
        let put = |n: u8| {
            EntryPayload::Normal(Command::Apply {
                plugin: "kv".into(),
                input: format!(r#"{{"put":{{"key":"forged{n}","value":{n}}}}}"#).into_bytes(),
                timestamp_ms: 1,
                idempotency_key: None,
            })
        };
        let mut entries: Vec<_> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, p)| Entry {
                log_id: log_id(term, sender, committed.index + 1 + i as u64),
                payload: p.map_or(EntryPayload::Blank, put),
            })
            .collect();
        if entries.is_empty() {
            entries.push(blank(log_id(term, sender, committed.index + 1)));
        }
        let mut prev_log_id = Some(committed);
        let mut leader_commit = Some(committed);
        let last = entries.len() - 1;
        match self.flaw {
            Flaw::OwnId | Flaw::Uncommitted => {}
            Flaw::Gap => entries[0].log_id.index += 2,
            Flaw::Repeat => {
                let again = entries[last].clone();
                entries.push(again);
            }
            Flaw::OlderLeader => {
                let older = LeaderId {
                    term: committed.leader_id.term.saturating_sub(1),
                    node_id: 0,
                };
                entries[last].log_id.leader_id = older;
            }
            Flaw::NewerThanSender => entries[last].log_id.leader_id.term = term + 1,
            Flaw::EmptyMembership => {
                entries[last].payload = EntryPayload::Membership(Default::default());
            }
            Flaw::VoterWithoutNode => {
                let nodes: BTreeMap<u64, cairn_host::raft::types::Node> = BTreeMap::new();
                let m = openraft::Membership::new(vec![BTreeSet::from([1])], nodes);
                entries[last].payload = EntryPayload::Membership(m.unwrap_or_default());
            }
            Flaw::PrevAgainstCommitted => {
                let below = committed.index.saturating_sub(1);
                prev_log_id = Some(log_id(committed.leader_id.term + 1, sender, below));
                for (i, e) in entries.iter_mut().enumerate() {
                    e.log_id.index = below + 1 + i as u64;
                }
            }
            Flaw::CommitAgainstCommitted => {
                leader_commit = Some(log_id(term, sender, committed.index.saturating_sub(1)));
            }
        }
        AppendEntriesRequest {
            vote,
            prev_log_id,
            entries,
            leader_commit,
        }
    }
}

fn forged_append() -> impl proptest::strategy::Strategy<Value = ForgedAppend> {
    use proptest::prelude::*;
    let flaw = proptest::sample::select(vec![
        Flaw::OwnId,
        Flaw::Uncommitted,
        Flaw::Gap,
        Flaw::Repeat,
        Flaw::OlderLeader,
        Flaw::NewerThanSender,
        Flaw::EmptyMembership,
        Flaw::VoterWithoutNode,
        Flaw::PrevAgainstCommitted,
        Flaw::CommitAgainstCommitted,
    ]);
    (
        1u64..4,
        2u64..5,
        proptest::collection::vec(proptest::option::of(any::<u8>()), 0..4),
        flaw,
    )
        .prop_map(|(term_ahead, sender, entries, flaw)| ForgedAppend {
            term_ahead,
            sender,
            entries,
            flaw,
        })
}

/// Appends that would move the node to a newer leader, each spoiled by one
/// flaw no correct leader has: every one is a 400 `impossible-raft-rpc`, the
/// node keeps its vote and its leadership, nothing changes, and it still writes.
///
/// Well-formed lies without such a flaw are accepted (Raft without peer
/// authentication cannot tell them from the truth), and a few consistent ones
/// still stop openraft; see the report.
#[test]
fn flawed_appends_are_refused_without_touching_raft() {
    let fx = Fixture::start(&|_| {});
    let start = fx
        .node()
        .handle()
        .service
        .raft()
        .metrics()
        .borrow_watched()
        .clone();
    run_cases("flawed appends", 128, forged_append(), |forged| {
        let m = fx
            .node()
            .handle()
            .service
            .raft()
            .metrics()
            .borrow_watched()
            .clone();
        let req = forged.build(&m);
        let probe = Probe::new(
            Method::POST,
            "/raft/append",
            codec::encode(&req).expect("encodes"),
        );
        fx.check(
            &probe,
            |_, r| r.status == 400 && r.code().as_deref() == Some("impossible-raft-rpc"),
            |_, _| false,
        )?;
        let now = fx
            .node()
            .handle()
            .service
            .raft()
            .metrics()
            .borrow_watched()
            .clone();
        proptest::prop_assert_eq!(now.vote, start.vote, "the node's vote moved");
        proptest::prop_assert_eq!(now.current_leader, Some(1));
        Ok(())
    });
    fx.block_on(still_writes(fx.node(), "after-flawed-appends"))
        .expect("raft still runs after the flawed appends");
}
