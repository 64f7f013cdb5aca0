//! The snapshot file format: a versioned, checksummed encoding of the whole
//! state plus an opaque metadata blob owned by the Raft layer.
//!
//! Layout (all integers big-endian):
//! `"CAIRNSNP"` · format version `u32` · meta length `u64` · meta · body length
//! `u64` · body (bincode of [`Body`]) · sha256 of everything before it.
//!
//! Code blobs are stored once each, keyed by sha256, however many plugins
//! use them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::tokens::{TokenRecord, Tokens};
use super::{ClusterSettings, Event, EventId, EventLog, IdempotencyRecord, PluginInfo, State};
use crate::runtime::{Code, Kv, KvBytes, KvKey};

const MAGIC: &[u8; 8] = b"CAIRNSNP";
/// The snapshot format this build writes and reads.
/// Version 2 added the cluster settings record; version 3 the request
/// fingerprint of each idempotency record; version 4 the token table;
/// version 5 the event logs; version 6 changed the Raft layer's metadata
/// (members carry a client and a peer address).
pub const FORMAT_VERSION: u32 = 6;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a Cairn snapshot.
    #[error("not a cairn snapshot (bad magic)")]
    BadMagic,
    /// Written by an incompatible version.
    #[error("snapshot format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    /// Shorter than its header says.
    #[error("snapshot is truncated")]
    Truncated,
    /// The checksum does not match: the file is corrupt.
    #[error("snapshot checksum mismatch")]
    Checksum,
    /// The body did not decode.
    #[error("snapshot body is malformed: {0}")]
    Malformed(String),
}

/// One plugin's KV as stored in a snapshot: name and entries in key order.
type PluginKv = (String, KvEntries);

/// A plugin's entries as a sequence of (key, value) byte strings, decoded
/// straight into its map: no list of a million entries in between.
///
/// Byte strings go through serde's `bytes` (one slice per key or value);
/// bincode writes exactly the bytes it writes for a `Vec<u8>` element by
/// element, so the format did not change with this.
struct KvEntries(Kv);

impl<'de> Deserialize<'de> for KvEntries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = KvEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence of key-value byte strings")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<KvEntries, A::Error> {
                let mut kv = Kv::new();
                type Entry = (FromBytes<KvKey>, FromBytes<KvBytes>);
                while let Some((k, v)) = seq.next_element::<Entry>()? {
                    kv.insert(k.0, v.0);
                }
                Ok(KvEntries(kv))
            }
        }
        d.deserialize_seq(Entries)
    }
}

/// One key or value, read from the input slice into its final form (inline,
/// or its shared allocation) in one copy.
struct FromBytes<T>(T);

impl<'de, T> Deserialize<'de> for FromBytes<T>
where
    T: for<'a> From<&'a [u8]> + From<Vec<u8>>,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes<T>(std::marker::PhantomData<T>);
        impl<'de, T> serde::de::Visitor<'de> for Bytes<T>
        where
            T: for<'a> From<&'a [u8]> + From<Vec<u8>>,
        {
            type Value = FromBytes<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<FromBytes<T>, E> {
                Ok(FromBytes(v.into()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<FromBytes<T>, E> {
                Ok(FromBytes(v.into()))
            }
        }
        d.deserialize_bytes(Bytes(std::marker::PhantomData))
    }
}

/// One plugin's event log as stored: name, the newest event retention
/// dropped, and the held events in id order.
type PluginEvents = (String, Option<EventId>, Vec<(EventId, Event)>);

#[derive(Deserialize)]
struct Body {
    plugins: Vec<PluginInfo>,
    code: Vec<(String, serde_bytes::ByteBuf)>,
    kv: Vec<PluginKv>,
    idempotency: Vec<(String, IdempotencyRecord)>,
    applied_index: u64,
    last_timestamp_ms: u64,
    settings: ClusterSettings,
    settings_index: u64,
    tokens: Vec<TokenRecord>,
    events: Vec<PluginEvents>,
}

/// Serialises a sequence straight from an iterator, so encoding a snapshot
/// never clones the state's values. Produces the same bytes as the `Vec`s of
/// [`Body`] that decoding reads.
struct Seq<I>(std::cell::RefCell<Option<I>>);

impl<I> Seq<I> {
    fn new(iter: I) -> Self {
        Self(std::cell::RefCell::new(Some(iter)))
    }
}

impl<I> Serialize for Seq<I>
where
    I: ExactSizeIterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let iter = self
            .0
            .borrow_mut()
            .take()
            .ok_or_else(|| serde::ser::Error::custom("sequence serialised twice"))?;
        s.collect_seq(iter)
    }
}

/// Encodes `state` with the Raft layer's `meta` into snapshot bytes.
pub fn encode(state: &State, meta: &[u8]) -> Vec<u8> {
    use serde::ser::SerializeTuple;
    struct BodyRef<'a>(&'a State);
    impl Serialize for BodyRef<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let st = self.0;
            // Field order and shapes must match `Body` exactly.
            let mut t = s.serialize_tuple(10)?;
            t.serialize_element(&Seq::new(st.plugins.values()))?;
            t.serialize_element(&Seq::new(
                st.code
                    .iter()
                    .map(|(k, v)| (k, serde_bytes::Bytes::new(v.bytes()))),
            ))?;
            t.serialize_element(&Seq::new(st.kv.iter().map(|(name, kv)| {
                let entries = kv
                    .iter()
                    .map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v)));
                (name, Seq::new(entries))
            })))?;
            t.serialize_element(&Seq::new(st.idempotency.iter()))?;
            t.serialize_element(&st.applied_index)?;
            t.serialize_element(&st.last_timestamp_ms)?;
            t.serialize_element(&st.settings)?;
            t.serialize_element(&st.settings_index)?;
            t.serialize_element(&Seq::new(st.tokens.records()))?;
            t.serialize_element(&Seq::new(st.events.iter().map(|(name, log)| {
                (
                    name,
                    log.dropped_through(),
                    Seq::new(log.iter().map(|(id, e)| (id, &**e))),
                )
            })))?;
            t.end()
        }
    }
    let mut out = Vec::with_capacity(8 + 4 + 16 + meta.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_be_bytes());
    out.extend_from_slice(meta);
    let len_at = out.len();
    out.extend_from_slice(&0u64.to_be_bytes());
    let body_len = bincode::serde::encode_into_std_write(
        BodyRef(state),
        &mut out,
        bincode::config::standard(),
    )
    .expect("writing to a Vec cannot fail");
    out[len_at..len_at + 8].copy_from_slice(&(body_len as u64).to_be_bytes());
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], SnapshotError> {
    if buf.len() < n {
        return Err(SnapshotError::Truncated);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn take_u64(buf: &mut &[u8]) -> Result<u64, SnapshotError> {
    Ok(u64::from_be_bytes(
        take(buf, 8)?.try_into().expect("8 bytes"),
    ))
}

/// Decodes snapshot bytes into the state and the Raft layer's metadata.
pub fn decode(bytes: &[u8]) -> Result<(State, Vec<u8>), SnapshotError> {
    let mut buf = bytes;
    if take(&mut buf, 8).map_err(|_| SnapshotError::BadMagic)? != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u32::from_be_bytes(take(&mut buf, 4)?.try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    if bytes.len() < 32 + 12 {
        return Err(SnapshotError::Truncated);
    }
    let (signed, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(signed).as_slice() != sum {
        return Err(SnapshotError::Checksum);
    }
    let mut buf = &signed[12..];
    let meta_len = take_u64(&mut buf)? as usize;
    let meta = take(&mut buf, meta_len)?.to_vec();
    let body_len = take_u64(&mut buf)? as usize;
    let body = take(&mut buf, body_len)?;
    // The checksum proves the bytes arrived intact, not that a peer wrote them
    // honestly: lengths inside the body must not reserve more than the body holds.
    let (body, _): (Body, usize) = crate::bounded_decode::decode_from_slice(body)
        .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    let mut state = State {
        plugins: body
            .plugins
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect(),
        code: body
            .code
            .into_iter()
            .map(|(k, v)| (k, Code::new(v.into_vec())))
            .collect(),
        kv: body
            .kv
            .into_iter()
            .map(|(name, entries)| (name, entries.0))
            .collect(),
        idempotency: imbl::OrdMap::new(),
        idempotency_by_index: imbl::OrdMap::new(),
        applied_index: body.applied_index,
        last_timestamp_ms: body.last_timestamp_ms,
        settings: body.settings,
        settings_index: body.settings_index,
        tokens: Tokens::from_records(body.tokens),
        events: body
            .events
            .into_iter()
            .map(|(name, dropped, events)| (name, EventLog::from_parts(events, dropped)))
            .collect(),
    };
    for (key, rec) in body.idempotency {
        state.idempotency_by_index.insert(rec.index, key.clone());
        state.idempotency.insert(key, rec);
    }
    Ok((state, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots written before keys and values went through serde's `bytes`
    /// encoded them as sequences of `u8`; both must be the same bytes, and
    /// such a list must decode into the same map.
    #[test]
    fn byte_strings_encode_as_the_element_sequences_older_snapshots_hold() {
        let cfg = bincode::config::standard();
        for len in [0usize, 1, 250, 251, 252, 300, 65_535, 65_536, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let old = bincode::serde::encode_to_vec(&v, cfg).unwrap();
            let new = bincode::serde::encode_to_vec(serde_bytes::Bytes::new(&v), cfg).unwrap();
            assert_eq!(old, new, "length {len}");
        }
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..300u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; i as usize]))
            .collect();
        let old = bincode::serde::encode_to_vec(&entries, cfg).unwrap();
        let (back, used): (KvEntries, usize) =
            crate::bounded_decode::decode_from_slice(&old).unwrap();
        assert_eq!(used, old.len());
        let expected: Kv = entries.into_iter().collect();
        assert_eq!(back.0, expected);
    }
}
