//! One-time conversion of a log directory written by earlier builds (raft-log chunk
//! files, Cairn store format 1) into the WAL, at open.
//!
//! Crash-safe by ordering: the new WAL is built in a side directory and fsynced, its
//! segments are renamed in, a `MIGRATED` marker is made durable, and only then are the
//! old chunks deleted. An open that finds old chunks without the marker throws away
//! any half-moved segments and converts again; one that finds the marker finishes the
//! deletion. Entry payloads are copied byte for byte (their envelope is unchanged).

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use raft_log::RaftLog;

use super::codec::{STORE_FORMAT_VERSION, StoreMeta, WalLogId, WalVote};
use super::config::LogStoreConfig;
use super::error::LogStoreError;
use super::flushed::Flushed;
use super::wal::{self, Wal};

const MARKER: &str = "MIGRATED";
const SIDE_DIR: &str = "migrating";

/// raft-log's view of the types earlier builds stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = WalLogId;
    type LogPayload = Vec<u8>;
    type Vote = WalVote;
    type Callback = Done;
    type UserData = StoreMeta;

    fn log_index(log_id: &WalLogId) -> u64 {
        log_id.index
    }

    fn payload_size(payload: &Vec<u8>) -> u64 {
        payload.len() as u64
    }
}

/// Tells a blocked thread that raft-log's flush thread is done.
pub(super) struct Done(pub(super) SyncSender<io::Result<()>>);

impl raft_log::Callback for Done {
    fn send(self, res: io::Result<()>) {
        // A receiver that gave up has nothing to hear.
        let _ = SyncSender::send(&self.0, res);
    }
}

fn is_chunk(name: &str) -> bool {
    name.starts_with("r-") && name.ends_with(".wal")
}

fn names(dir: &Path, pick: fn(&str) -> bool) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir)? {
        if let Some(name) = item?.file_name().to_str()
            && pick(name)
        {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Converts `dir` if it holds an earlier build's log; does nothing otherwise.
pub(super) fn from_raft_log_if_present(
    dir: &Path,
    cfg: &LogStoreConfig,
) -> Result<(), LogStoreError> {
    let step = LogStoreError::io("convert the log from format 1");
    if !dir.is_dir() {
        return Ok(());
    }
    let chunks = names(dir, is_chunk).map_err(step)?;
    if chunks.is_empty() {
        return Ok(());
    }
    let step = LogStoreError::io("convert the log from format 1");
    if !dir.join(MARKER).exists() {
        convert(dir, cfg)?;
    }
    finish(dir, &chunks).map_err(step)
}

fn convert(dir: &Path, cfg: &LogStoreConfig) -> Result<(), LogStoreError> {
    let step = || LogStoreError::io("convert the log from format 1");
    // Segments from an interrupted conversion are incomplete: start over.
    for name in names(dir, |n| n.ends_with(".seg")).map_err(step())? {
        fs::remove_file(dir.join(name)).map_err(step())?;
    }
    let side = dir.join(SIDE_DIR);
    if side.exists() {
        fs::remove_dir_all(&side).map_err(step())?;
    }

    let dir_str = dir.to_str().ok_or_else(|| LogStoreError::InvalidConfig {
        field: "dir",
        reason: format!("{} is not valid UTF-8", dir.display()),
    })?;
    let old = RaftLog::<WalTypes>::open(Arc::new(raft_log::Config::new(dir_str))).map_err(step())?;
    let st = old.log_state();
    match st.user_data {
        Some(meta) if meta.format_version == STORE_FORMAT_VERSION => {}
        found => {
            return Err(LogStoreError::UnsupportedFormat {
                dir: dir.to_path_buf(),
                found: found.map(|m| m.format_version),
                supported: wal::format::WAL_FORMAT_VERSION,
            });
        }
    }
    let (vote, committed, purged, last) = (
        st.vote().copied(),
        st.committed().copied(),
        st.purged().copied(),
        st.last().copied(),
    );
    let start = purged.map_or(0, |p| p.index + 1);
    let end = last.map_or(0, |l| l.index + 1);
    let entries = old
        .read(start, end)
        .collect::<Result<Vec<_>, _>>()
        .map_err(step())?;
    drop(old);
    tracing::warn!(
        dir = %dir.display(),
        entries = entries.len(),
        "raft log: converting a log written by an earlier build to WAL format {}",
        wal::format::WAL_FORMAT_VERSION
    );

    let new = Wal::open(&side, cfg.to_wal()).map_err(step())?;
    if let Some(v) = vote {
        new.save_vote(v, quiet()).map_err(step())?;
    }
    if let Some(p) = purged {
        new.purge(p).map_err(step())?;
    }
    if !entries.is_empty() {
        new.append(entries, quiet()).map_err(step())?;
    }
    if let Some(c) = committed {
        new.commit(c).map_err(step())?;
    }
    new.sync().map_err(step())?;
    drop(new);

    for name in names(&side, |n| n.ends_with(".seg")).map_err(step())? {
        fs::rename(side.join(&name), dir.join(&name)).map_err(step())?;
    }
    fs::File::create(dir.join(MARKER))
        .and_then(|f| f.sync_all())
        .and_then(|()| fs::File::open(dir)?.sync_all())
        .map_err(step())?;
    fs::remove_dir_all(&side).map_err(step())
}

/// Deletes the old chunks once the converted WAL is durably in place.
fn finish(dir: &Path, chunks: &[String]) -> io::Result<()> {
    for name in chunks {
        fs::remove_file(dir.join(name))?;
    }
    fs::File::open(dir)?.sync_all()?;
    fs::remove_file(dir.join(MARKER))?;
    fs::File::open(dir)?.sync_all()
}

/// A flush callback nobody waits for (the conversion syncs once at the end).
fn quiet() -> Flushed {
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    Flushed::Thread(tx)
}
