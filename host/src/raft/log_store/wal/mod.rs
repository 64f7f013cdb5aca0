//! Cairn's write-ahead log: preallocated segment files of checksummed records, made
//! durable by one flush thread that group-commits whatever is queued.
//!
//! Why not a general-purpose WAL: the one used before (raft-log) held every lone write
//! back for a fixed batching wait, and appended to growing files, so each fsync also
//! committed the filesystem's journal (three nodes on one disk queued behind each other
//! there). Here segments are zero-filled ahead of use (see `segment::prepare`), a write
//! is an overwrite in place, and a write is fsynced as soon as the previous fsync ends.
//!
//! Writers (openraft's calls) encode a record, queue its bytes and apply it to the
//! in-memory [`State`] at once, so an appended entry is readable on return; the flush
//! thread writes, fsyncs and then fires the callbacks in order.

mod flusher;
pub(crate) mod format;
mod replay;
mod segment;
mod state;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LockResult, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;

use super::codec::{WalLogId, WalVote};
use super::error::LogStoreError;
use super::flushed::Flushed;
use format::{Decoded, ENTRY_PREFIX_BYTES, HEADER_BYTES, Record};
use state::State;

/// Sizes and policies of one WAL (see `LogStoreConfig` for their meaning).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalOptions {
    pub(crate) segment_bytes: u64,
    pub(crate) cache_max_bytes: u64,
    pub(crate) queue_max_bytes: u64,
    pub(crate) repair_damaged_tail: bool,
}

/// What the flush thread and the writers share.
pub(super) struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the flush thread: something waits for durability.
    wake: Condvar,
    /// Wakes writers held back by a full queue.
    room: Condvar,
    segment_bytes: u64,
    cache_max_bytes: u64,
    queue_max_bytes: u64,
}

/// The log's state but the entries, as one consistent read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalState {
    pub(crate) vote: Option<WalVote>,
    pub(crate) committed: Option<WalLogId>,
    pub(crate) purged: Option<WalLogId>,
    pub(crate) last: Option<WalLogId>,
}

/// An open WAL. Dropping it writes and fsyncs whatever is queued, then stops the thread.
pub(crate) struct Wal {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    /// The directory lock, released when the WAL closes.
    _lock: File,
}

/// Takes a lock even if a panicking thread poisoned it (the flush thread must go on
/// failing callbacks rather than die silently).
fn relock<T>(r: LockResult<T>) -> T {
    r.unwrap_or_else(PoisonError::into_inner)
}

impl Wal {
    /// Opens the WAL in `dir`, creating it if empty. Blocking: it reads every segment.
    pub(crate) fn open(dir: &Path, opts: WalOptions) -> io::Result<Wal> {
        fs::create_dir_all(dir)?;
        let lock = segment::lock(dir)?;
        let numbers = segment::list(dir)?;
        let (mut st, needs_checkpoint) = if numbers.is_empty() {
            let file = segment::prepare(dir, 1, opts.segment_bytes)?;
            segment::install(dir, 1)?;
            if let Some(parent) = dir.parent() {
                segment::sync_dir(parent)?;
            }
            let mut st = State::new(opts.segment_bytes);
            st.active = 1;
            st.durable = (1, HEADER_BYTES);
            st.segments.entry(1).or_default().file = Some(Arc::new(file));
            st.count_bytes(1, HEADER_BYTES);
            (st, true)
        } else {
            replay::replay(dir, &numbers, opts.segment_bytes, opts.repair_damaged_tail)?
        };
        if needs_checkpoint {
            st.write_checkpoint();
        }
        st.evict(opts.cache_max_bytes);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(st),
            wake: Condvar::new(),
            room: Condvar::new(),
            segment_bytes: opts.segment_bytes,
            cache_max_bytes: opts.cache_max_bytes,
            queue_max_bytes: opts.queue_max_bytes,
        });
        let flusher = std::thread::Builder::new()
            .name("cairn-wal-flush".into())
            .spawn({
                let shared = shared.clone();
                move || flusher::run(shared)
            })?;
        let wal = Wal {
            shared,
            flusher: Some(flusher),
            _lock: lock,
        };
        if needs_checkpoint {
            wal.sync()?;
        }
        Ok(wal)
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        self.shared
            .state
            .lock()
            .map_err(|_| LogStoreError::Poisoned.into())
    }

    /// Runs `f` on the state once the queue has room, then queues `done` behind it.
    fn write(
        &self,
        done: Option<Flushed>,
        f: impl FnOnce(&mut State) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut st = self.lock()?;
        while st.pending.bytes > self.shared.queue_max_bytes && st.failed.is_none() {
            st = self
                .shared
                .room
                .wait(st)
                .map_err(|_| io::Error::from(LogStoreError::Poisoned))?;
        }
        st.check()?;
        f(&mut st)?;
        let wake = done.is_some() || !st.pending.remove.is_empty();
        st.pending.callbacks.extend(done);
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Bytes of records in the live segments, kept current as the log changes.
    pub(crate) fn live_bytes(&self) -> io::Result<prometheus_client::metrics::gauge::Gauge> {
        Ok(self.lock()?.live_bytes.clone())
    }

    pub(crate) fn state(&self) -> io::Result<WalState> {
        let st = self.lock()?;
        Ok(WalState {
            vote: st.vote,
            committed: st.committed,
            purged: st.purged,
            last: st.last(),
        })
    }

    /// Appends entries (id and encoded payload) that must follow the last one in order.
    pub(crate) fn append(
        &self,
        entries: Vec<(WalLogId, Vec<u8>)>,
        done: Flushed,
    ) -> io::Result<()> {
        self.write(Some(done), |st| {
            let mut prev = st.last();
            for (id, _) in &entries {
                if let Some(p) = prev
                    && id.index != p.index + 1
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("log entry {} cannot follow entry {}", id.index, p.index),
                    ));
                }
                prev = Some(*id);
            }
            for (id, payload) in entries {
                let payload = Bytes::from(payload);
                let record = Record::Entry {
                    id,
                    payload: &payload,
                };
                st.record(&record, Some(payload.clone()))?;
            }
            Ok(())
        })
    }

    pub(crate) fn save_vote(&self, vote: WalVote, done: Flushed) -> io::Result<()> {
        self.write(Some(done), |st| st.record(&Record::Vote(vote), None))
    }

    /// Records the committed id without waking the flush thread: the next durable write
    /// carries it (losing it only means re-applying a little more after a crash).
    pub(crate) fn commit(&self, id: WalLogId) -> io::Result<()> {
        self.write(None, |st| st.record(&Record::Committed(id), None))
    }

    /// Drops entries from `keep_until` on.
    pub(crate) fn truncate(&self, keep_until: u64, done: Flushed) -> io::Result<()> {
        self.write(Some(done), |st| {
            st.record(&Record::Truncate { keep_until }, None)
        })
    }

    /// Drops entries up to `id` and queues the deletion of segments holding only those,
    /// which happens after the purge record is durable.
    pub(crate) fn purge(&self, id: WalLogId) -> io::Result<()> {
        self.write(None, |st| {
            st.record(&Record::Purge(id), None)?;
            let gone = st.purgeable_segments();
            st.pending.remove.extend(gone);
            Ok(())
        })
    }

    /// Blocks until everything queued so far is durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.write(Some(Flushed::Thread(tx)), |_| Ok(()))?;
        rx.recv()
            .map_err(|_| io::Error::other("raft log flush thread stopped"))?
    }

    /// Entries with index in `[start, end)` that the log holds, stopping once `max_bytes`
    /// of payload are gathered (never before the first).
    pub(crate) fn read(
        &self,
        start: u64,
        end: u64,
        max_bytes: u64,
    ) -> io::Result<Vec<(WalLogId, Bytes)>> {
        // Cached payloads are shared handles; evicted ones are read after unlocking.
        let mut found: Vec<(WalLogId, Payload)> = Vec::new();
        {
            let st = self.lock()?;
            st.check()?;
            let Some(first) = st.entries.front().map(|s| s.id.index) else {
                return Ok(Vec::new());
            };
            let Some(from) = st.position(start.max(first)) else {
                return Ok(Vec::new());
            };
            let mut bytes = 0u64;
            for slot in st.entries.range(from..) {
                if slot.id.index >= end || (bytes >= max_bytes && !found.is_empty()) {
                    break;
                }
                bytes += slot.at.len - ENTRY_PREFIX_BYTES;
                let data = match &slot.payload {
                    Some(p) => Payload::Cached(p.clone()),
                    None => {
                        let file = st
                            .segments
                            .get(&slot.at.segment)
                            .and_then(|s| s.file.clone())
                            .ok_or_else(|| io::Error::other("segment of a live entry is gone"))?;
                        Payload::OnDisk(file, slot.at)
                    }
                };
                found.push((slot.id, data));
            }
        }
        found
            .into_iter()
            .map(|(id, data)| match data {
                Payload::Cached(p) => Ok((id, p)),
                Payload::OnDisk(file, at) => Ok((id, read_payload(&file, at, id)?)),
            })
            .collect()
    }
}

/// A payload found by a read: in memory, or where to read it from.
enum Payload {
    Cached(Bytes),
    OnDisk(Arc<File>, state::Location),
}

/// Reads an evicted entry's record back from its segment, checking it is intact.
fn read_payload(file: &File, at: state::Location, want: WalLogId) -> io::Result<Bytes> {
    let mut buf = vec![0u8; at.len as usize];
    file.read_exact_at(&mut buf, at.offset)?;
    match format::decode(&buf) {
        Decoded::Record(Record::Entry { id, payload }, _) if id == want => {
            Ok(Bytes::copy_from_slice(payload))
        }
        Decoded::Bad(why) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log entry {} damaged on disk: {why}", want.index),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("log entry {} is not where the index says", want.index),
        )),
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        relock(self.shared.state.lock()).closed = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.flusher.take()
            && h.join().is_err()
        {
            tracing::error!("raft log flush thread panicked");
        }
    }
}
