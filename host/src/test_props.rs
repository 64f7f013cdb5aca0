//! Property-test helpers shared by every format's tests: the proptest config and
//! generic byte damage (each format adds its own header-aware mutations).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Few cases per property: the strategies are cheap but the suite runs on a loaded
/// 2-core box; no persistence files in the source tree.
pub(crate) fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Up to `max` arbitrary bytes.
pub(crate) fn bytes_up_to(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

/// One change to some bytes, at a position chosen relative to their length.
#[derive(Clone, Debug)]
pub(crate) enum ByteMutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Append(Vec<u8>),
    Insert(Index, Vec<u8>),
    Remove(Index),
}

/// Bit flips most often, then overwrites, then length changes.
pub(crate) fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteMutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| ByteMutation::SetByte(i, v)),
        1 => any::<Index>().prop_map(ByteMutation::Truncate),
        1 => bytes_up_to(16).prop_map(ByteMutation::Append),
        1 => (any::<Index>(), bytes_up_to(8)).prop_map(|(i, b)| ByteMutation::Insert(i, b)),
        1 => any::<Index>().prop_map(ByteMutation::Remove),
    ]
}

/// Applies `m` to `bytes` (a no-op where there are too few bytes for it).
pub(crate) fn damage(bytes: &mut Vec<u8>, m: &ByteMutation) {
    let n = bytes.len();
    match m {
        ByteMutation::FlipBit(i, bit) if n > 0 => bytes[i.index(n)] ^= 1 << bit,
        ByteMutation::SetByte(i, v) if n > 0 => bytes[i.index(n)] = *v,
        ByteMutation::Truncate(i) => bytes.truncate(i.index(n + 1)),
        ByteMutation::Append(tail) => bytes.extend_from_slice(tail),
        ByteMutation::Insert(i, more) => {
            let at = i.index(n + 1);
            bytes.splice(at..at, more.iter().copied());
        }
        ByteMutation::Remove(i) if n > 0 => {
            bytes.remove(i.index(n));
        }
        _ => {}
    }
}
