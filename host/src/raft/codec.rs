//! Versioned binary framing for Raft RPC bodies (bincode 2 over serde).
//!
//! Frame layout:
//!
//! ```text
//! magic "CRN" (3) | version (1) | header length, u32 LE (4) | bincode header | tail bytes
//! ```
//!
//! Most messages have no tail; a snapshot chunk carries its raw data as the tail so
//! that megabytes of snapshot are not pushed through serde byte by byte. The
//! magic and version come first so a future format (or a stray client) is
//! rejected with a clear error instead of being misread. Decoding never panics:
//! every malformed input maps to a [`CodecError`].

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::Command;

/// First bytes of every frame.
pub const MAGIC: [u8; 3] = *b"CRN";
/// The only format version this build reads and writes. Version 2: log
/// entries carry deploys by sha256 (`DeployCode`) and limit changes.
/// Version 3: a member is recorded with its client and peer addresses.
pub const VERSION: u8 = 3;
/// Magic + version + header length.
pub const PREFIX_BYTES: usize = MAGIC.len() + 1 + 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Shorter than the fixed prefix or than the header length it announces.
    #[error("truncated frame: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the frame claims or requires.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// Does not start with [`MAGIC`]: not a Cairn RPC frame.
    #[error("not a cairn raft frame (bad magic)")]
    BadMagic,
    /// Written by a different format version.
    #[error("unsupported frame version {found} (this node speaks {VERSION})")]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
    },
    /// The header bytes are not a valid encoding of the expected message.
    #[error("malformed frame header: {0}")]
    Malformed(String),
    /// The header decoded but did not use all of its announced bytes.
    #[error("frame header has {0} trailing bytes")]
    TrailingHeaderBytes(usize),
    /// A message that takes no tail arrived with one.
    #[error("unexpected {0} tail bytes after frame header")]
    UnexpectedTail(usize),
    /// Encoding failed (a type that bincode cannot represent).
    #[error("encode: {0}")]
    Encode(String),
}

/// Bytes a log entry adds around its command, both in append-entries bodies
/// and in the log: the log id (three variable-length u64s, at most 9 bytes
/// each), the payload tag, and the log's one-byte envelope version; rounded up.
pub const ENTRY_ENVELOPE_MAX_BYTES: u64 = 64;

/// Bytes `msg` takes in a frame header (bincode, as [`encode`] writes it),
/// counted without building it.
pub fn encoded_len<T: Serialize>(msg: &T) -> Result<u64, CodecError> {
    let mut counter = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(msg, &mut counter, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(counter.bytes_written as u64)
}

/// An upper bound (tight to [`ENTRY_ENVELOPE_MAX_BYTES`]) of the bytes the log
/// entry carrying `cmd` takes, wherever it sits in the log or a batch: what
/// the cluster's `max_entry_bytes` is compared with.
pub fn entry_bytes(cmd: &Command) -> Result<u64, CodecError> {
    Ok(encoded_len(cmd)? + ENTRY_ENVELOPE_MAX_BYTES)
}

/// Encodes `msg` as a frame with no tail.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    encode_with_tail(msg, &[])
}

/// Encodes `header` followed by raw `tail` bytes.
pub fn encode_with_tail<T: Serialize>(header: &T, tail: &[u8]) -> Result<Vec<u8>, CodecError> {
    // Sized first, then encoded in place: an append-entries body built by
    // growing a Vec and copied into the frame cost reallocations and a copy
    // per RPC.
    let body_len = encoded_len(header)?;
    let len = u32::try_from(body_len)
        .map_err(|_| CodecError::Encode(format!("header of {body_len} bytes")))?;
    let mut out = Vec::with_capacity(PREFIX_BYTES + len as usize + tail.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&len.to_le_bytes());
    bincode::serde::encode_into_std_write(header, &mut out, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    debug_assert_eq!(out.len(), PREFIX_BYTES + len as usize);
    out.extend_from_slice(tail);
    Ok(out)
}

/// Decodes a frame that must have no tail.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    let (msg, tail_start) = decode_header(frame)?;
    let tail = frame.len() - tail_start;
    if tail != 0 {
        return Err(CodecError::UnexpectedTail(tail));
    }
    Ok(msg)
}

/// Decodes a frame's header and returns its tail without copying it.
pub fn decode_with_tail<T: DeserializeOwned>(frame: Bytes) -> Result<(T, Bytes), CodecError> {
    let (msg, tail_start) = decode_header(&frame)?;
    Ok((msg, frame.slice(tail_start..)))
}

/// Decodes the header; returns it and the offset where the tail starts.
fn decode_header<T: DeserializeOwned>(frame: &[u8]) -> Result<(T, usize), CodecError> {
    if frame.len() < PREFIX_BYTES {
        // Check the magic on what we have so a short garbage body says "bad magic".
        let n = frame.len().min(MAGIC.len());
        if frame[..n] != MAGIC[..n] {
            return Err(CodecError::BadMagic);
        }
        return Err(CodecError::Truncated {
            needed: PREFIX_BYTES,
            got: frame.len(),
        });
    }
    if frame[..MAGIC.len()] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let version = frame[MAGIC.len()];
    if version != VERSION {
        return Err(CodecError::UnsupportedVersion { found: version });
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&frame[MAGIC.len() + 1..PREFIX_BYTES]);
    let header_len = u32::from_le_bytes(len_bytes) as usize;
    let end = PREFIX_BYTES
        .checked_add(header_len)
        .ok_or(CodecError::Truncated {
            needed: usize::MAX,
            got: frame.len(),
        })?;
    if frame.len() < end {
        return Err(CodecError::Truncated {
            needed: end,
            got: frame.len(),
        });
    }
    // A length inside the header cannot reserve more than the header could hold.
    let (msg, used) = crate::bounded_decode::decode_from_slice::<T>(&frame[PREFIX_BYTES..end])
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != header_len {
        return Err(CodecError::TrailingHeaderBytes(header_len - used));
    }
    Ok((msg, end))
}

#[cfg(test)]
mod tests {
    use openraft::Vote;
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};

    use super::*;
    use crate::raft::types::TypeConfig;
    use crate::state::Command;

    fn append_request() -> AppendEntriesRequest<TypeConfig> {
        let leader = openraft::impls::leader_id_adv::LeaderId {
            term: 3,
            node_id: 1,
        };
        let log_id = |index| openraft::LogId::new(leader, index);
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(4)),
            entries: vec![
                openraft::Entry {
                    log_id: log_id(5),
                    payload: openraft::EntryPayload::Blank,
                },
                openraft::Entry {
                    log_id: log_id(6),
                    payload: openraft::EntryPayload::Normal(Command::Apply {
                        plugin: "counter".into(),
                        input: br#"{"add":1}"#.to_vec(),
                        timestamp_ms: 1_700_000_000_000,
                        idempotency_key: Some("k1".into()),
                    }),
                },
                openraft::Entry {
                    log_id: log_id(7),
                    payload: openraft::EntryPayload::Membership(
                        openraft::Membership::new_with_defaults(
                            vec![[1u64, 2, 3].into_iter().collect()],
                            [],
                        ),
                    ),
                },
            ],
            leader_commit: Some(log_id(5)),
        }
    }

    #[test]
    fn round_trips_raft_messages() {
        let req = append_request();
        let back: AppendEntriesRequest<TypeConfig> = decode(&encode(&req).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{req:?}"));

        let resp = AppendEntriesResponse::<TypeConfig>::PartialSuccess(req.prev_log_id);
        let back: AppendEntriesResponse<TypeConfig> = decode(&encode(&resp).unwrap()).unwrap();
        assert_eq!(back, resp);

        let vote = VoteRequest::<TypeConfig> {
            vote: Vote::new(4, 2),
            last_log_id: None,
            leadership_transfer: true,
        };
        let back: VoteRequest<TypeConfig> = decode(&encode(&vote).unwrap()).unwrap();
        assert_eq!(back, vote);

        let vresp = VoteResponse::<TypeConfig>::new(Vote::new(4, 2), req.leader_commit, false);
        let back: VoteResponse<TypeConfig> = decode(&encode(&vresp).unwrap()).unwrap();
        assert_eq!(back, vresp);
    }

    #[test]
    fn entry_bytes_bounds_the_encoded_entry_tightly() {
        let leader = openraft::impls::leader_id_adv::LeaderId {
            term: u64::MAX,
            node_id: u64::MAX,
        };
        let commands = [
            Command::Apply {
                plugin: "counter".into(),
                input: vec![7; 100_000],
                timestamp_ms: u64::MAX,
                idempotency_key: Some("k".repeat(300)),
            },
            Command::Deploy {
                name: "p".into(),
                code: crate::state::DeployCode::Inline(vec![1; 3]),
                fuel_per_call: 1,
                memory_limit_bytes: 1,
                timestamp_ms: 1,
                idempotency_key: Some("d".repeat(300)),
            },
            Command::Remove { name: "x".into() },
        ];
        for cmd in commands {
            let bound = entry_bytes(&cmd).unwrap();
            let entry: openraft::alias::EntryOf<TypeConfig> = openraft::Entry {
                log_id: openraft::LogId::new(leader, u64::MAX),
                payload: openraft::EntryPayload::Normal(cmd.clone()),
            };
            // The log stores a one-byte version before the payload.
            let actual = encoded_len(&entry).unwrap() + 1;
            assert!(actual <= bound, "{cmd}: {actual} > {bound}");
            assert!(
                bound - actual < ENTRY_ENVELOPE_MAX_BYTES,
                "{cmd}: loose bound"
            );
            assert_eq!(
                encoded_len(&entry).unwrap(),
                encode(&entry).unwrap().len() as u64 - PREFIX_BYTES as u64
            );
        }
    }

    #[test]
    fn byte_fields_encode_as_a_plain_sequence_would() {
        // Command's byte fields use serde_bytes for speed; the frame bytes must
        // be what a Vec<u8> sequence gives, so logs written before still decode.
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Plain(Vec<u8>, String);
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Fast(#[serde(with = "serde_bytes")] Vec<u8>, String);
        for len in [0usize, 1, 127, 128, 100_000] {
            let bytes: Vec<u8> = (0..=255u8).cycle().take(len).collect();
            let plain = encode(&Plain(bytes.clone(), "x".into())).unwrap();
            let fast = encode(&Fast(bytes.clone(), "x".into())).unwrap();
            assert_eq!(plain, fast, "len {len}");
            let back: Fast = decode(&plain).unwrap();
            assert_eq!(back, Fast(bytes, "x".into()));
        }
    }

    #[test]
    fn tail_is_returned_without_reencoding() {
        let frame = encode_with_tail(&(7u64, true), b"raw snapshot bytes").unwrap();
        let ((n, flag), tail): ((u64, bool), Bytes) =
            decode_with_tail(Bytes::from(frame.clone())).unwrap();
        assert_eq!((n, flag), (7, true));
        assert_eq!(&tail[..], b"raw snapshot bytes");
        // The tail-less decoder refuses a frame with a tail.
        assert!(matches!(
            decode::<(u64, bool)>(&frame),
            Err(CodecError::UnexpectedTail(18))
        ));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(matches!(
            decode::<VoteRequest<TypeConfig>>(b""),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            decode::<VoteRequest<TypeConfig>>(b"GET / HTTP/1.1"),
            Err(CodecError::BadMagic)
        ));
        assert!(matches!(
            decode::<VoteRequest<TypeConfig>>(b"CRN"),
            Err(CodecError::Truncated { .. })
        ));

        let good = encode(&append_request()).unwrap();
        let mut wrong_version = good.clone();
        wrong_version[3] = 9;
        assert!(matches!(
            decode::<AppendEntriesRequest<TypeConfig>>(&wrong_version),
            Err(CodecError::UnsupportedVersion { found: 9 })
        ));

        // Every truncation of a valid frame is an error, never a panic.
        for cut in 0..good.len() {
            assert!(
                decode::<AppendEntriesRequest<TypeConfig>>(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }

        // A header length pointing past the end of the body.
        let mut huge_len = good.clone();
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode::<AppendEntriesRequest<TypeConfig>>(&huge_len),
            Err(CodecError::Truncated { .. })
        ));

        // Random bytes behind a valid prefix: decode errors (or, rarely, decodes), never panics.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..512usize {
            let mut junk = Vec::with_capacity(PREFIX_BYTES + len);
            junk.extend_from_slice(&MAGIC);
            junk.push(VERSION);
            junk.extend_from_slice(&(len as u32).to_le_bytes());
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                junk.push(state as u8);
            }
            let _ = decode::<AppendEntriesRequest<TypeConfig>>(&junk);
            let _ = decode::<VoteRequest<TypeConfig>>(&junk);
        }
    }
}
