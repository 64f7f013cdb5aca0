//! The raft-log type bindings: which types raft-log stores, and how it reports a flush.

use std::io;
use std::sync::mpsc::SyncSender;

use openraft::storage::IOFlushed;
use tokio::sync::oneshot;

use super::codec::{StoreMeta, WalLogId, WalVote};
use crate::raft::types::TypeConfig;

/// raft-log's view of Cairn's Raft types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = WalLogId;
    /// The versioned payload envelope from [`super::codec::encode_payload`]; kept encoded
    /// so raft-log's cache accounts real bytes and reads decode outside the store lock.
    type LogPayload = Vec<u8>;
    type Vote = WalVote;
    type Callback = Flushed;
    type UserData = StoreMeta;

    fn log_index(log_id: &WalLogId) -> u64 {
        log_id.index
    }

    fn payload_size(payload: &Vec<u8>) -> u64 {
        payload.len() as u64
    }
}

/// Who to tell once raft-log's flush thread has fsynced a write (or failed to).
///
/// raft-log calls these in write order after the fsync that covers the write, which is
/// exactly openraft's contract for `IOFlushed`.
pub(super) enum Flushed {
    /// An openraft append waiting for durability; the time it waited is
    /// recorded (one fsync may cover many appends, so this is what a write sees).
    Raft {
        /// openraft's callback.
        callback: IOFlushed<TypeConfig>,
        /// When the append was queued.
        appended: std::time::Instant,
        /// Where the wait is recorded.
        flush_seconds: prometheus_client::metrics::histogram::Histogram,
    },
    /// An async caller of this store (e.g. `save_vote`) awaiting durability.
    Task(oneshot::Sender<io::Result<()>>),
    /// A blocking caller (e.g. `open`, which may run inside or outside a runtime).
    Thread(SyncSender<io::Result<()>>),
}

impl raft_log::Callback for Flushed {
    fn send(self, res: io::Result<()>) {
        match self {
            Flushed::Raft {
                callback,
                appended,
                flush_seconds,
            } => {
                flush_seconds.observe(appended.elapsed().as_secs_f64());
                callback.io_completed(res)
            }
            // A dropped receiver means the caller gave up waiting; nothing to tell.
            Flushed::Task(tx) => {
                let _ = tx.send(res);
            }
            Flushed::Thread(tx) => {
                let _ = SyncSender::send(&tx, res);
            }
        }
    }
}
