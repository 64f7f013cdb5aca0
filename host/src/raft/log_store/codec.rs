//! The log store's value types and their encodings: log ids, votes, and the versioned
//! envelope around each entry payload.
//!
//! * The first byte of every payload ([`PAYLOAD_FORMAT`]) versions the entry payload
//!   encoding, so the replicated command types can evolve without touching the WAL's
//!   framing (`wal::format`, which versions itself in every segment header).
//! * The `codeq` encodings of ids and votes, and [`StoreMeta`], are the layout of
//!   store format 1 (raft-log chunks, written by earlier builds), read only to convert
//!   such a log (`migrate`).

use std::cmp::Ordering;
use std::io;

use openraft::impls::leader_id_adv::LeaderId;
use raft_log::codeq::{Decode, Encode};

use crate::raft::types::TypeConfig;

/// openraft's log id for [`TypeConfig`].
pub(super) type RaftLogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// openraft's vote for [`TypeConfig`].
pub(super) type RaftVote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// openraft's entry payload for [`TypeConfig`].
pub(super) type RaftPayload = openraft::type_config::alias::EntryPayloadOf<TypeConfig>;

/// The layout version written by this code into [`StoreMeta`].
pub(super) const STORE_FORMAT_VERSION: u32 = 1;

/// Payload envelope version: one version byte, then bincode 2 (standard config, serde)
/// of openraft's `EntryPayload<Command, u64, Node>`. Version 2 changed the deploy
/// command (code inline or by sha256, an idempotency key); version 3 the
/// membership record (a member has a client and a peer address). Older logs are refused.
pub(super) const PAYLOAD_FORMAT: u8 = 3;

/// A log id as raft-log stores it: `(term, leader node id, index)`, 24 bytes big-endian.
///
/// The derived order (term, node id, index) is exactly openraft's `LogId` order for the
/// totally ordered `leader_id_adv::LeaderId`, which raft-log relies on for its
/// reversal/purge checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct WalLogId {
    pub(super) term: u64,
    pub(super) node_id: u64,
    pub(super) index: u64,
}

impl From<&RaftLogId> for WalLogId {
    fn from(id: &RaftLogId) -> Self {
        Self {
            term: id.leader_id.term,
            node_id: id.leader_id.node_id,
            index: id.index,
        }
    }
}

impl From<WalLogId> for RaftLogId {
    fn from(id: WalLogId) -> Self {
        RaftLogId {
            leader_id: LeaderId {
                term: id.term,
                node_id: id.node_id,
            },
            index: id.index,
        }
    }
}

impl Encode for WalLogId {
    fn encode<W: io::Write>(&self, mut w: W) -> io::Result<usize> {
        Ok(self.term.encode(&mut w)? + self.node_id.encode(&mut w)? + self.index.encode(&mut w)?)
    }
}

impl Decode for WalLogId {
    fn decode<R: io::Read>(mut r: R) -> io::Result<Self> {
        Ok(Self {
            term: u64::decode(&mut r)?,
            node_id: u64::decode(&mut r)?,
            index: u64::decode(&mut r)?,
        })
    }
}

/// A vote as raft-log stores it: `(term, node id, committed)`, 17 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WalVote {
    pub(super) term: u64,
    pub(super) node_id: u64,
    pub(super) committed: bool,
}

impl From<&RaftVote> for WalVote {
    fn from(v: &RaftVote) -> Self {
        Self {
            term: v.leader_id.term,
            node_id: v.leader_id.node_id,
            committed: v.committed,
        }
    }
}

impl From<WalVote> for RaftVote {
    fn from(v: WalVote) -> Self {
        RaftVote {
            leader_id: LeaderId {
                term: v.term,
                node_id: v.node_id,
            },
            committed: v.committed,
        }
    }
}

/// raft-log refuses a vote that is not `>=` the stored one; delegating to openraft's
/// own order makes that check mean exactly what openraft means by "a newer vote".
impl PartialOrd for WalVote {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        RaftVote::from(*self).partial_cmp(&RaftVote::from(*other))
    }
}

impl Encode for WalVote {
    fn encode<W: io::Write>(&self, mut w: W) -> io::Result<usize> {
        Ok(self.term.encode(&mut w)?
            + self.node_id.encode(&mut w)?
            + self.committed.encode(&mut w)?)
    }
}

impl Decode for WalVote {
    fn decode<R: io::Read>(mut r: R) -> io::Result<Self> {
        Ok(Self {
            term: u64::decode(&mut r)?,
            node_id: u64::decode(&mut r)?,
            committed: bool::decode(&mut r)?,
        })
    }
}

/// The store's format marker, kept in raft-log's `user_data` slot.
///
/// Because raft-log copies `user_data` into the checkpoint that starts every chunk, the
/// marker survives purging old chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StoreMeta {
    pub(super) format_version: u32,
}

impl Encode for StoreMeta {
    fn encode<W: io::Write>(&self, w: W) -> io::Result<usize> {
        self.format_version.encode(w)
    }
}

impl Decode for StoreMeta {
    fn decode<R: io::Read>(r: R) -> io::Result<Self> {
        Ok(Self {
            format_version: u32::decode(r)?,
        })
    }
}

/// Encodes one entry payload into its versioned envelope.
pub(super) fn encode_payload(payload: &RaftPayload) -> io::Result<Vec<u8>> {
    // Sized first: growing from one byte reallocated several times per entry.
    let size = crate::raft::codec::encoded_len(payload)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("log payload: {e}")))?;
    let mut buf = Vec::with_capacity(1 + size as usize);
    buf.push(PAYLOAD_FORMAT);
    bincode::serde::encode_into_std_write(payload, &mut buf, bincode::config::standard()).map_err(
        |e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("encode log payload: {e}"),
            )
        },
    )?;
    // raft-log length-prefixes a payload with a u32 and would silently wrap a bigger one.
    if buf.len() > u32::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "log payload of {} bytes exceeds the 4 GiB record limit",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

/// Decodes a versioned payload envelope written by [`encode_payload`].
pub(super) fn decode_payload(bytes: &[u8]) -> io::Result<RaftPayload> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
    let Some((&version, body)) = bytes.split_first() else {
        return Err(invalid("empty log payload".to_string()));
    };
    match version {
        PAYLOAD_FORMAT => {
            let (payload, used) = crate::bounded_decode::decode_from_slice(body)
                .map_err(|e| invalid(format!("decode log payload: {e}")))?;
            // Trailing bytes mean the envelope is not what we wrote: refuse, don't guess.
            if used != body.len() {
                return Err(invalid(format!(
                    "log payload has {} trailing bytes",
                    body.len() - used
                )));
            }
            Ok(payload)
        }
        other => Err(invalid(format!(
            "unsupported log payload format version {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    #[test]
    fn log_id_and_vote_roundtrip() {
        let id = WalLogId {
            term: 3,
            node_id: 7,
            index: 42,
        };
        let mut buf = Vec::new();
        assert_eq!(24, id.encode(&mut buf).unwrap());
        assert_eq!(id, WalLogId::decode(&buf[..]).unwrap());
        assert_eq!(id, WalLogId::from(&RaftLogId::from(id)));

        let v = WalVote {
            term: 5,
            node_id: 2,
            committed: true,
        };
        let mut buf = Vec::new();
        assert_eq!(17, v.encode(&mut buf).unwrap());
        assert_eq!(v, WalVote::decode(&buf[..]).unwrap());
    }

    #[test]
    fn vote_order_follows_openraft() {
        let a = WalVote {
            term: 1,
            node_id: 1,
            committed: false,
        };
        let b = WalVote {
            term: 1,
            node_id: 1,
            committed: true,
        };
        let c = WalVote {
            term: 2,
            node_id: 0,
            committed: false,
        };
        assert!(a < b && b < c);
    }

    #[test]
    fn payload_envelope_roundtrip_and_rejects_unknown_version() {
        let payload = RaftPayload::Normal(Command::Remove { name: "p".into() });
        let bytes = encode_payload(&payload).unwrap();
        assert_eq!(PAYLOAD_FORMAT, bytes[0]);
        assert_eq!(payload, decode_payload(&bytes).unwrap());

        // Older versions (other deploys, members with one address) and unknown ones are refused.
        for version in [1, 2, PAYLOAD_FORMAT + 1] {
            let mut other = bytes.clone();
            other[0] = version;
            assert_eq!(
                io::ErrorKind::InvalidData,
                decode_payload(&other).unwrap_err().kind()
            );
        }
        assert!(decode_payload(&[]).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode_payload(&trailing).is_err());
    }
}
