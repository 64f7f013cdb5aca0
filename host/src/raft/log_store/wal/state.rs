//! The WAL's memory: what its records add up to (vote, committed id, purge point, the
//! entries and where each lies on disk), and the bytes queued for the flush thread.
//!
//! Appends and replay go through the same [`State::apply`], so what a reopened store
//! holds is by construction what the running one held.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;

use super::super::codec::{WalLogId, WalVote};
use super::super::flushed::Flushed;
use super::format::{self, Checkpoint, HEADER_BYTES, Record};

/// Where one record lies: segment number, offset of its frame, length with frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Location {
    /// The (segment, offset) just past this record, comparable with `State::durable`.
    fn end(&self) -> (u64, u64) {
        (self.segment, self.offset + self.len)
    }
}

/// One entry of the log.
pub(crate) struct Slot {
    pub(crate) id: WalLogId,
    pub(crate) at: Location,
    /// The encoded payload while cached; `None` once evicted (then read from disk).
    pub(crate) payload: Option<Bytes>,
}

/// What the store knows of one segment file.
#[derive(Default)]
pub(crate) struct SegmentInfo {
    /// Highest entry index ever written into it: it may go once that is purged.
    pub(crate) max_index: Option<u64>,
    /// Bytes written into it (header and records); what deleting it frees of the log.
    pub(crate) bytes: u64,
    /// Open for `pread` of evicted payloads and for the flush thread's writes; `None`
    /// until the flush thread creates the file.
    pub(crate) file: Option<Arc<File>>,
}

/// Bytes at one offset of one segment, queued for the flush thread.
pub(crate) struct SegmentWrite {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
}

/// Everything the flush thread has yet to do, in order.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) writes: Vec<SegmentWrite>,
    /// Told after the fsync covering every write queued before them.
    pub(crate) callbacks: Vec<Flushed>,
    /// Segments to delete once the purge records queued with them are durable.
    pub(crate) remove: Vec<u64>,
    pub(crate) bytes: u64,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.callbacks.is_empty() && self.remove.is_empty()
    }
}

pub(crate) struct State {
    pub(crate) vote: Option<WalVote>,
    pub(crate) committed: Option<WalLogId>,
    pub(crate) purged: Option<WalLogId>,
    /// The entry just before `entries` (the purge point, or a checkpoint's `last` while
    /// replaying a log whose older segments are gone).
    base: Option<WalLogId>,
    pub(crate) entries: VecDeque<Slot>,
    /// Payload bytes held by `entries`.
    cached_bytes: u64,
    /// Index of the oldest entry that may still hold its payload.
    evict_from: u64,
    pub(crate) segments: BTreeMap<u64, SegmentInfo>,
    /// The segment being appended to, and where the next record goes in it.
    pub(crate) active: u64,
    pub(crate) offset: u64,
    /// Whether the active segment holds more than its opening checkpoint.
    pub(crate) active_has_records: bool,
    /// Segments up to here are already queued for deletion.
    removed_upto: u64,
    /// Preallocated size of a segment; a record that does not fit starts a new one.
    segment_bytes: u64,
    pub(crate) pending: Pending,
    /// Everything before this (segment, offset) is on disk and fsynced.
    pub(crate) durable: (u64, u64),
    /// The flush thread's failure: after a failed write or fsync nothing is certain,
    /// so every later call fails with this.
    pub(crate) failed: Option<(io::ErrorKind, String)>,
    pub(crate) closed: bool,
    /// Bytes of records in the live segments (not their preallocated size): shared
    /// with `/metrics` as `cairn_log_bytes`.
    pub(crate) live_bytes: Gauge,
}

impl State {
    pub(crate) fn new(segment_bytes: u64) -> State {
        State {
            vote: None,
            committed: None,
            purged: None,
            base: None,
            entries: VecDeque::new(),
            cached_bytes: 0,
            evict_from: 0,
            segments: BTreeMap::new(),
            active: 0,
            offset: HEADER_BYTES,
            active_has_records: false,
            removed_upto: 0,
            segment_bytes,
            pending: Pending::default(),
            durable: (0, 0),
            failed: None,
            closed: false,
            live_bytes: Gauge::default(),
        }
    }

    /// The last entry, or the point before the (empty) log.
    pub(crate) fn last(&self) -> Option<WalLogId> {
        self.entries.back().map(|s| s.id).or(self.base)
    }

    /// Whether entries before the first one held were neither purged nor found: the
    /// log starts at a checkpoint whose older segments are gone without a purge.
    pub(crate) fn missing_prefix(&self) -> bool {
        self.base != self.purged
    }

    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            vote: self.vote,
            committed: self.committed,
            purged: self.purged,
            last: self.last(),
        }
    }

    /// The position of entry `index` in `entries`, if present.
    pub(crate) fn position(&self, index: u64) -> Option<usize> {
        let first = self.entries.front()?.id.index;
        let at = usize::try_from(index.checked_sub(first)?).ok()?;
        (at < self.entries.len()).then_some(at)
    }

    /// Fails if the flush thread has failed.
    pub(crate) fn check(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!("log store stopped after a failed write: {msg}"),
            )),
        }
    }

    /// Checks `record` against the log, queues its bytes and applies it.
    pub(crate) fn record(&mut self, record: &Record<'_>, payload: Option<Bytes>) -> io::Result<()> {
        self.check()?;
        if let Record::Entry { id, .. } = record {
            self.check_next(id)?;
        }
        let mut bytes = Vec::new();
        let len = format::encode(record, &mut bytes);
        if self.offset + len > self.segment_bytes && self.active_has_records {
            self.rotate();
        }
        let at = self.queue(bytes);
        self.active_has_records = true;
        self.apply(record, at, payload)
    }

    /// Starts the next segment with a checkpoint of the state so far.
    fn rotate(&mut self) {
        self.active += 1;
        self.offset = HEADER_BYTES;
        self.count_bytes(self.active, HEADER_BYTES);
        self.write_checkpoint();
    }

    /// Counts `bytes` more as written into segment `n`.
    pub(crate) fn count_bytes(&mut self, n: u64, bytes: u64) {
        self.segments.entry(n).or_default().bytes += bytes;
        self.live_bytes
            .inc_by(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Forgets segment `n` (its file was deleted).
    pub(crate) fn forget_segment(&mut self, n: u64) {
        if let Some(seg) = self.segments.remove(&n) {
            self.live_bytes
                .dec_by(i64::try_from(seg.bytes).unwrap_or(i64::MAX));
        }
    }

    /// Queues a checkpoint at the current offset (a new segment's first record).
    pub(crate) fn write_checkpoint(&mut self) {
        let mut bytes = Vec::new();
        format::encode(&Record::Checkpoint(self.checkpoint()), &mut bytes);
        self.queue(bytes);
    }

    fn queue(&mut self, bytes: Vec<u8>) -> Location {
        let at = Location {
            segment: self.active,
            offset: self.offset,
            len: bytes.len() as u64,
        };
        self.offset += at.len;
        self.pending.bytes += at.len;
        self.count_bytes(at.segment, at.len);
        match self.pending.writes.last_mut() {
            Some(w) if w.segment == at.segment && w.offset + w.data.len() as u64 == at.offset => {
                w.data.extend_from_slice(&bytes)
            }
            _ => self.pending.writes.push(SegmentWrite {
                segment: at.segment,
                offset: at.offset,
                data: bytes,
            }),
        }
        at
    }

    fn check_next(&self, id: &WalLogId) -> io::Result<()> {
        match self.last() {
            Some(last) if id.index != last.index + 1 => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("log entry {} cannot follow entry {}", id.index, last.index),
            )),
            _ => Ok(()),
        }
    }

    /// Applies one record found at `at` (written now, or read back at open).
    pub(crate) fn apply(
        &mut self,
        record: &Record<'_>,
        at: Location,
        payload: Option<Bytes>,
    ) -> io::Result<()> {
        match record {
            Record::Entry { id, payload: raw } => {
                self.check_next(id)?;
                let payload = payload.unwrap_or_else(|| Bytes::copy_from_slice(raw));
                self.cached_bytes += payload.len() as u64;
                let seg = self.segments.entry(at.segment).or_default();
                seg.max_index = seg.max_index.max(Some(id.index));
                self.entries.push_back(Slot {
                    id: *id,
                    at,
                    payload: Some(payload),
                });
            }
            Record::Vote(v) => self.vote = Some(*v),
            Record::Committed(id) => self.committed = self.committed.max(Some(*id)),
            Record::Truncate { keep_until } => {
                while self
                    .entries
                    .back()
                    .is_some_and(|s| s.id.index >= *keep_until)
                {
                    self.drop_slot(false);
                }
                self.evict_from = self.evict_from.min(*keep_until);
            }
            Record::Purge(id) => self.purge(*id),
            Record::Checkpoint(c) => {
                if let Some(v) = c.vote
                    && self.vote.is_none_or(|mine| v > mine)
                {
                    self.vote = Some(v);
                }
                self.committed = self.committed.max(c.committed);
                if let Some(p) = c.purged {
                    self.purge(p);
                }
                if self.entries.is_empty() && c.last > self.base {
                    self.base = c.last;
                }
            }
        }
        Ok(())
    }

    fn purge(&mut self, id: WalLogId) {
        while self.entries.front().is_some_and(|s| s.id.index <= id.index) {
            self.drop_slot(true);
        }
        self.purged = self.purged.max(Some(id));
        self.base = self.base.max(Some(id));
        self.evict_from = self.evict_from.max(id.index + 1);
    }

    fn drop_slot(&mut self, front: bool) {
        let slot = if front {
            self.entries.pop_front()
        } else {
            self.entries.pop_back()
        };
        if let Some(p) = slot.and_then(|s| s.payload) {
            self.cached_bytes -= p.len() as u64;
        }
    }

    /// Segments older than the active one whose entries are all purged, oldest first,
    /// not yet queued for deletion. Stops at the first one still needed, so the files
    /// left always form one run.
    pub(crate) fn purgeable_segments(&mut self) -> Vec<u64> {
        let purged = self.purged.map(|p| p.index);
        let mut out = Vec::new();
        for (&n, seg) in self.segments.range(self.removed_upto..) {
            let gone = match seg.max_index {
                None => true,
                Some(max) => purged.is_some_and(|p| max <= p),
            };
            if n >= self.active || !gone {
                break;
            }
            out.push(n);
        }
        if let Some(&n) = out.last() {
            self.removed_upto = n + 1;
        }
        out
    }

    /// Drops cached payloads, oldest first, until at most `max_bytes` remain; only
    /// durable ones (an evicted payload is read back from its segment).
    pub(crate) fn evict(&mut self, max_bytes: u64) {
        while self.cached_bytes > max_bytes {
            let Some(at) = self.position(self.evict_from) else {
                return;
            };
            let slot = &mut self.entries[at];
            if slot.at.end() > self.durable {
                return;
            }
            if let Some(p) = slot.payload.take() {
                self.cached_bytes -= p.len() as u64;
            }
            self.evict_from += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: u64) -> WalLogId {
        WalLogId {
            term: 1,
            node_id: 1,
            index,
        }
    }

    fn entry(st: &mut State, index: u64) -> io::Result<()> {
        let payload = vec![index as u8; 100];
        st.record(
            &Record::Entry {
                id: id(index),
                payload: &payload,
            },
            Some(Bytes::from(payload.clone())),
        )
    }

    #[test]
    fn entries_must_follow_on_and_records_fill_segments_in_order() {
        let mut st = State::new(1024);
        st.segments.entry(0).or_default();
        for i in 1..=20 {
            entry(&mut st, i).unwrap();
        }
        assert!(entry(&mut st, 22).is_err(), "a gap is refused");
        assert!(entry(&mut st, 20).is_err(), "a repeat is refused");
        assert_eq!(Some(id(20)), st.last());
        // 20 records of 133 bytes in 1 KiB segments: several segments, each opening
        // with a checkpoint, the writes contiguous inside a segment.
        assert!(st.active >= 2, "{}", st.active);
        for w in &st.pending.writes {
            assert!(w.offset + w.data.len() as u64 <= 1024);
            assert!(matches!(
                format::decode(&w.data),
                format::Decoded::Record(_, _)
            ));
        }
    }

    #[test]
    fn purge_truncate_and_eviction_keep_the_books() {
        let mut st = State::new(1024);
        st.segments.entry(0).or_default();
        for i in 1..=20 {
            entry(&mut st, i).unwrap();
        }
        st.record(&Record::Truncate { keep_until: 18 }, None)
            .unwrap();
        assert_eq!(Some(id(17)), st.last());
        st.record(&Record::Purge(id(9)), None).unwrap();
        assert_eq!(Some(10), st.entries.front().map(|s| s.id.index));
        let gone = st.purgeable_segments();
        assert!(!gone.is_empty() && gone.iter().all(|&n| n < st.active));
        assert!(st.purgeable_segments().is_empty(), "queued once only");

        // Nothing is durable yet, so nothing may be evicted.
        st.evict(0);
        assert!(st.entries.iter().all(|s| s.payload.is_some()));
        st.durable = (st.active, st.offset);
        st.evict(0);
        assert!(st.entries.iter().all(|s| s.payload.is_none()));
        assert_eq!(0, st.cached_bytes);

        // Purging past the end leaves an empty log that continues after the purge point.
        st.record(&Record::Purge(id(30)), None).unwrap();
        assert_eq!(Some(id(30)), st.last());
        entry(&mut st, 31).unwrap();
    }
}
