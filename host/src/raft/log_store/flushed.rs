//! `Flushed`: who to tell once the WAL's flush thread has fsynced a write (or failed to).

use std::io;
use std::sync::mpsc::SyncSender;

use openraft::storage::IOFlushed;
use tokio::sync::oneshot;

use crate::raft::types::TypeConfig;

/// Who to tell once the flush thread has fsynced a write (or failed to).
///
/// The flush thread tells these in write order after the fsync that covers the write,
/// which is exactly openraft's contract for `IOFlushed`.
pub(crate) enum Flushed {
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

impl Flushed {
    /// Reports the outcome of the fsync covering this write.
    pub(crate) fn send(self, res: io::Result<()>) {
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
