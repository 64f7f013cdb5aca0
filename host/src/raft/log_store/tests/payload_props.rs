//! Property tests of the log-entry payload envelope: random and mutated bytes never
//! panic, valid payloads round-trip, and a length prefix the bytes cannot back is
//! refused before anything is reserved for it.

use proptest::collection::vec;
use proptest::prelude::*;

use super::super::codec::{PAYLOAD_FORMAT, RaftPayload, decode_payload, encode_payload};
use crate::raft::codec_props::{Mutation, config, mutate, mutation, payload, string_claiming};
use crate::state::Command;
use crate::test_props::ByteMutation;

proptest! {
    #![proptest_config(config())]

    #[test]
    fn payloads_round_trip(p in payload()) {
        let bytes = encode_payload(&p).expect("encodes");
        prop_assert_eq!(decode_payload(&bytes).expect("decodes"), p);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let result = decode_payload(&bytes);
        if bytes.first() != Some(&PAYLOAD_FORMAT) {
            prop_assert!(result.is_err(), "decoded {result:?}");
        }
    }

    #[test]
    fn mutated_payloads_never_panic(p in payload(), ms in vec(mutation(), 1..6)) {
        let mut bytes = encode_payload(&p).expect("encodes");
        let valid_len = bytes.len();
        // The frame-level mutations (version byte, header length) land on the
        // payload's version byte and first body bytes, which is damage all the same.
        for m in &ms {
            mutate(&mut bytes, m);
        }
        let single_truncation =
            matches!(ms.as_slice(), [Mutation::Bytes(ByteMutation::Truncate(_))]) && bytes.len() < valid_len;
        match decode_payload(&bytes) {
            // Whatever decodes re-encodes to the same payload.
            Ok(back) => {
                prop_assert!(!single_truncation, "a truncated payload decoded: {back:?}");
                let again = encode_payload(&back).expect("re-encodes");
                prop_assert_eq!(decode_payload(&again).expect("decodes again"), back);
            }
            Err(e) => prop_assert_eq!(e.kind(), std::io::ErrorKind::InvalidData),
        }
    }
}

/// An `Apply` payload whose plugin name claims `len` bytes of which two follow.
fn apply_claiming(len: u64) -> Vec<u8> {
    let mut bytes = vec![
        PAYLOAD_FORMAT,
        1, // EntryPayload::Normal
        3, // Command::Apply (Deploy, Remove, UpdateSettings, Apply, …)
    ];
    bytes.extend_from_slice(&string_claiming(len, b"kv"));
    bytes.extend_from_slice(&[0, 0, 0]); // input, timestamp, idempotency key
    bytes
}

/// raft-log's CRC only catches accidental damage: a record is still bytes from
/// disk, and a length the bytes cannot back must be an error, not an allocation
/// of that size (which aborts the process when it fails).
#[test]
fn a_huge_length_prefix_is_refused_without_allocating_it() {
    let honest = decode_payload(&apply_claiming(2)).expect("the honest payload decodes");
    assert!(matches!(
        honest,
        RaftPayload::Normal(Command::Apply { ref plugin, .. }) if plugin == "kv"
    ));
    for len in [4 << 30, 1 << 40, u64::MAX >> 1, u64::MAX] {
        let err = decode_payload(&apply_claiming(len)).expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "claimed {len}");
    }
}
