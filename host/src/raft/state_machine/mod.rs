//! The openraft state-machine adapter: applies committed entries through
//! `state::State`, builds point-in-time snapshots, installs received ones.
//!
//! Applies never wait on a snapshot: the state is a persistent map, so the
//! builder takes an O(1) clone under a short read lock and encodes it outside.
//!
//! One snapshot file exists at a time (`current.snap`). Every write of it —
//! by the builder or by an install — goes through one lock and only ever moves
//! it forward: a build that started before an install finished cannot replace
//! the newer installed snapshot with an older one (the log behind the newer one
//! may already be purged, so that would lose data at the next restart).

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::{Stream, TryStreamExt};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tokio::sync::watch;

use super::stats::StateMachineStats;
use super::types::TypeConfig;
use crate::runtime::Runtime;
use crate::state::{Command, CommandResult, State};

mod backup;
mod snapshot_file;

pub use backup::{BackupImage, ValidBackup};
pub use snapshot_file::check_installable;
use snapshot_file::{
    SNAPSHOT_FILE, SNAPSHOT_TMP_FILE, decode, decode_installable, encode, write_snapshot_file,
};

/// What a snapshot carries beyond the state itself.
type Meta = SnapshotMetaOf<TypeConfig>;

/// The applied state plus the Raft bookkeeping that must move with it.
#[derive(Clone, Default)]
pub struct Applied {
    /// The replicated state.
    pub state: State,
    /// Last log id applied.
    pub last_applied: Option<LogIdOf<TypeConfig>>,
    /// Last membership applied.
    pub membership: StoredMembershipOf<TypeConfig>,
}

struct Shared {
    applied: RwLock<Applied>,
    runtime: Arc<Runtime>,
    snapshot_dir: PathBuf,
    applied_index: watch::Sender<u64>,
    /// Metadata of the snapshot file on disk (`None`: no file yet). Held while
    /// the file is written or read, so a reader always gets a file and the
    /// metadata that describes it. Only locked on blocking threads.
    snapshot_file: Mutex<Option<Meta>>,
    /// Apply and snapshot timings for `/metrics` (node-local, never replicated).
    stats: StateMachineStats,
    /// Where plugin applies run: one thread, as openraft applies one batch at a time.
    apply_thread: crate::worker_pool::WorkerPool,
}

/// The state machine openraft drives; clones share one state.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Most entries applied (and held decoded in memory) per sub-batch.
const APPLY_BATCH_MAX_ENTRIES: usize = 1024;
/// Most payload bytes (command inputs, component bytes) per sub-batch.
const APPLY_BATCH_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The bulk of an entry's size, for bounding apply batches.
fn payload_bytes(entry: &EntryOf<TypeConfig>) -> usize {
    match &entry.payload {
        EntryPayload::Normal(Command::Deploy { code, .. }) => code.inline_len(),
        EntryPayload::Normal(Command::Apply { input, .. }) => input.len(),
        EntryPayload::Normal(Command::Remove { name }) => name.len(),
        EntryPayload::Normal(Command::UpdateSettings { .. } | Command::SetLimits { .. }) => 0,
        EntryPayload::Normal(Command::CreateToken { .. } | Command::RevokeToken { .. }) => 0,
        EntryPayload::Blank | EntryPayload::Membership(_) => 0,
    }
}

impl StateMachine {
    /// Opens the state machine, restoring the latest snapshot in `snapshot_dir`
    /// if there is one; openraft then re-applies the log after it.
    ///
    /// Blocking: reads and decodes the whole snapshot file.
    pub fn open(snapshot_dir: &Path, runtime: Arc<Runtime>) -> io::Result<Self> {
        std::fs::create_dir_all(snapshot_dir)?;
        // A leftover of a write interrupted by a crash; never the current snapshot.
        match std::fs::remove_file(snapshot_dir.join(SNAPSHOT_TMP_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut applied = Applied::default();
        let mut on_disk = None;
        let path = snapshot_dir.join(SNAPSHOT_FILE);
        if path.exists() {
            let bytes = std::fs::read(&path)?;
            let (state, meta) = decode(&bytes)?;
            tracing::info!(
                index = state.applied_index(),
                size_bytes = bytes.len(),
                "restored state from snapshot"
            );
            applied = Applied {
                state,
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
            on_disk = Some(meta);
        }
        let (tx, _) = watch::channel(applied.state.applied_index());
        let shared = Shared {
            applied: RwLock::new(applied),
            runtime,
            snapshot_dir: snapshot_dir.to_path_buf(),
            applied_index: tx,
            snapshot_file: Mutex::new(on_disk),
            stats: StateMachineStats::default(),
            apply_thread: crate::worker_pool::WorkerPool::start("cairn-apply", 1)?,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The applied state and the id of the last entry in it, without the
    /// membership (which would cost a map clone per linearizable read).
    pub fn state_and_last_applied(&self) -> (State, Option<LogIdOf<TypeConfig>>) {
        let applied = self
            .shared
            .applied
            .read()
            .unwrap_or_else(|e| e.into_inner());
        (applied.state.clone(), applied.last_applied)
    }

    /// A consistent O(1) copy of the applied state.
    pub fn applied(&self) -> Applied {
        self.shared
            .applied
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Apply and snapshot timings, for `/metrics`.
    pub fn stats(&self) -> &StateMachineStats {
        &self.shared.stats
    }

    /// The runtime plugins run in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.shared.runtime
    }

    /// Watches the last applied index (for `min_index` waits and readiness).
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.shared.applied_index.subscribe()
    }

    /// Metadata of the snapshot currently on disk, if any.
    pub fn snapshot_meta(&self) -> Option<Meta> {
        self.lock_snapshot_file().clone()
    }

    fn lock_snapshot_file(&self) -> std::sync::MutexGuard<'_, Option<Meta>> {
        self.shared
            .snapshot_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, applied: Applied) {
        let index = applied.state.applied_index();
        *self
            .shared
            .applied
            .write()
            .unwrap_or_else(|e| e.into_inner()) = applied;
        self.shared.applied_index.send_replace(index);
    }

    /// Applies `batch` and publishes the result, then answers its clients.
    ///
    /// Works on an O(1) copy and publishes once, so readers never see a
    /// half-applied batch and never wait on a plugin call. Plugin calls are
    /// CPU work, and WASI's sync bindings must not run on an async worker:
    /// they run on a thread of their own (see [`crate::worker_pool`]).
    async fn apply_batch(&self, batch: Vec<EntryResponder<TypeConfig>>) -> io::Result<()> {
        let started = std::time::Instant::now();
        let mut applied = self.applied();
        let runtime = self.shared.runtime.clone();
        let (applied, replies) = self.shared.apply_thread.run(move || -> io::Result<_> {
            let mut replies = Vec::new();
            for (entry, responder) in batch {
                let index = entry.log_id.index;
                let result = match &entry.payload {
                    EntryPayload::Blank => {
                        applied.state.advance(index);
                        CommandResult::Nothing
                    }
                    EntryPayload::Normal(cmd) => match applied.state.apply(&runtime, index, cmd) {
                        Ok(result) => result,
                        // This node cannot run a committed command (DESIGN.md
                        // rule 9): skipping it or recording the fault would
                        // diverge from the others. Fail the apply, so openraft
                        // stops this node; nothing of the batch is published,
                        // and a restart replays it from the log.
                        Err(fault) => {
                            tracing::error!(index, %fault, "cannot apply a committed entry; stopping this node");
                            return Err(io::Error::other(format!(
                                "applying log index {index}: {fault}"
                            )));
                        }
                    },
                    EntryPayload::Membership(m) => {
                        applied.state.advance(index);
                        applied.membership =
                            StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), m.clone());
                        CommandResult::Nothing
                    }
                };
                applied.last_applied = Some(entry.log_id);
                if let Some(r) = responder {
                    replies.push((r, result));
                }
            }
            Ok((applied, replies))
        })
        .await??;
        self.publish(applied);
        self.shared
            .stats
            .apply_batch_seconds
            .observe(started.elapsed().as_secs_f64());
        // Answer clients only once their writes are visible: a client that reads
        // this node's state right after `client_write` returns must see its write.
        for (responder, result) in replies {
            responder.send(result);
        }
        Ok(())
    }

    /// Makes `bytes` (described by `meta`) the current snapshot, unless the one
    /// on disk is at least as new; returns whether it was written. Temp file,
    /// fsync, rename, fsync the directory — so a crash leaves either the old or
    /// the new snapshot. Blocking.
    fn persist(&self, bytes: &[u8], meta: &Meta) -> io::Result<bool> {
        let mut on_disk = self.lock_snapshot_file();
        if let Some(current) = on_disk.as_ref()
            && current.last_log_id >= meta.last_log_id
        {
            return Ok(false);
        }
        write_snapshot_file(&self.shared.snapshot_dir, bytes)?;
        *on_disk = Some(meta.clone());
        Ok(true)
    }

    /// Reads the current snapshot file with its metadata. Blocking.
    fn read_current(&self) -> io::Result<Option<(Meta, Vec<u8>)>> {
        let on_disk = self.lock_snapshot_file();
        let Some(meta) = on_disk.as_ref() else {
            return Ok(None);
        };
        let bytes = std::fs::read(self.shared.snapshot_dir.join(SNAPSHOT_FILE))?;
        Ok(Some((meta.clone(), bytes)))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<SnapshotOf<TypeConfig, Self::SnapshotData>, io::Error> {
        let applied = self.applied();
        let meta = Meta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
        };
        let this = self.clone();
        let meta2 = meta.clone();
        let started = std::time::Instant::now();
        // Encoding and fsync are slow for a large state; keep them off the
        // async workers.
        let (bytes, written) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let bytes = encode(&applied, &meta2)?;
            let written = this.persist(&bytes, &meta2)?;
            Ok((bytes, written))
        })
        .await
        .map_err(io_err)??;
        let stats = &self.shared.stats;
        stats
            .snapshot_build_seconds
            .observe(started.elapsed().as_secs_f64());
        stats.snapshot_size_bytes.set(bytes.len() as i64);
        if written {
            tracing::info!(index = ?meta.last_log_id.map(|l| l.index), size_bytes = bytes.len(), "built snapshot");
        } else {
            // openraft ignores a built snapshot that is not newer than its current one.
            tracing::info!(index = ?meta.last_log_id.map(|l| l.index), "built snapshot is not newer than the one on disk; not written");
        }
        Ok(SnapshotOf::<TypeConfig, _> {
            meta,
            snapshot: Cursor::new(bytes),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let a = self
            .shared
            .applied
            .read()
            .unwrap_or_else(|e| e.into_inner());
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        // openraft hands over everything newly committed at once — for a follower
        // catching up, possibly thousands of large entries. Apply in bounded
        // sub-batches so only one sub-batch of decoded entries is held at a time.
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        while let Some(item) = entries.try_next().await? {
            batch_bytes += payload_bytes(&item.0);
            batch.push(item);
            if batch.len() >= APPLY_BATCH_MAX_ENTRIES || batch_bytes >= APPLY_BATCH_MAX_BYTES {
                self.apply_batch(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.apply_batch(batch).await?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let bytes = snapshot.into_inner();
        let size = bytes.len();
        let started = std::time::Instant::now();
        let this = self.clone();
        let meta2 = meta.clone();
        // Checksumming, decoding and writing a large snapshot take seconds:
        // off the async workers, so heartbeats keep flowing meanwhile.
        let state = tokio::task::spawn_blocking(move || -> io::Result<State> {
            let state = decode_installable(&bytes, &meta2)?;
            this.persist(&bytes, &meta2)?;
            Ok(state)
        })
        .await
        .map_err(io_err)??;
        let stats = &self.shared.stats;
        stats
            .snapshot_install_seconds
            .observe(started.elapsed().as_secs_f64());
        stats.snapshot_size_bytes.set(size as i64);
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), size_bytes = size, "installed snapshot");
        self.publish(Applied {
            state,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>, io::Error> {
        // The metadata is kept next to the file, so serving a snapshot is one
        // read, not a checksum and decode of the whole state.
        let this = self.clone();
        let current = tokio::task::spawn_blocking(move || this.read_current())
            .await
            .map_err(io_err)??;
        Ok(current.map(|(meta, bytes)| SnapshotOf::<TypeConfig, _> {
            meta,
            snapshot: Cursor::new(bytes),
        }))
    }
}

#[cfg(test)]
mod decode_props;
#[cfg(test)]
mod tests;
