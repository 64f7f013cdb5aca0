//! Property tests of the Raft frame codec: for every frame a node decodes (the
//! requests `/raft/…` receives, the replies the sending side reads back),
//! arbitrary bytes are refused, mutated valid frames never panic, and valid
//! values round-trip. The strategies for openraft values live here and are
//! shared with the log-store payload tests.

use std::fmt::Debug;

use bytes::Bytes;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{self, CodecError, MAGIC, PREFIX_BYTES, VERSION};
use super::network::{SnapshotChunkHeader, SnapshotChunkReply};
use super::types::TypeConfig;
use crate::state::Command;
use crate::test_props::{ByteMutation, byte_mutation, bytes_up_to, damage};

type RaftLogId = openraft::alias::LogIdOf<TypeConfig>;
type RaftVote = openraft::alias::VoteOf<TypeConfig>;
type RaftEntry = openraft::alias::EntryOf<TypeConfig>;
type RaftMembership = Membership<u64, crate::raft::types::Node>;
type RaftPayload = openraft::alias::EntryPayloadOf<TypeConfig>;

pub(crate) use crate::test_props::config;

/// A number that is usually small (realistic) and sometimes anything (edge cases).
fn num() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..8, 1 => any::<u64>()]
}

fn log_id() -> impl Strategy<Value = RaftLogId> {
    (num(), num(), num())
        .prop_map(|(term, node_id, index)| LogId::new(LeaderId { term, node_id }, index))
}

fn vote() -> impl Strategy<Value = RaftVote> {
    (num(), num(), any::<bool>()).prop_map(|(term, node, committed)| {
        if committed {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        }
    })
}

/// Any string, including non-ASCII and control characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9_-]{0,12}", 1 => any::<String>()]
}

/// Every replicated command shape.
pub(crate) fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (
            text(),
            bytes_up_to(64),
            num(),
            num(),
            num(),
            proptest::option::of(text())
        )
            .prop_map(
                |(name, wasm, fuel_per_call, memory_limit_bytes, timestamp_ms, idempotency_key)| {
                    Command::Deploy {
                        name,
                        code: crate::state::DeployCode::Inline(wasm),
                        fuel_per_call,
                        memory_limit_bytes,
                        timestamp_ms,
                        idempotency_key,
                    }
                }
            ),
        (text(), "[0-9a-f]{64}").prop_map(|(name, sha256)| Command::Deploy {
            name,
            code: crate::state::DeployCode::Stored { sha256 },
            fuel_per_call: 1,
            memory_limit_bytes: 1,
            timestamp_ms: 1,
            idempotency_key: None,
        }),
        (
            text(),
            proptest::option::of(num()),
            proptest::option::of(num())
        )
            .prop_map(
                |(name, fuel_per_call, memory_limit_bytes)| Command::SetLimits {
                    name,
                    fuel_per_call,
                    memory_limit_bytes,
                }
            ),
        text().prop_map(|name| Command::Remove { name }),
        (text(), bytes_up_to(64), num(), proptest::option::of(text())).prop_map(
            |(plugin, input, timestamp_ms, idempotency_key)| Command::Apply {
                plugin,
                input,
                timestamp_ms,
                idempotency_key,
            }
        ),
    ]
}

/// Memberships as a correct cluster makes them: voters (possibly joint) plus learners.
fn membership() -> impl Strategy<Value = RaftMembership> {
    prop_oneof![
        (
            vec(btree_set(0u64..8, 1..4), 1..3),
            btree_set(0u64..8, 0..3)
        )
            .prop_map(|(configs, learners)| Membership::new_with_defaults(configs, learners)),
        btree_map(0u64..8, text(), 1..4).prop_map(|nodes| {
            nodes
                .into_iter()
                .map(|(id, addr)| (id, crate::raft::types::Node::new(addr.clone(), addr)))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into()
        }),
    ]
}

/// Every log entry payload shape.
pub(crate) fn payload() -> impl Strategy<Value = RaftPayload> {
    prop_oneof![
        Just(EntryPayload::Blank),
        command().prop_map(EntryPayload::Normal),
        membership().prop_map(EntryPayload::Membership),
    ]
}

fn entry() -> impl Strategy<Value = RaftEntry> {
    (log_id(), payload()).prop_map(|(log_id, payload)| Entry { log_id, payload })
}

fn append_request() -> impl Strategy<Value = AppendEntriesRequest<TypeConfig>> {
    (
        vote(),
        proptest::option::of(log_id()),
        vec(entry(), 0..4),
        proptest::option::of(log_id()),
    )
        .prop_map(
            |(vote, prev_log_id, entries, leader_commit)| AppendEntriesRequest {
                vote,
                prev_log_id,
                entries,
                leader_commit,
            },
        )
}

fn append_response() -> impl Strategy<Value = AppendEntriesResponse<TypeConfig>> {
    prop_oneof![
        Just(AppendEntriesResponse::Success),
        proptest::option::of(log_id()).prop_map(AppendEntriesResponse::PartialSuccess),
        Just(AppendEntriesResponse::Conflict),
        vote().prop_map(AppendEntriesResponse::HigherVote),
    ]
}

fn vote_request() -> impl Strategy<Value = VoteRequest<TypeConfig>> {
    (vote(), proptest::option::of(log_id()), any::<bool>()).prop_map(
        |(vote, last_log_id, leadership_transfer)| VoteRequest {
            vote,
            last_log_id,
            leadership_transfer,
        },
    )
}

fn vote_response() -> impl Strategy<Value = VoteResponse<TypeConfig>> {
    (vote(), proptest::option::of(log_id()), any::<bool>())
        .prop_map(|(vote, last, granted)| VoteResponse::new(vote, last, granted))
}

fn snapshot_meta() -> impl Strategy<Value = openraft::alias::SnapshotMetaOf<TypeConfig>> {
    (
        proptest::option::of(log_id()),
        proptest::option::of(log_id()),
        membership(),
    )
        .prop_map(
            |(last_log_id, membership_log_id, membership)| SnapshotMeta {
                last_log_id,
                last_membership: StoredMembership::new(membership_log_id, membership),
            },
        )
}

fn chunk_header() -> impl Strategy<Value = SnapshotChunkHeader> {
    (
        vote(),
        any::<u64>(),
        num(),
        any::<bool>(),
        proptest::option::of(snapshot_meta()),
    )
        .prop_map(
            |(vote, transfer_id, offset, done, meta)| SnapshotChunkHeader {
                vote,
                transfer_id,
                offset,
                done,
                meta,
            },
        )
}

fn chunk_reply() -> impl Strategy<Value = SnapshotChunkReply> {
    prop_oneof![
        num().prop_map(|next_offset| SnapshotChunkReply::Received { next_offset }),
        vote().prop_map(|v| SnapshotChunkReply::Finished(SnapshotResponse::new(v))),
    ]
}

/// One change to a valid frame: any byte damage, or one aimed at the header.
#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    Bytes(ByteMutation),
    SetVersion(u8),
    SetHeaderLength(u32),
    NudgeHeaderLength(i8),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        9 => byte_mutation().prop_map(Mutation::Bytes),
        1 => any::<u8>().prop_map(Mutation::SetVersion),
        1 => any::<u32>().prop_map(Mutation::SetHeaderLength),
        1 => any::<i8>().prop_map(Mutation::NudgeHeaderLength),
    ]
}

/// Applies `m` to `frame` (a no-op where the frame is too short for it).
pub(crate) fn mutate(frame: &mut Vec<u8>, m: &Mutation) {
    let len_at = MAGIC.len() + 1;
    let header_len = |f: &Vec<u8>| {
        f.get(len_at..len_at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    match m {
        Mutation::Bytes(b) => damage(frame, b),
        Mutation::SetVersion(v) if frame.len() > MAGIC.len() => frame[MAGIC.len()] = *v,
        Mutation::SetHeaderLength(n) if frame.len() >= PREFIX_BYTES => {
            frame[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
        }
        Mutation::NudgeHeaderLength(d) => {
            if let Some(n) = header_len(frame) {
                let n = n.wrapping_add_signed(i32::from(*d));
                frame[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
            }
        }
        _ => {}
    }
}

/// Whether `m` alone, applied to a valid tail-less frame, must make it undecodable.
fn always_breaks(frame: &[u8], m: &Mutation) -> bool {
    match m {
        Mutation::Bytes(ByteMutation::Truncate(i)) => i.index(frame.len() + 1) < frame.len(),
        Mutation::Bytes(ByteMutation::Append(tail)) => !tail.is_empty(),
        Mutation::SetVersion(v) => *v != VERSION,
        Mutation::SetHeaderLength(n) => *n as usize != frame.len() - PREFIX_BYTES,
        Mutation::NudgeHeaderLength(d) => *d != 0,
        _ => false,
    }
}

/// `decode(encode(v))` is `v` (compared by `Debug`: not every openraft type is `PartialEq`).
fn assert_round_trip<T>(v: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + Debug,
{
    let frame = codec::encode(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = codec::decode(&frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(format!("{back:?}"), format!("{v:?}"));
    Ok(())
}

/// Whatever a (mutated) frame decodes to is itself a value that round-trips: the
/// decoder never produces something the encoder cannot represent.
fn decoded_is_stable<T>(frame: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + Debug,
{
    if let Ok(v) = codec::decode::<T>(frame) {
        assert_round_trip(&v)?;
    }
    Ok(())
}

/// Random bytes: an error unless they happen to start like a frame; never a panic.
fn arbitrary_bytes<T: DeserializeOwned + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let looks_like_frame = bytes.len() > MAGIC.len() && bytes[..MAGIC.len()] == MAGIC;
    let result = codec::decode::<T>(bytes);
    if !looks_like_frame {
        prop_assert!(result.is_err(), "decoded {result:?} from {bytes:?}");
    }
    Ok(())
}

/// Random bytes behind a well-formed prefix reach bincode itself.
fn framed_junk(body: &[u8], claimed: Option<u32>) -> Vec<u8> {
    let len = claimed.unwrap_or(body.len() as u32);
    let mut frame = Vec::with_capacity(PREFIX_BYTES + body.len());
    frame.extend_from_slice(&MAGIC);
    frame.push(VERSION);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(body);
    frame
}

/// One frame type's properties; `$strategy` makes valid values of `$ty`.
macro_rules! frame_properties {
    ($module:ident, $ty:ty, $strategy:expr) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(config())]

                #[test]
                fn round_trips(v in $strategy) {
                    assert_round_trip::<$ty>(&v)?;
                }

                #[test]
                fn arbitrary_bytes_are_refused(bytes in bytes_up_to(256)) {
                    arbitrary_bytes::<$ty>(&bytes)?;
                }

                #[test]
                fn junk_behind_a_valid_prefix_never_panics(
                    body in bytes_up_to(256),
                    claimed in proptest::option::of(any::<u32>()),
                ) {
                    decoded_is_stable::<$ty>(&framed_junk(&body, claimed))?;
                }

                #[test]
                fn a_definitely_breaking_mutation_is_refused(v in $strategy, m in mutation()) {
                    let mut frame = codec::encode(&v).expect("encodes");
                    let breaks = always_breaks(&frame, &m);
                    mutate(&mut frame, &m);
                    let result = codec::decode::<$ty>(&frame);
                    if breaks {
                        prop_assert!(result.is_err(), "{m:?} still decodes: {result:?}");
                    }
                }

                #[test]
                fn mutated_frames_never_panic(v in $strategy, ms in vec(mutation(), 1..6)) {
                    let mut frame = codec::encode(&v).expect("encodes");
                    for m in &ms {
                        mutate(&mut frame, m);
                    }
                    decoded_is_stable::<$ty>(&frame)?;
                }
            }
        }
    };
}

frame_properties!(
    append_request,
    AppendEntriesRequest<TypeConfig>,
    append_request()
);
frame_properties!(
    append_response,
    AppendEntriesResponse<TypeConfig>,
    append_response()
);
frame_properties!(vote_request, VoteRequest<TypeConfig>, vote_request());
frame_properties!(vote_response, VoteResponse<TypeConfig>, vote_response());
frame_properties!(chunk_reply, SnapshotChunkReply, chunk_reply());

/// The snapshot chunk is the one frame with a tail (the raw snapshot bytes), so
/// appended bytes are data, not damage.
mod snapshot_chunk {
    use super::*;

    fn decode_chunk(frame: &[u8]) -> Result<(SnapshotChunkHeader, Bytes), CodecError> {
        codec::decode_with_tail(Bytes::copy_from_slice(frame))
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn round_trips_with_its_data(h in chunk_header(), data in bytes_up_to(512)) {
            let frame = codec::encode_with_tail(&h, &data).expect("encodes");
            let (back, tail) = decode_chunk(&frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(format!("{back:?}"), format!("{h:?}"));
            prop_assert_eq!(&tail[..], &data[..]);
        }

        #[test]
        fn arbitrary_bytes_are_refused(bytes in bytes_up_to(256)) {
            let looks_like_frame = bytes.len() > MAGIC.len() && bytes[..MAGIC.len()] == MAGIC;
            let result = decode_chunk(&bytes);
            if !looks_like_frame {
                prop_assert!(result.is_err(), "decoded {result:?}");
            }
        }

        #[test]
        fn junk_behind_a_valid_prefix_never_panics(
            body in bytes_up_to(256),
            claimed in proptest::option::of(any::<u32>()),
        ) {
            let frame = framed_junk(&body, claimed);
            if let Ok((h, tail)) = decode_chunk(&frame) {
                // Header plus tail account for every byte of the frame.
                let header_len = frame.len() - PREFIX_BYTES - tail.len();
                prop_assert_eq!(
                    codec::encode(&h).expect("re-encodes").len() - PREFIX_BYTES,
                    header_len
                );
            }
        }

        #[test]
        fn mutated_chunks_never_panic(
            h in chunk_header(),
            data in bytes_up_to(64),
            ms in vec(mutation(), 1..6),
        ) {
            let mut frame = codec::encode_with_tail(&h, &data).expect("encodes");
            let breaks = ms.len() == 1 && matches!(
                &ms[0],
                Mutation::SetVersion(v) if *v != VERSION
            );
            for m in &ms {
                mutate(&mut frame, m);
            }
            let result = decode_chunk(&frame);
            if breaks {
                prop_assert!(result.is_err());
            }
            if let Ok((h, _)) = result {
                let again = codec::encode(&h).expect("re-encodes");
                let back: SnapshotChunkHeader = codec::decode(&again).expect("decodes again");
                prop_assert_eq!(format!("{back:?}"), format!("{h:?}"));
            }
        }
    }
}

/// The bincode bytes of a string with the given claimed length, then `rest`.
pub(crate) fn string_claiming(len: u64, rest: &[u8]) -> Vec<u8> {
    // bincode varint: 253 announces a little-endian u64.
    let mut out = vec![253];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(rest);
    out
}

/// A frame header announcing one entry, an `Apply` whose plugin name claims
/// `len` bytes of which only `kv` follow (then an empty input, timestamp 0, no key,
/// no leader commit).
fn append_with_plugin_name_claiming(len: u64) -> Vec<u8> {
    let mut header = vec![
        0, 0, 1, // vote: term 0, node 0, committed
        0, // prev_log_id: None
        1, // one entry
        0, 0, 0, // its log id: term, node, index
        1, // EntryPayload::Normal
        3, // Command::Apply (Deploy, Remove, UpdateSettings, Apply, …)
    ];
    header.extend_from_slice(&string_claiming(len, b"kv"));
    header.extend_from_slice(&[0, 0, 0, 0]); // input, timestamp, idempotency key, leader commit
    framed_junk(&header, None)
}

/// Decoding must refuse a length it cannot satisfy without reserving it first.
#[test]
fn a_huge_length_prefix_is_refused_without_allocating_it() {
    // The layout is right: with the true length the frame decodes.
    let ok =
        codec::decode::<AppendEntriesRequest<TypeConfig>>(&append_with_plugin_name_claiming(2))
            .expect("the honest frame decodes");
    assert!(matches!(
        &ok.entries[0].payload,
        EntryPayload::Normal(Command::Apply { plugin, .. }) if plugin == "kv"
    ));
    // 256 MiB is refused as over the limit (not read and found missing): a
    // frame of a few dozen bytes cannot make the decoder reserve that much.
    for len in [256 << 20, 4 << 30, 1 << 40, u64::MAX >> 1, u64::MAX] {
        let frame = append_with_plugin_name_claiming(len);
        let result = codec::decode::<AppendEntriesRequest<TypeConfig>>(&frame);
        assert!(
            matches!(&result, Err(CodecError::Malformed(m)) if m.contains("LimitExceeded")),
            "claimed {len}: {result:?}"
        );
    }
}
