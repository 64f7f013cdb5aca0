//! `LogStoreConfig`: the log store's knobs, their defaults, and their mapping onto raft-log.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::error::LogStoreError;

/// Tuning for the durable Raft log. Every size carries its unit in its name.
/// Serde-ready so it can sit inside the node's `Config`; missing fields take defaults.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogStoreConfig {
    /// A chunk file is closed and a new one started once it reaches this size. Purging
    /// frees disk only in whole chunks, so smaller chunks return space sooner; larger
    /// ones mean fewer files.
    pub chunk_max_bytes: u64,
    /// A chunk file is also closed after this many records, whichever limit comes first.
    pub chunk_max_records: u64,
    /// Upper bound on encoded payload bytes kept in memory for reads; older payloads are
    /// re-read from disk. raft-log must keep every entry of the open chunk in memory, so
    /// the real bound is about this plus `chunk_max_bytes`.
    pub cache_max_bytes: u64,
    /// Upper bound on the number of cached payloads.
    pub cache_max_entries: u64,
    /// How long the flush thread waits for more writes before one fsync covers them all.
    /// Larger values trade append latency for fewer fsyncs under load. With 0 every
    /// fsync covers about one write and pipelined appends run ~4x slower here; 100 µs
    /// was the best of 0/100/500 on this machine (see `tests/throughput.rs`).
    pub flush_batch_wait_micros: u64,
    /// Most writes one fsync may cover.
    pub flush_batch_max_writes: u64,
    /// Bytes of written-but-not-yet-flushed data allowed in memory before appends block.
    pub flush_queue_max_bytes: u64,
    /// Read buffer used when replaying one chunk at open.
    pub replay_buffer_bytes: u64,
    /// A replication read stops adding entries once it holds this many payload bytes
    /// (it always returns at least one entry).
    pub read_batch_max_bytes: u64,
    /// On open, cut a damaged record (bad checksum or unparsable) at the end of the last
    /// chunk and everything after it in that chunk, instead of refusing to start.
    ///
    /// A torn write of an unacknowledged append looks exactly like this, so `true` is
    /// what lets a node come back after a crash; the price is that genuine bit rot in
    /// the newest chunk loses the records from the damage on (logged at `error`).
    /// Torn records that merely end early, and zero-filled tails, are always cut.
    pub repair_damaged_tail: bool,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        Self {
            chunk_max_bytes: 64 * 1024 * 1024,
            chunk_max_records: 1024 * 1024,
            cache_max_bytes: 256 * 1024 * 1024,
            cache_max_entries: 100_000,
            flush_batch_wait_micros: 100,
            flush_batch_max_writes: 2048,
            flush_queue_max_bytes: 64 * 1024 * 1024,
            replay_buffer_bytes: 4 * 1024 * 1024,
            read_batch_max_bytes: 4 * 1024 * 1024,
            repair_damaged_tail: true,
        }
    }
}

impl LogStoreConfig {
    /// Rejects values that cannot work, with the offending field's name.
    pub fn validate(&self) -> Result<(), LogStoreError> {
        let nonzero = [
            ("chunk_max_bytes", self.chunk_max_bytes),
            ("chunk_max_records", self.chunk_max_records),
            ("cache_max_entries", self.cache_max_entries),
            ("flush_batch_max_writes", self.flush_batch_max_writes),
            ("flush_queue_max_bytes", self.flush_queue_max_bytes),
            ("replay_buffer_bytes", self.replay_buffer_bytes),
            ("read_batch_max_bytes", self.read_batch_max_bytes),
        ];
        for (field, value) in nonzero {
            if value == 0 {
                return Err(LogStoreError::InvalidConfig {
                    field,
                    reason: "must be > 0".into(),
                });
            }
        }
        // raft-log caps its replay buffer at 1 GiB; say so here rather than at open.
        if self.replay_buffer_bytes > 1024 * 1024 * 1024 {
            return Err(LogStoreError::InvalidConfig {
                field: "replay_buffer_bytes",
                reason: "must be <= 1 GiB".into(),
            });
        }
        Ok(())
    }

    /// Builds raft-log's configuration for a store living in `dir`.
    pub(super) fn to_raft_log(&self, dir: &Path) -> Result<Arc<raft_log::Config>, LogStoreError> {
        let dir = dir.to_str().ok_or_else(|| LogStoreError::InvalidConfig {
            field: "dir",
            reason: format!("{} is not valid UTF-8", dir.display()),
        })?;
        let usize_of = |field: &'static str, v: u64| {
            usize::try_from(v).map_err(|_| LogStoreError::InvalidConfig {
                field,
                reason: "does not fit in usize".into(),
            })
        };
        let mut cfg = raft_log::Config::new(dir);
        cfg.log_cache_capacity = Some(usize_of("cache_max_bytes", self.cache_max_bytes)?);
        cfg.log_cache_max_items = Some(usize_of("cache_max_entries", self.cache_max_entries)?);
        cfg.wal.chunk_max_size = Some(usize_of("chunk_max_bytes", self.chunk_max_bytes)?);
        cfg.wal.chunk_max_records = Some(usize_of("chunk_max_records", self.chunk_max_records)?);
        cfg.wal.read_buffer_size = Some(usize_of("replay_buffer_bytes", self.replay_buffer_bytes)?);
        cfg.wal.flush_batch_wait = Some(Duration::from_micros(self.flush_batch_wait_micros));
        cfg.wal.flush_batch_max_items = Some(usize_of(
            "flush_batch_max_writes",
            self.flush_batch_max_writes,
        )?);
        cfg.wal.flush_queue_max_bytes = Some(usize_of(
            "flush_queue_max_bytes",
            self.flush_queue_max_bytes,
        )?);
        // Records that end early (a torn append) are always cut by raft-log itself.
        cfg.wal.truncate_incomplete_record = Some(true);
        Ok(Arc::new(cfg))
    }
}
