//! The durable Raft log and vote: openraft's v2 `RaftLogStorage` on Cairn's own WAL.
//!
//! Every write (vote, entries, truncation, purge, committed id) becomes one CRC'd record
//! in preallocated segment files, in call order (see `wal`). The WAL applies each record
//! to an in-memory index immediately (so appended entries are readable on return) and
//! its single flush thread writes whatever is queued with one `fdatasync`, then fires
//! the callbacks in order: one fsync covers every write that arrived during the last.
//!
//! Durability contract, per openraft:
//! * `save_vote` and `truncate_after` return only after their record is fsynced;
//! * `append` returns once the entries are readable; its `IOFlushed` fires after fsync;
//! * `purge` deletes a segment only after the purge record is fsynced;
//! * `save_committed` is only queued (the next append's or vote's fsync carries it):
//!   losing it only means re-applying a little more of the log after a crash.
//!
//! On-disk format: every segment header carries the WAL format version (`wal::format`)
//! and every payload a version byte (`codec`). A log directory in the format of
//! earlier builds (raft-log chunks) is converted once at open (`migrate`).

mod codec;
mod config;
mod error;
mod flushed;
mod migrate;
#[cfg(test)]
mod tests;
mod wal;

use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use self::codec::{RaftLogId, RaftVote, WalLogId, WalVote};
pub use self::config::LogStoreConfig;
pub use self::error::LogStoreError;
use self::flushed::Flushed;
use self::wal::Wal;
use crate::raft::types::TypeConfig;

type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;

/// Told of every command as it is appended (before it commits), so work the
/// command will need can start early: a follower starts compiling a deployed
/// component when the entry arrives, not when it applies. It must return at
/// once (it runs on the append path) and decide nothing.
pub type AppendHook = Arc<dyn Fn(&crate::state::Command) + Send + Sync>;

/// The durable Raft log of one node. Cloning is cheap (an `Arc`); all clones share one
/// WAL, and the WAL is closed (pending writes fsynced) when the last clone is dropped.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Writes do not wait for disk, except that the WAL blocks a writer while more than
    /// `flush_queue_max_bytes` await the flush thread. Reads of evicted payloads `pread`
    /// outside its lock.
    wal: Wal,
    /// Stop a range read once it has gathered this many payload bytes.
    read_batch_max_bytes: u64,
    /// Append-to-durable latency (queue, write and the group fsync), for `/metrics`.
    flush_seconds: Histogram,
    /// Bytes of records in the live segments, for `/metrics`.
    live_bytes: prometheus_client::metrics::gauge::Gauge,
    /// See [`AppendHook`]; set once by the node after opening.
    on_append: std::sync::OnceLock<AppendHook>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying it and cutting a torn tail.
    ///
    /// Blocking: it reads the whole log from disk. Only one process (and one `LogStore`)
    /// may hold a directory at a time; a lock file enforces this.
    pub fn open(dir: &Path, cfg: LogStoreConfig) -> Result<LogStore, LogStoreError> {
        cfg.validate()?;
        migrate::from_raft_log_if_present(dir, &cfg)?;
        let wal = Wal::open(dir, cfg.to_wal()).map_err(LogStoreError::io("open"))?;
        let st = wal.state().map_err(LogStoreError::io("open"))?;
        let live_bytes = wal.live_bytes().map_err(LogStoreError::io("open"))?;
        tracing::info!(
            dir = %dir.display(),
            vote = ?st.vote,
            last = ?st.last,
            committed = ?st.committed,
            purged = ?st.purged,
            "raft log opened"
        );

        Ok(LogStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                wal,
                read_batch_max_bytes: cfg.read_batch_max_bytes,
                flush_seconds: crate::raft::stats::latency_histogram(),
                live_bytes,
                on_append: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Bytes of records in the log's live segments (a shared gauge, kept current).
    pub fn live_bytes(&self) -> prometheus_client::metrics::gauge::Gauge {
        self.inner.live_bytes.clone()
    }

    /// Seconds from an append to the fsync that made it durable (shared series).
    pub fn flush_seconds(&self) -> Histogram {
        self.inner.flush_seconds.clone()
    }

    /// Installs the [`AppendHook`]; a second call is ignored.
    pub fn set_append_hook(&self, hook: AppendHook) {
        let _ = self.inner.on_append.set(hook);
    }

    /// Reads entries with index in `[start, end)`, stopping early (but never before the
    /// first entry) once `max_bytes` of payload are gathered.
    fn read_entries(&self, start: u64, end: u64, max_bytes: u64) -> io::Result<Vec<Entry>> {
        if start >= end {
            return Ok(Vec::new());
        }
        // Payloads come out as shared handles; decoding happens outside the WAL's lock.
        self.inner
            .wal
            .read(start, end, max_bytes)?
            .into_iter()
            .map(|(id, payload)| {
                Ok(Entry {
                    log_id: RaftLogId::from(id),
                    payload: codec::decode_payload(&payload)?,
                })
            })
            .collect()
    }
}

/// Waits for a flush callback sent through [`Flushed::Task`].
async fn flushed(rx: oneshot::Receiver<io::Result<()>>) -> io::Result<()> {
    rx.await
        .map_err(|_| io::Error::other("raft log flush thread stopped before reporting"))?
}

/// Converts any range of log indexes to `[start, end)`.
fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_bounds(&range);
        self.read_entries(start, end, u64::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<RaftVote>, io::Error> {
        Ok(self.inner.wal.state()?.vote.map(RaftVote::from))
    }

    /// Replication reads through here; bounding the bytes keeps one RPC from carrying
    /// (and one read from copying) an unbounded run of large entries.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_entries(start, end, self.inner.read_batch_max_bytes)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let st = self.inner.wal.state()?;
        // The WAL's `last` is already "the last entry, or the purge point if there is none".
        Ok(LogState {
            last_purged_log_id: st.purged.map(RaftLogId::from),
            last_log_id: st.last.map(RaftLogId::from),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &RaftVote) -> Result<(), io::Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .wal
            .save_vote(WalVote::from(vote), Flushed::Task(tx))?;
        flushed(rx).await
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> Result<(), io::Error> {
        let Some(committed) = committed.as_ref().map(WalLogId::from) else {
            return Ok(());
        };
        let st = self.inner.wal.state()?;
        // The committed id never moves back; a stale report has nothing to add.
        if st.committed >= Some(committed) {
            return Ok(());
        }
        // Only a restart hint: one past the last entry would point at nothing.
        if st.last < Some(committed) {
            tracing::warn!(?committed, last = ?st.last, "raft log: committed id past last entry not saved");
            return Ok(());
        }
        // Not even a flush of its own: the next append's (or vote's) fsync carries it.
        // A flush here woke the flush thread once more per commit on every node.
        self.inner.wal.commit(committed)
    }

    async fn read_committed(&mut self) -> Result<Option<RaftLogId>, io::Error> {
        Ok(self.inner.wal.state()?.committed.map(RaftLogId::from))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Encode before taking the WAL's lock: readers should not wait on bincode.
        let batch = entries
            .into_iter()
            .map(|e| {
                if let (Some(hook), openraft::EntryPayload::Normal(cmd)) =
                    (self.inner.on_append.get(), &e.payload)
                {
                    hook(cmd);
                }
                Ok((
                    WalLogId::from(&e.log_id),
                    codec::encode_payload(&e.payload)?,
                ))
            })
            .collect::<io::Result<Vec<_>>>()?;
        // The callback fires only after the fsync covering these records.
        let timed = Flushed::Raft {
            callback,
            appended: std::time::Instant::now(),
            flush_seconds: self.inner.flush_seconds.clone(),
        };
        self.inner.wal.append(batch, timed)
    }

    async fn truncate_after(&mut self, last_log_id: Option<RaftLogId>) -> Result<(), io::Error> {
        let keep_until = last_log_id.map_or(0, |id| id.index + 1);
        let end = self.inner.wal.state()?.last.map_or(0, |id| id.index + 1);
        if keep_until >= end {
            // Nothing after `last_log_id`.
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.inner.wal.truncate(keep_until, Flushed::Task(tx))?;
        flushed(rx).await
    }

    async fn purge(&mut self, log_id: RaftLogId) -> Result<(), io::Error> {
        // Nobody needs to wait for it: a purge lost in a crash only leaves
        // already-applied entries behind. Segments go once the record is durable.
        self.inner.wal.purge(WalLogId::from(&log_id))
    }
}
