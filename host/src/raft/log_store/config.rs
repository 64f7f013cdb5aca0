//! `LogStoreConfig`: the log store's knobs, their defaults, and their mapping onto the WAL.

use super::error::LogStoreError;
use super::wal::WalOptions;

/// Tuning for the durable Raft log. Every size carries its unit in its name.
/// Serde-ready so it can sit inside the node's `Config`; missing fields take defaults.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogStoreConfig {
    /// Size of a segment file, zero-filled when it is made (on another thread, once the
    /// one before is half full). Purging frees disk only in whole segments, so smaller
    /// ones return space sooner; larger ones mean fewer files. A record bigger than this
    /// gets a segment of its own that grows to fit.
    pub segment_bytes: u64,
    /// Upper bound on encoded payload bytes kept in memory for reads; older payloads are
    /// re-read from their segment (and checked) when replication needs them.
    pub cache_max_bytes: u64,
    /// Bytes queued for the flush thread beyond which writers wait for it.
    pub flush_queue_max_bytes: u64,
    /// A replication read stops adding entries once it holds this many payload bytes
    /// (it always returns at least one entry).
    pub read_batch_max_bytes: u64,
    /// On open, cut a damaged record (bad checksum, cut short, or unparsable) in the
    /// newest segment and everything after it, instead of refusing to start.
    ///
    /// A torn write of an unacknowledged append looks exactly like this, so `true` is
    /// what lets a node come back after a crash; the price is that genuine bit rot in
    /// the newest segment loses the records from the damage on (logged at `error`).
    /// Damage in an older segment always refuses to open.
    pub repair_damaged_tail: bool,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 16 * 1024 * 1024,
            cache_max_bytes: 256 * 1024 * 1024,
            flush_queue_max_bytes: 64 * 1024 * 1024,
            read_batch_max_bytes: 4 * 1024 * 1024,
            repair_damaged_tail: true,
        }
    }
}

impl LogStoreConfig {
    /// Rejects values that cannot work, with the offending field's name.
    pub fn validate(&self) -> Result<(), LogStoreError> {
        let nonzero = [
            ("flush_queue_max_bytes", self.flush_queue_max_bytes),
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
        // A segment must hold its header and a checkpoint; 4 KiB is one page.
        if self.segment_bytes < 4096 {
            return Err(LogStoreError::InvalidConfig {
                field: "segment_bytes",
                reason: "must be >= 4096".into(),
            });
        }
        Ok(())
    }

    /// The WAL's options.
    pub(super) fn to_wal(&self) -> WalOptions {
        WalOptions {
            segment_bytes: self.segment_bytes,
            cache_max_bytes: self.cache_max_bytes,
            queue_max_bytes: self.flush_queue_max_bytes,
            repair_damaged_tail: self.repair_damaged_tail,
        }
    }
}
