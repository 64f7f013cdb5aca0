//! Cutting a damaged tail off the newest chunk so a crashed node can reopen its log.
//!
//! raft-log already cuts a record that ends early and a zero-filled tail. A record that
//! is complete in length but fails its checksum (a torn sector holding stale bytes, or
//! a flipped bit) makes it refuse to open. Records have no length framing we could skip
//! by, so nothing after the first bad record can be trusted either: we keep the longest
//! prefix of the newest chunk that decodes cleanly and cut the rest. Damage in an older
//! (closed) chunk is never touched; opening then fails loudly.

use std::fs::{self, OpenOptions};
use std::io::{self, Cursor};

use raft_log::RaftLogRecord;
use raft_log::chunked_wal::{ChunkedWal, Config as WalConfig};
use raft_log::codeq::Decode;

use super::raft_log_types::WalTypes;

/// What [`cut_damaged_tail`] removed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TailCut {
    /// The chunk file that was shortened.
    pub(super) chunk_path: String,
    /// Bytes of whole, valid records kept.
    pub(super) kept_bytes: u64,
    /// Bytes removed from the first damaged record to the end of the file.
    pub(super) cut_bytes: u64,
    /// Why the first removed record was rejected.
    pub(super) reason: String,
}

/// Shortens the newest chunk to its longest cleanly decoding prefix.
///
/// Returns `None` when the newest chunk is intact (the open failure lies elsewhere and
/// must surface). Holds raft-log's directory lock throughout, so it never cuts a file
/// another live process is writing.
pub(super) fn cut_damaged_tail(cfg: &WalConfig) -> io::Result<Option<TailCut>> {
    type Wal = ChunkedWal<raft_log::RaftWalTypes<WalTypes>>;
    let lock = Wal::acquire_lock(cfg)?;
    let Some(&tail) = Wal::load_chunk_ids(cfg, &lock)?.last() else {
        return Ok(None);
    };
    let path = cfg.chunk_path(tail);
    let bytes = fs::read(&path)?;

    let mut cur = Cursor::new(&bytes[..]);
    let (kept, reason) = loop {
        let at = cur.position();
        if at == bytes.len() as u64 {
            return Ok(None);
        }
        match RaftLogRecord::<WalTypes>::decode(&mut cur) {
            Ok(_) => {}
            Err(e) => break (at, e.to_string()),
        }
    };

    let file = OpenOptions::new().write(true).open(&path)?;
    file.set_len(kept)?;
    file.sync_all()?;
    cfg.sync_dir()?;
    drop(lock);
    Ok(Some(TailCut {
        chunk_path: path,
        kept_bytes: kept,
        cut_bytes: bytes.len() as u64 - kept,
        reason,
    }))
}
