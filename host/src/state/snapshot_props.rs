//! Property tests of the snapshot format: random bytes and every kind of damage
//! to a real snapshot are refused (it is checksummed, so any changed byte is),
//! valid snapshots round-trip, and a forged snapshot with a correct checksum but
//! hostile lengths is an error, not a panic or a giant allocation.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::snapshot::{self, FORMAT_VERSION, SnapshotError};
use super::{CommandResult, ErrorBody, IdempotencyRecord, PluginInfo, State};
use crate::runtime::Code;
use crate::test_props::{byte_mutation, config, damage};

fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

fn plugin_info() -> impl Strategy<Value = PluginInfo> {
    ("[a-z]{1,8}", any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(name, version, fuel_per_call, deployed_at_index)| PluginInfo {
            sha256: hex::encode(Sha256::digest(name.as_bytes())),
            name,
            version,
            fuel_per_call,
            memory_limit_bytes: 1 << 20,
            deployed_at_index,
            size_bytes: 8,
        },
    )
}

/// A state with plugins, code, KV and idempotency records (not one a real log
/// would produce, but every part of the format is exercised).
fn state() -> impl Strategy<Value = State> {
    (
        vec(plugin_info(), 0..3),
        btree_map(
            "[a-z]{1,8}",
            btree_map(small_bytes(), small_bytes(), 0..6),
            0..3,
        ),
        btree_map("[ -~]{0,12}", (any::<u64>(), "[a-z-]{1,12}"), 0..4),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(plugins, kv, idem, applied_index, last_timestamp_ms)| {
            let mut s = State::new();
            for p in plugins {
                let code = Code::new(p.name.clone().into_bytes());
                s.code.insert(p.sha256.clone(), code);
                s.plugins.insert(p.name.clone(), p);
            }
            for (name, entries) in kv {
                s.kv.insert(name, entries.into_iter().collect());
            }
            for (key, (index, code)) in idem {
                let result = CommandResult::Failed(ErrorBody::new(code, "m"));
                s.idempotency_by_index.insert(index, key.clone());
                let fingerprint = [index as u8; 32];
                s.idempotency.insert(
                    key,
                    IdempotencyRecord {
                        index,
                        fingerprint,
                        result,
                    },
                );
            }
            s.applied_index = applied_index;
            s.last_timestamp_ms = last_timestamp_ms;
            s
        })
}

/// Snapshot bytes with the given meta and body, correctly checksummed: what a
/// forger (or a buggy peer) can send.
fn forge(meta: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = b"CAIRNSNP".to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_be_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn snapshots_round_trip(s in state(), meta in small_bytes()) {
        let bytes = snapshot::encode(&s, &meta);
        let (back, back_meta) = snapshot::decode(&bytes).expect("decodes");
        prop_assert_eq!(back.hash(), s.hash());
        prop_assert_eq!(back.applied_index, s.applied_index);
        prop_assert_eq!(back.last_timestamp_ms, s.last_timestamp_ms);
        prop_assert_eq!(back.idempotency_by_index.len(), s.idempotency_by_index.len());
        prop_assert_eq!(back_meta, meta);
    }

    #[test]
    fn arbitrary_bytes_are_refused(bytes in vec(any::<u8>(), 0..512)) {
        prop_assert!(snapshot::decode(&bytes).is_err());
    }

    /// The checksum covers every byte: whatever changes the bytes is refused.
    #[test]
    fn any_damage_is_refused(s in state(), ms in vec(byte_mutation(), 1..6)) {
        let valid = snapshot::encode(&s, b"meta");
        let mut bytes = valid.clone();
        for m in &ms {
            damage(&mut bytes, m);
        }
        let result = snapshot::decode(&bytes);
        if bytes != valid {
            prop_assert!(result.is_err(), "damaged snapshot decoded ({ms:?})");
        }
    }

    /// A correct checksum over junk: the body decoder itself must cope.
    #[test]
    fn junk_with_a_valid_checksum_never_panics(meta in small_bytes(), body in vec(any::<u8>(), 0..512)) {
        if let Ok((_, back_meta)) = snapshot::decode(&forge(&meta, &body)) {
            prop_assert_eq!(back_meta, meta);
        }
    }

    /// Lengths in the frame that point past the end are refused.
    #[test]
    fn framing_lengths_past_the_end_are_refused(meta_len in any::<u64>(), body_len in any::<u64>()) {
        let mut bytes = b"CAIRNSNP".to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&meta_len.saturating_add(1).to_be_bytes());
        bytes.extend_from_slice(&body_len.to_be_bytes());
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum);
        prop_assert!(matches!(snapshot::decode(&bytes), Err(SnapshotError::Truncated)));
    }
}

/// A checksummed body whose first plugin name claims `len` bytes: the checksum
/// proves the bytes arrived intact, not that a peer wrote them honestly.
#[test]
fn a_huge_length_prefix_is_refused_without_allocating_it() {
    let body_claiming = |len: u64| {
        let mut body = vec![1]; // one plugin
        body.push(253); // its name: a string of `len` bytes (varint u64 follows)
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(b"kv");
        body
    };
    // The layout is right: with the true length it gets past the name.
    let honest = snapshot::decode(&forge(b"", &body_claiming(2)));
    assert!(
        matches!(&honest, Err(SnapshotError::Malformed(m)) if !m.contains("limit")),
        "{honest:?}"
    );
    for len in [4 << 30, 1 << 40, u64::MAX >> 1, u64::MAX] {
        let result = snapshot::decode(&forge(b"", &body_claiming(len)));
        assert!(
            matches!(result, Err(SnapshotError::Malformed(_))),
            "claimed {len}: {result:?}"
        );
    }
}
