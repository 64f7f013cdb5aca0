//! The state machine's snapshot decoder (state plus the Raft metadata stored in
//! it) refuses metadata whose lengths the bytes cannot back.

use super::decode;
use crate::raft::codec_props::string_claiming;
use crate::state::{State, snapshot};

/// Snapshot metadata naming one voter whose address claims `len` bytes, of which
/// two follow; correctly checksummed by the snapshot encoder.
fn snapshot_with_addr_claiming(len: u64) -> Vec<u8> {
    let mut meta = vec![
        0, // last_log_id: None
        0, // last_membership.log_id: None
        1, 1, 1, // configs: one set holding node 1
        1, 1, // nodes: one entry, node 1
    ];
    meta.extend_from_slice(&string_claiming(len, b"kv")); // its address
    meta.push(0); // its peer address: ""
    meta.push(0); // snapshot_id: ""
    snapshot::encode(&State::new(), &meta)
}

#[test]
fn a_huge_length_prefix_in_the_metadata_is_refused_without_allocating_it() {
    let (_, meta) = decode(&snapshot_with_addr_claiming(2)).expect("the honest snapshot decodes");
    let node = meta
        .last_membership
        .membership()
        .get_node(&1)
        .expect("node 1");
    assert_eq!(node.addr, "kv");
    for len in [4 << 30, 1 << 40, u64::MAX >> 1, u64::MAX] {
        let err = decode(&snapshot_with_addr_claiming(len)).expect_err("refused");
        assert!(err.to_string().contains("Limit"), "claimed {len}: {err}");
    }
}
