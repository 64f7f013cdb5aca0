//! What a correct peer can send: the checks the `/raft/…` handlers run on a
//! decoded frame before openraft sees it.
//!
//! openraft trusts its peers. A frame that no correct leader produces (a vote
//! naming the receiver itself, entries that skip or repeat an index or claim a
//! leader newer than the sender, a membership without voters) trips one of its
//! internal assertions and stops Raft on the node for good, or in a release
//! build corrupts its view of the log. So a frame that decodes is not yet a
//! well-formed request: these checks refuse the impossible ones as bad requests.
//! They cannot make an unauthenticated peer honest: a consistent lie still
//! passes.

use openraft::alias::{LogIdOf, VoteOf};
use openraft::raft::AppendEntriesRequest;
use openraft::{EntryPayload, Membership};

use crate::raft::network::SnapshotChunkHeader;
use crate::raft::types::{Node, NodeId, TypeConfig};

/// Why a decoded frame cannot have come from a correct peer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImpossibleFrame(String);

fn impossible<T>(why: String) -> Result<T, ImpossibleFrame> {
    Err(ImpossibleFrame(why))
}

/// A leader's RPC carries its committed vote, and never reaches the leader itself.
fn check_leader_vote(vote: &VoteOf<TypeConfig>, me: NodeId) -> Result<(), ImpossibleFrame> {
    if vote.leader_id.node_id == me {
        return impossible(format!(
            "the frame claims to come from this node's own leadership ({vote})"
        ));
    }
    if !vote.committed {
        return impossible(format!("a leader's vote is committed, got {vote}"));
    }
    Ok(())
}

/// No log id can be newer than the leadership that sends it.
fn check_not_newer(
    what: &str,
    id: Option<&LogIdOf<TypeConfig>>,
    vote: &VoteOf<TypeConfig>,
) -> Result<(), ImpossibleFrame> {
    match id {
        Some(id) if id.leader_id > vote.leader_id => impossible(format!(
            "{what} {id} is newer than the sender's leadership {vote}"
        )),
        _ => Ok(()),
    }
}

/// A membership openraft can act on: voters in every config, an address for each.
fn check_membership(m: &Membership<NodeId, Node>) -> Result<(), ImpossibleFrame> {
    let configs = m.get_joint_config();
    if configs.is_empty() || configs.iter().any(|c| c.is_empty()) {
        return impossible(format!("membership {m} has a config without voters"));
    }
    if let Some(voter) = m.voter_ids().find(|v| m.get_node(v).is_none()) {
        return impossible(format!("membership {m} lists voter {voter} without a node"));
    }
    Ok(())
}

/// A correct leader's log holds every committed entry, and log ids never
/// decrease along a log: at an index up to this node's committed one, no log id
/// can be newer than the committed id, and at that index it is the committed id.
fn check_not_against_committed(
    what: &str,
    id: Option<&LogIdOf<TypeConfig>>,
    committed: Option<&LogIdOf<TypeConfig>>,
) -> Result<(), ImpossibleFrame> {
    let (Some(id), Some(committed)) = (id, committed) else {
        return Ok(());
    };
    let newer_below = id.index < committed.index && id.leader_id > committed.leader_id;
    let other_at = id.index == committed.index && id != committed;
    if newer_below || other_at {
        return impossible(format!(
            "{what} {id} contradicts the entry {committed} this node knows is committed"
        ));
    }
    Ok(())
}

/// Checks an append-entries request (and heartbeat) sent to node `me`, whose
/// log is committed up to `committed`.
pub fn check_append(
    req: &AppendEntriesRequest<TypeConfig>,
    me: NodeId,
    committed: Option<&LogIdOf<TypeConfig>>,
) -> Result<(), ImpossibleFrame> {
    check_leader_vote(&req.vote, me)?;
    check_not_newer("prev_log_id", req.prev_log_id.as_ref(), &req.vote)?;
    check_not_newer("leader_commit", req.leader_commit.as_ref(), &req.vote)?;
    check_not_against_committed("prev_log_id", req.prev_log_id.as_ref(), committed)?;
    check_not_against_committed("leader_commit", req.leader_commit.as_ref(), committed)?;
    // The entries continue the log right after prev_log_id, one index at a time,
    // and their leaders never go back.
    let mut prev = req.prev_log_id;
    for entry in &req.entries {
        let id = entry.log_id;
        let expected = match prev {
            None => Some(0),
            Some(p) => p.index.checked_add(1),
        };
        if Some(id.index) != expected {
            return impossible(format!(
                "entry {id} does not follow {}",
                prev.map_or("the start of the log".to_string(), |p| p.to_string())
            ));
        }
        if prev.is_some_and(|p| p.leader_id > id.leader_id) {
            return impossible(format!("entry {id} is older than the entry before it"));
        }
        check_not_newer("entry", Some(&id), &req.vote)?;
        check_not_against_committed("entry", Some(&id), committed)?;
        if let EntryPayload::Membership(m) = &entry.payload {
            check_membership(m)?;
        }
        prev = Some(id);
    }
    Ok(())
}

/// Checks one snapshot chunk's header sent to node `me`.
pub fn check_snapshot_chunk(
    header: &SnapshotChunkHeader,
    me: NodeId,
) -> Result<(), ImpossibleFrame> {
    check_leader_vote(&header.vote, me)?;
    let Some(meta) = &header.meta else {
        return Ok(());
    };
    check_not_newer("snapshot", meta.last_log_id.as_ref(), &header.vote)?;
    let membership_at = meta.last_membership.log_id().as_ref();
    if membership_at > meta.last_log_id.as_ref() {
        return impossible(format!(
            "the snapshot's membership (at {}) is newer than the snapshot",
            membership_at.map_or("-".to_string(), |l| l.to_string())
        ));
    }
    check_membership(meta.last_membership.membership())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::{Entry, LogId, Vote};

    use super::*;

    fn id(term: u64, index: u64) -> LogIdOf<TypeConfig> {
        LogId::new(LeaderId { term, node_id: 2 }, index)
    }

    fn blank(log_id: LogIdOf<TypeConfig>) -> openraft::alias::EntryOf<TypeConfig> {
        Entry {
            log_id,
            payload: EntryPayload::Blank,
        }
    }

    fn append(
        vote: VoteOf<TypeConfig>,
        prev: Option<LogIdOf<TypeConfig>>,
        entries: Vec<openraft::alias::EntryOf<TypeConfig>>,
    ) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote,
            prev_log_id: prev,
            entries,
            leader_commit: prev,
        }
    }

    #[test]
    fn what_a_leader_sends_passes() {
        let leader = Vote::new_committed(3, 2);
        let heartbeat = append(leader, Some(id(2, 7)), vec![]);
        check_append(&heartbeat, 1, None).unwrap();
        let from_start = append(leader, None, vec![blank(id(1, 0)), blank(id(3, 1))]);
        check_append(&from_start, 1, None).unwrap();
        let members = Membership::new_with_defaults(vec![BTreeSet::from([1, 2])], [3]);
        let entries = vec![
            blank(id(2, 8)),
            Entry {
                log_id: id(3, 9),
                payload: EntryPayload::Membership(members),
            },
        ];
        check_append(&append(leader, Some(id(2, 7)), entries), 1, Some(&id(2, 7))).unwrap();
    }

    #[test]
    fn nothing_may_contradict_the_committed_log() {
        let leader = Vote::new_committed(3, 2);
        let committed = id(2, 7);
        // Behind, at, and past the committed entry, consistent with it.
        for prev in [
            Some(id(1, 3)),
            Some(id(2, 5)),
            Some(committed),
            Some(id(3, 9)),
            None,
        ] {
            check_append(&append(leader, prev, vec![]), 1, Some(&committed))
                .unwrap_or_else(|e| panic!("{prev:?}: {e}"));
        }
        // A newer leader below the committed index; another id at it.
        for prev in [id(3, 5), id(1, 7), id(3, 7)] {
            assert!(
                check_append(&append(leader, Some(prev), vec![]), 1, Some(&committed)).is_err()
            );
        }
        let overwrite = append(leader, Some(id(2, 6)), vec![blank(id(3, 7))]);
        assert!(check_append(&overwrite, 1, Some(&committed)).is_err());
    }

    #[test]
    fn impossible_frames_are_refused() {
        let leader = Vote::new_committed(3, 2);
        let prev = Some(id(2, 7));
        let bad = [
            // Our own leadership, committed or not; an uncommitted vote.
            append(Vote::new_committed(3, 1), prev, vec![]),
            append(Vote::new(3, 2), prev, vec![]),
            // A gap, a repeat, and an index that cannot follow u64::MAX.
            append(leader, prev, vec![blank(id(3, 9))]),
            append(leader, prev, vec![blank(id(3, 8)), blank(id(3, 8))]),
            append(leader, Some(id(2, u64::MAX)), vec![blank(id(3, 0))]),
            // Entries whose leader goes back, or is newer than the sender.
            append(leader, prev, vec![blank(id(1, 8))]),
            append(leader, prev, vec![blank(id(4, 8))]),
            append(leader, Some(id(5, 7)), vec![]),
            // A membership without voters, or with a voter that has no node.
            append(
                leader,
                prev,
                vec![Entry {
                    log_id: id(3, 8),
                    payload: EntryPayload::Membership(Membership::default()),
                }],
            ),
        ];
        for req in &bad {
            assert!(check_append(req, 1, None).is_err(), "accepted {req:?}");
        }
    }
}
