//! The snapshot file: its name, how it is replaced atomically, and how its
//! bytes (state plus Raft metadata) are encoded, decoded and checked.

use std::io;
use std::path::Path;

use super::{Applied, Meta, io_err};
use crate::state::{State, snapshot};

/// The one snapshot file of a node.
pub(super) const SNAPSHOT_FILE: &str = "current.snap";
/// Where a new snapshot file is written before it is renamed over the old one.
pub(super) const SNAPSHOT_TMP_FILE: &str = "current.snap.tmp";

/// Replaces `dir`'s snapshot file with `bytes` atomically: temp file, fsync,
/// rename, fsync the directory. Blocking.
pub(super) fn write_snapshot_file(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

pub(super) fn encode(applied: &Applied, meta: &Meta) -> io::Result<Vec<u8>> {
    let meta = bincode::serde::encode_to_vec(meta, bincode::config::standard()).map_err(io_err)?;
    Ok(snapshot::encode(&applied.state, &meta))
}

pub(super) fn decode(bytes: &[u8]) -> io::Result<(State, Meta)> {
    let (state, meta) =
        snapshot::decode(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let (meta, _): (Meta, usize) =
        crate::bounded_decode::decode_from_slice(&meta).map_err(io_err)?;
    Ok((state, meta))
}

/// Decodes snapshot bytes that are to be installed as `meta`.
pub(super) fn decode_installable(bytes: &[u8], meta: &Meta) -> io::Result<State> {
    let (state, embedded) = decode(bytes)?;
    // The file must describe the position openraft installs it at, or a
    // restart would resume from a different place than this run.
    let expected_index = meta.last_log_id.map_or(0, |l| l.index);
    if embedded.last_log_id != meta.last_log_id || state.applied_index() != expected_index {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot data is at {:?} (state index {}), but was offered as {:?}",
                embedded.last_log_id,
                state.applied_index(),
                meta.last_log_id
            ),
        ));
    }
    Ok(state)
}

/// Checks received snapshot bytes the way [`RaftStateMachine::install_snapshot`]
/// will, before they are handed to openraft: an install that fails is a storage
/// error, which stops Raft on this node for good, so a corrupt or inconsistent
/// upload must be refused while it is still only a bad request. Blocking (a
/// checksum and a full decode).
pub fn check_installable(bytes: &[u8], meta: &Meta) -> io::Result<()> {
    decode_installable(bytes, meta).map(drop)
}
