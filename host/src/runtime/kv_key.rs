//! `KvKey`: a stored key, held inside the map's nodes when it is short.
//!
//! A lookup compares the wanted key with a handful of keys per tree level,
//! and a write copies the nodes on its path (the published state still holds
//! them), cloning every key they hold. With each key behind a pointer both
//! touch one cache line per key, which at a million keys is mostly a miss.
//! Keys up to [`KV_KEY_INLINE_BYTES`] live in the node itself (most keys the
//! SDK writes: a short namespace, a NUL byte, a short name); longer ones are
//! shared like values.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// Longest key kept inline: with its length byte and the enum's tag, a key
/// takes 24 bytes, no more than a `Vec<u8>`.
pub const KV_KEY_INLINE_BYTES: usize = 22;

/// A key of a plugin's KV. Behaves as the `[u8]` it holds: equality, order
/// and hashing are those of the bytes, however they are stored.
#[derive(Clone)]
pub enum KvKey {
    /// `bytes[..len]` is the key.
    Inline {
        /// Length of the key.
        len: u8,
        /// The key, zero-padded.
        bytes: [u8; KV_KEY_INLINE_BYTES],
    },
    /// A key longer than [`KV_KEY_INLINE_BYTES`].
    Shared(Arc<[u8]>),
}

impl KvKey {
    /// The key's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            KvKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KvKey::Shared(b) => b,
        }
    }
}

impl From<&[u8]> for KvKey {
    fn from(key: &[u8]) -> Self {
        if key.len() <= KV_KEY_INLINE_BYTES {
            let mut bytes = [0; KV_KEY_INLINE_BYTES];
            bytes[..key.len()].copy_from_slice(key);
            KvKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KvKey::Shared(key.into())
        }
    }
}

impl From<Vec<u8>> for KvKey {
    fn from(key: Vec<u8>) -> Self {
        if key.len() <= KV_KEY_INLINE_BYTES {
            key.as_slice().into()
        } else {
            KvKey::Shared(key.into())
        }
    }
}

impl Deref for KvKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for KvKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for KvKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for KvKey {}

impl PartialOrd for KvKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KvKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for KvKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_behave_as_their_bytes_however_stored() {
        let lens = [
            0,
            1,
            KV_KEY_INLINE_BYTES - 1,
            KV_KEY_INLINE_BYTES,
            KV_KEY_INLINE_BYTES + 1,
            100,
        ];
        let mut raw: Vec<Vec<u8>> = Vec::new();
        for len in lens {
            for fill in [0u8, 7, 255] {
                raw.push(vec![fill; len]);
                let mut v = vec![fill; len];
                if let Some(last) = v.last_mut() {
                    *last = last.wrapping_add(1);
                }
                raw.push(v);
            }
        }
        for a in &raw {
            let ka = KvKey::from(a.clone());
            assert_eq!(ka.as_slice(), a.as_slice());
            assert_eq!(
                matches!(ka, KvKey::Inline { .. }),
                a.len() <= KV_KEY_INLINE_BYTES
            );
            for b in &raw {
                let kb = KvKey::from(b.as_slice());
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(ka == kb, a == b);
            }
        }
        assert_eq!(std::mem::size_of::<KvKey>(), 24);
    }
}
