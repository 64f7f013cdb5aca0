//! The durable Raft log and vote: openraft's v2 `RaftLogStorage` on raft-log's chunked WAL.
//!
//! Every write (vote, entries, truncation, purge, committed id) becomes one CRC'd record
//! in raft-log's append-only chunk files, in call order. raft-log applies each record to
//! an in-memory index immediately (so appended entries are readable on return) and hands
//! the bytes to its single flush thread, which groups whatever is queued into one write
//! plus one `fdatasync` and then fires the callbacks in order. That group commit is what
//! lets one fsync cover many appends.
//!
//! Durability contract, per openraft:
//! * `save_vote` and `truncate_after` return only after their record is fsynced;
//! * `append` returns once the entries are readable; its `IOFlushed` fires after fsync;
//! * `purge` persists the purge record before raft-log deletes any chunk file;
//! * `save_committed` is only buffered (the next append's or vote's flush writes and
//!   fsyncs it): losing it only means re-applying a little more of the log after a crash.
//!
//! On-disk format: raft-log versions its record framing and checkpoints; this store adds
//! a format marker (see `codec`) and a version byte on every payload.

mod codec;
mod config;
mod error;
mod raft_log_types;
mod repair;
#[cfg(test)]
mod tests;

use std::fmt;

use prometheus_client::metrics::histogram::Histogram;
use std::fs;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use raft_log::RaftLog;
use raft_log::api::raft_log_writer::RaftLogWriter;
use tokio::sync::oneshot;

use self::codec::{RaftLogId, RaftVote, STORE_FORMAT_VERSION, StoreMeta, WalLogId, WalVote};
pub use self::config::LogStoreConfig;
pub use self::error::LogStoreError;
use self::raft_log_types::{Flushed, WalTypes};
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
    /// Readers may hit disk (a `pread`) on a cache miss, so they share the lock; writers
    /// only encode into raft-log's buffer and enqueue, so the exclusive section is short.
    /// Never held across an `.await`. Writes do not wait for disk, except that raft-log
    /// blocks a writer while more than `flush_queue_max_bytes` await the flush thread.
    wal: RwLock<RaftLog<WalTypes>>,
    /// Stop a range read once it has gathered this many payload bytes.
    read_batch_max_bytes: u64,
    /// Append-to-durable latency (queue, write and the group fsync), for `/metrics`.
    flush_seconds: Histogram,
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
    /// Blocking: it reads the whole log index from disk. Only one process (and one
    /// `LogStore`) may hold a directory at a time; raft-log enforces this with a lock file.
    pub fn open(dir: &Path, cfg: LogStoreConfig) -> Result<LogStore, LogStoreError> {
        cfg.validate()?;
        fs::create_dir_all(dir).map_err(LogStoreError::io("create directory"))?;
        let rl_cfg = cfg.to_raft_log(dir)?;

        let mut wal = open_wal(&rl_cfg, cfg.repair_damaged_tail)?;
        ensure_format(&mut wal, dir)?;
        let st = wal.log_state();
        tracing::info!(
            dir = %dir.display(),
            vote = ?st.vote(),
            last = ?st.last(),
            committed = ?st.committed(),
            purged = ?st.purged(),
            "raft log opened"
        );

        Ok(LogStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                wal: RwLock::new(wal),
                read_batch_max_bytes: cfg.read_batch_max_bytes,
                flush_seconds: crate::raft::stats::latency_histogram(),
                on_append: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Seconds from an append to the fsync that made it durable (shared series).
    pub fn flush_seconds(&self) -> Histogram {
        self.inner.flush_seconds.clone()
    }

    /// Installs the [`AppendHook`]; a second call is ignored.
    pub fn set_append_hook(&self, hook: AppendHook) {
        let _ = self.inner.on_append.set(hook);
    }

    fn read_wal(&self) -> io::Result<RwLockReadGuard<'_, RaftLog<WalTypes>>> {
        self.inner
            .wal
            .read()
            .map_err(|_| LogStoreError::Poisoned.into())
    }

    fn write_wal(&self) -> io::Result<RwLockWriteGuard<'_, RaftLog<WalTypes>>> {
        self.inner
            .wal
            .write()
            .map_err(|_| LogStoreError::Poisoned.into())
    }

    /// Reads entries with index in `[start, end)`, stopping early (but never before the
    /// first entry) once `max_bytes` of payload are gathered.
    fn read_entries(&self, start: u64, end: u64, max_bytes: u64) -> io::Result<Vec<Entry>> {
        if start >= end {
            return Ok(Vec::new());
        }
        // Copy the encoded payloads out under the lock; decode after releasing it.
        let raw = {
            let wal = self.read_wal()?;
            let mut raw = Vec::new();
            let mut bytes = 0u64;
            for item in wal.read(start, end) {
                let (id, payload) = item?;
                bytes += payload.len() as u64;
                raw.push((id, payload));
                if bytes >= max_bytes {
                    break;
                }
            }
            raw
        };
        raw.into_iter()
            .map(|(id, payload)| {
                Ok(Entry {
                    log_id: RaftLogId::from(id),
                    payload: codec::decode_payload(&payload)?,
                })
            })
            .collect()
    }
}

/// Opens raft-log; if that fails and `repair` is on, cuts a damaged tail off the newest
/// chunk (see `repair`) and tries once more.
fn open_wal(
    rl_cfg: &Arc<raft_log::Config>,
    repair: bool,
) -> Result<RaftLog<WalTypes>, LogStoreError> {
    let first = match RaftLog::<WalTypes>::open(Arc::clone(rl_cfg)) {
        Ok(wal) => return Ok(wal),
        Err(e) => e,
    };
    let open_failed = |source| LogStoreError::Io { op: "open", source };
    if !repair {
        return Err(open_failed(first));
    }
    match repair::cut_damaged_tail(&rl_cfg.wal) {
        Ok(Some(cut)) => {
            tracing::error!(
                chunk = %cut.chunk_path,
                kept_bytes = cut.kept_bytes,
                cut_bytes = cut.cut_bytes,
                reason = %cut.reason,
                open_error = %first,
                "raft log: damaged tail cut from newest chunk"
            );
            RaftLog::open(Arc::clone(rl_cfg)).map_err(LogStoreError::io("open after tail repair"))
        }
        // The newest chunk is intact: the failure lies elsewhere and must surface as is.
        Ok(None) => Err(open_failed(first)),
        Err(e) => {
            // E.g. another process holds the directory lock; report the original error.
            tracing::warn!(error = %e, "raft log: tail repair not possible");
            Err(open_failed(first))
        }
    }
}

/// Checks the store's format marker, writing it into a brand-new store.
fn ensure_format(wal: &mut RaftLog<WalTypes>, dir: &Path) -> Result<(), LogStoreError> {
    let st = wal.log_state();
    let unsupported = |found| LogStoreError::UnsupportedFormat {
        dir: dir.to_path_buf(),
        found,
        supported: STORE_FORMAT_VERSION,
    };
    match st.user_data {
        Some(meta) if meta.format_version == STORE_FORMAT_VERSION => Ok(()),
        Some(meta) => Err(unsupported(Some(meta.format_version))),
        None => {
            let empty = st.vote().is_none()
                && st.last().is_none()
                && st.purged().is_none()
                && st.committed().is_none();
            if !empty {
                // Written by something else on raft-log; its bytes would be misread.
                return Err(unsupported(None));
            }
            let meta = StoreMeta {
                format_version: STORE_FORMAT_VERSION,
            };
            wal.save_user_data(Some(meta))
                .map_err(LogStoreError::io("write format marker"))?;
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            wal.flush(true, Some(Flushed::Thread(tx)))
                .map_err(LogStoreError::io("write format marker"))?;
            rx.recv()
                .map_err(|_| io::Error::other("flush thread stopped"))
                .and_then(|r| r)
                .map_err(LogStoreError::io("write format marker"))
        }
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
        Ok(self
            .read_wal()?
            .log_state()
            .vote()
            .map(|v| RaftVote::from(*v)))
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
        let wal = self.read_wal()?;
        let st = wal.log_state();
        // raft-log moves `last` up to `purged` when a purge passes it, so `last` is
        // already "the last entry, or the last purged id if there is none".
        Ok(LogState {
            last_purged_log_id: st.purged().map(|id| RaftLogId::from(*id)),
            last_log_id: st.last().map(|id| RaftLogId::from(*id)),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &RaftVote) -> Result<(), io::Error> {
        let (tx, rx) = oneshot::channel();
        {
            let mut wal = self.write_wal()?;
            wal.save_vote(WalVote::from(vote))?;
            wal.flush(true, Some(Flushed::Task(tx)))?;
        }
        flushed(rx).await
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> Result<(), io::Error> {
        let Some(committed) = committed.as_ref().map(WalLogId::from) else {
            return Ok(());
        };
        let mut wal = self.write_wal()?;
        let st = wal.log_state();
        // The committed id never moves back; a stale report has nothing to add.
        if st.committed() >= Some(&committed) {
            return Ok(());
        }
        // raft-log refuses a committed id past the last entry. It is only a restart hint,
        // so skip it rather than fail the node.
        if st.last() < Some(&committed) {
            tracing::warn!(?committed, last = ?st.last(), "raft log: committed id past last entry not saved");
            return Ok(());
        }
        wal.commit(committed)?;
        // Not even a flush of its own: the record waits in raft-log's buffer
        // and the next append's (or vote's) flush writes and fsyncs it. A flush
        // here woke the flush thread once more per commit on every node.
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<RaftLogId>, io::Error> {
        Ok(self
            .read_wal()?
            .log_state()
            .committed()
            .map(|id| RaftLogId::from(*id)))
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
        // Encode before taking the lock: readers should not wait on bincode.
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
        let mut wal = self.write_wal()?;
        wal.append(batch)?;
        // `sync = true`: the callback fires only after the fsync covering these records;
        // the flush thread folds concurrent appends into that same fsync.
        let timed = Flushed::Raft {
            callback,
            appended: std::time::Instant::now(),
            flush_seconds: self.inner.flush_seconds.clone(),
        };
        wal.flush(true, Some(timed))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<RaftLogId>) -> Result<(), io::Error> {
        let (tx, rx) = oneshot::channel();
        {
            let mut wal = self.write_wal()?;
            let keep_until = last_log_id.map_or(0, |id| id.index + 1);
            let end = wal.log_state().last().map_or(0, |id| id.index + 1);
            if keep_until >= end {
                // Nothing after `last_log_id`; raft-log would reject a truncation point
                // it does not hold.
                return Ok(());
            }
            wal.truncate(keep_until)?;
            wal.flush(true, Some(Flushed::Task(tx)))?;
        }
        flushed(rx).await
    }

    async fn purge(&mut self, log_id: RaftLogId) -> Result<(), io::Error> {
        let mut wal = self.write_wal()?;
        wal.purge(WalLogId::from(&log_id))?;
        // A synced flush is what lets raft-log delete fully purged chunk files: it queues
        // the deletions behind the fsync of the purge record. Nobody needs to wait for it;
        // a purge lost in a crash only leaves already-applied entries behind.
        wal.flush(true, None)?;
        Ok(())
    }
}
