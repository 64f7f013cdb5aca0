//! The WAL's bytes on disk: the segment header and the checksummed record frame.
//!
//! A segment file is a [`HEADER_BYTES`] header, then records back to back, then zeros:
//! segments are zero-filled when created, so appending never changes the file's size or
//! extents and an `fdatasync` flushes data only (no filesystem journal commit).
//!
//! Header: `"CAIRNWAL"` | format version u32 | segment number u64 | 8 reserved zero
//! bytes | crc32 of the 28 bytes before it. Record: body length u32 | crc32 of the
//! length bytes and the body u32 | body. A zero length (with a zero crc) ends the data.
//! Body: a kind byte, then that kind's fields; every integer is little-endian.
//! Entry payloads are the versioned envelope of `codec::encode_payload`, so payload
//! encodings evolve without touching this framing.

use super::super::codec::{WalLogId, WalVote};

/// Bytes before the first record of a segment.
pub(crate) const HEADER_BYTES: u64 = 32;
/// Frame bytes before a record's body (length and crc).
pub(crate) const FRAME_BYTES: u64 = 8;
/// Bytes of an entry record before its payload: frame, kind, log id.
pub(crate) const ENTRY_PREFIX_BYTES: u64 = FRAME_BYTES + 1 + 24;
/// The segment layout this build writes and reads. Version 1 was the raft-log chunk
/// format of earlier builds (see `migrate`).
pub(crate) const WAL_FORMAT_VERSION: u32 = 2;

const MAGIC: &[u8; 8] = b"CAIRNWAL";

const KIND_ENTRY: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_COMMITTED: u8 = 3;
const KIND_TRUNCATE: u8 = 4;
const KIND_PURGE: u8 = 5;
const KIND_CHECKPOINT: u8 = 6;

/// The store's whole state but the entries: every segment starts with one, so deleting
/// older segments never loses the vote, the committed id or the purge point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) vote: Option<WalVote>,
    pub(crate) committed: Option<WalLogId>,
    pub(crate) purged: Option<WalLogId>,
    /// The last entry when the segment began: the next entry in it follows this one.
    pub(crate) last: Option<WalLogId>,
}

/// One record, borrowing the payload of an entry from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Entry {
        id: WalLogId,
        payload: &'a [u8],
    },
    Vote(WalVote),
    Committed(WalLogId),
    /// Entries from this index on are gone.
    Truncate {
        keep_until: u64,
    },
    Purge(WalLogId),
    Checkpoint(Checkpoint),
}

/// What sits at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole, intact record and its length in bytes, frame included.
    Record(Record<'a>, u64),
    /// Zeros: the data ends here.
    End,
    /// Not a record: torn by a crash, or damaged.
    Bad(String),
}

/// The header of segment `number`.
pub(crate) fn header(number: u64) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&number.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a header read from the file named as segment `number`.
pub(crate) fn check_header(bytes: &[u8], number: u64) -> Result<(), String> {
    let Some(h) = bytes.get(..HEADER_BYTES as usize) else {
        return Err(format!(
            "segment shorter than its {HEADER_BYTES}-byte header"
        ));
    };
    if &h[..8] != MAGIC {
        return Err("not a Cairn WAL segment (bad magic)".into());
    }
    if crc32fast::hash(&h[..28]).to_le_bytes() != h[28..32] {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != WAL_FORMAT_VERSION {
        return Err(format!(
            "segment format version {version}; this build reads version {WAL_FORMAT_VERSION}"
        ));
    }
    let found = u64::from_le_bytes(h[12..20].try_into().expect("8 bytes"));
    if found != number {
        return Err(format!(
            "header says segment {found}, file name says {number}"
        ));
    }
    Ok(())
}

/// Appends the framed `record` to `out` and returns its length, frame included.
pub(crate) fn encode(record: &Record<'_>, out: &mut Vec<u8>) -> u64 {
    let start = out.len();
    // Reserve once: growing from empty reallocates several times per entry on
    // the write path (visible in the 64-client profile).
    out.reserve(FRAME_BYTES as usize + body_bytes_hint(record));
    out.extend_from_slice(&[0; FRAME_BYTES as usize]);
    match record {
        Record::Entry { id, payload } => {
            out.push(KIND_ENTRY);
            put_id(out, id);
            out.extend_from_slice(payload);
        }
        Record::Vote(v) => {
            out.push(KIND_VOTE);
            put_vote(out, v);
        }
        Record::Committed(id) => {
            out.push(KIND_COMMITTED);
            put_id(out, id);
        }
        Record::Truncate { keep_until } => {
            out.push(KIND_TRUNCATE);
            out.extend_from_slice(&keep_until.to_le_bytes());
        }
        Record::Purge(id) => {
            out.push(KIND_PURGE);
            put_id(out, id);
        }
        Record::Checkpoint(c) => {
            out.push(KIND_CHECKPOINT);
            put_opt(out, c.vote.as_ref(), put_vote);
            put_opt(out, c.committed.as_ref(), put_id);
            put_opt(out, c.purged.as_ref(), put_id);
            put_opt(out, c.last.as_ref(), put_id);
        }
    }
    let body_len = out.len() - start - FRAME_BYTES as usize;
    // Payloads are bounded far below this by the API's body limits; a bigger one would
    // be a bug, and a wrapped length would corrupt the log.
    let body_len = u32::try_from(body_len).expect("a WAL record over 4 GiB");
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start..start + 4]);
    crc.update(&out[start + FRAME_BYTES as usize..]);
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    (out.len() - start) as u64
}

/// Bytes `record`'s body takes (exact for an entry, an upper bound otherwise).
fn body_bytes_hint(record: &Record<'_>) -> usize {
    const KIND: usize = 1;
    const ID: usize = 24;
    match record {
        Record::Entry { payload, .. } => KIND + ID + payload.len(),
        _ => KIND + 4 * (1 + ID),
    }
}

/// Reads the record at the start of `buf` (the rest of a segment).
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < FRAME_BYTES as usize {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("a record frame cut short".into())
        };
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len == 0 {
        return if crc == 0 {
            Decoded::End
        } else {
            Decoded::Bad("zero-length record with a checksum".into())
        };
    }
    let Some(body) = buf.get(FRAME_BYTES as usize..FRAME_BYTES as usize + len) else {
        return Decoded::Bad(format!("record of {len} bytes runs past the segment's end"));
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buf[..4]);
    hasher.update(body);
    if hasher.finalize() != crc {
        return Decoded::Bad("record checksum mismatch".into());
    }
    match parse_body(body) {
        Some(r) => Decoded::Record(r, FRAME_BYTES + len as u64),
        None => Decoded::Bad("record body does not parse".into()),
    }
}

fn parse_body(body: &[u8]) -> Option<Record<'_>> {
    let (&kind, mut rest) = body.split_first()?;
    let r = &mut rest;
    let record = match kind {
        KIND_ENTRY => {
            let id = take_id(r)?;
            return Some(Record::Entry { id, payload: r });
        }
        KIND_VOTE => Record::Vote(take_vote(r)?),
        KIND_COMMITTED => Record::Committed(take_id(r)?),
        KIND_TRUNCATE => Record::Truncate {
            keep_until: take_u64(r)?,
        },
        KIND_PURGE => Record::Purge(take_id(r)?),
        KIND_CHECKPOINT => Record::Checkpoint(Checkpoint {
            vote: take_opt(r, take_vote)?,
            committed: take_opt(r, take_id)?,
            purged: take_opt(r, take_id)?,
            last: take_opt(r, take_id)?,
        }),
        _ => return None,
    };
    // Only an entry's payload runs to the end; anything left over is not what we wrote.
    rest.is_empty().then_some(record)
}

fn put_id(out: &mut Vec<u8>, id: &WalLogId) {
    for v in [id.term, id.node_id, id.index] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_vote(out: &mut Vec<u8>, v: &WalVote) {
    out.extend_from_slice(&v.term.to_le_bytes());
    out.extend_from_slice(&v.node_id.to_le_bytes());
    out.push(u8::from(v.committed));
}

fn put_opt<T>(out: &mut Vec<u8>, v: Option<&T>, put: fn(&mut Vec<u8>, &T)) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

fn take_u64(r: &mut &[u8]) -> Option<u64> {
    let (head, rest) = r.split_first_chunk::<8>()?;
    *r = rest;
    Some(u64::from_le_bytes(*head))
}

fn take_id(r: &mut &[u8]) -> Option<WalLogId> {
    Some(WalLogId {
        term: take_u64(r)?,
        node_id: take_u64(r)?,
        index: take_u64(r)?,
    })
}

fn take_vote(r: &mut &[u8]) -> Option<WalVote> {
    let term = take_u64(r)?;
    let node_id = take_u64(r)?;
    let (&committed, rest) = r.split_first()?;
    *r = rest;
    Some(WalVote {
        term,
        node_id,
        committed: match committed {
            0 => false,
            1 => true,
            _ => return None,
        },
    })
}

fn take_opt<T>(r: &mut &[u8], take: fn(&mut &[u8]) -> Option<T>) -> Option<Option<T>> {
    let (&tag, rest) = r.split_first()?;
    *r = rest;
    match tag {
        0 => Some(None),
        1 => take(r).map(Some),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, index: u64) -> WalLogId {
        WalLogId {
            term,
            node_id: 7,
            index,
        }
    }

    fn samples() -> Vec<Record<'static>> {
        let vote = WalVote {
            term: 3,
            node_id: 2,
            committed: true,
        };
        vec![
            Record::Entry {
                id: id(1, 5),
                payload: b"\x03payload",
            },
            Record::Entry {
                id: id(1, 6),
                payload: b"",
            },
            Record::Vote(vote),
            Record::Committed(id(2, 9)),
            Record::Truncate { keep_until: 4 },
            Record::Purge(id(1, 3)),
            Record::Checkpoint(Checkpoint::default()),
            Record::Checkpoint(Checkpoint {
                vote: Some(vote),
                committed: Some(id(2, 9)),
                purged: Some(id(1, 3)),
                last: Some(id(2, 10)),
            }),
        ]
    }

    #[test]
    fn every_record_kind_roundtrips_and_reports_its_length() {
        let mut buf = Vec::new();
        let lens: Vec<u64> = samples().iter().map(|r| encode(r, &mut buf)).collect();
        buf.extend_from_slice(&[0; 16]);
        let mut at = 0usize;
        for (want, len) in samples().into_iter().zip(lens) {
            assert_eq!(Decoded::Record(want, len), decode(&buf[at..]));
            at += len as usize;
        }
        assert_eq!(Decoded::End, decode(&buf[at..]));
        assert_eq!(Decoded::End, decode(&[0; 3]));
        assert_eq!(
            ENTRY_PREFIX_BYTES + 8,
            encode(&samples()[0], &mut Vec::new())
        );
    }

    #[test]
    fn any_flipped_bit_or_cut_is_detected() {
        for record in samples() {
            let mut good = Vec::new();
            encode(&record, &mut good);
            for byte in 0..good.len() {
                for bit in 0..8 {
                    let mut bad = good.clone();
                    bad[byte] ^= 1 << bit;
                    bad.extend_from_slice(&[0; 64]);
                    assert!(
                        matches!(decode(&bad), Decoded::Bad(_)),
                        "{record:?} with bit {bit} of byte {byte} flipped"
                    );
                }
            }
            for cut in 1..good.len() {
                assert!(
                    matches!(decode(&good[..cut]), Decoded::Bad(_)),
                    "{record:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn header_checks_magic_version_number_and_crc() {
        let h = header(42);
        assert_eq!(Ok(()), check_header(&h, 42));
        assert!(check_header(&h, 43).unwrap_err().contains("segment 42"));
        assert!(check_header(&h[..20], 42).is_err());
        let mut v = h;
        v[8] = 1;
        assert!(check_header(&v, 42).is_err());
        let mut m = h;
        m[0] = b'X';
        assert!(check_header(&m, 42).unwrap_err().contains("magic"));
    }
}
