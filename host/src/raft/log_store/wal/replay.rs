//! Opening a WAL: every segment read back, in order, into a [`State`]; a torn tail of
//! the newest segment cut off.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::format::{self, Decoded, HEADER_BYTES, Record};
use super::segment;
use super::state::{Location, State};

/// Replays segments `numbers` (sorted, not empty) of `dir`. Returns the state, ready to
/// append to the newest segment, and whether that segment still lacks its opening
/// checkpoint (it was cut back to nothing).
pub(crate) fn replay(
    dir: &Path,
    numbers: &[u64],
    segment_bytes: u64,
    repair: bool,
) -> io::Result<(State, bool)> {
    let mut st = State::new(segment_bytes);
    let mut needs_checkpoint = false;
    for (i, &n) in numbers.iter().enumerate() {
        let is_last = i + 1 == numbers.len();
        if i > 0 && n != numbers[i - 1] + 1 {
            return Err(invalid(format!(
                "segment {} is missing (found {} and {n})",
                numbers[i - 1] + 1,
                numbers[i - 1]
            )));
        }
        let path = segment::path(dir, n);
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        format::check_header(&buf, n).map_err(|why| invalid(format!("segment {n}: {why}")))?;

        let mut offset = HEADER_BYTES;
        loop {
            match format::decode(&buf[offset as usize..]) {
                Decoded::Record(record, len) => {
                    if offset == HEADER_BYTES && !matches!(record, Record::Checkpoint(_)) {
                        return Err(invalid(format!(
                            "segment {n} does not begin with a checkpoint"
                        )));
                    }
                    let at = Location {
                        segment: n,
                        offset,
                        len,
                    };
                    st.apply(&record, at, None)
                        .map_err(|e| invalid(format!("segment {n} at {offset}: {e}")))?;
                    offset += len;
                }
                Decoded::End => break,
                Decoded::Bad(why) if is_last && repair => {
                    cut_tail(&file, offset, buf.len() as u64)?;
                    tracing::error!(
                        segment = %path.display(),
                        kept_bytes = offset,
                        cut_bytes = buf.len() as u64 - offset,
                        reason = %why,
                        "raft log: damaged tail cut from the newest segment"
                    );
                    break;
                }
                Decoded::Bad(why) => {
                    return Err(invalid(format!(
                        "segment {n} is damaged at offset {offset}: {why}"
                    )));
                }
            }
        }
        // Past the end of the newest segment only zeros may stay: bytes of a
        // torn batch whose first sector never reached the disk would otherwise
        // be read as records once new ones are written up to them (a stale vote,
        // an entry of an old term). The cut is logged; nothing there was
        // acknowledged (its fsync never finished).
        if is_last && buf[offset as usize..].iter().any(|&b| b != 0) {
            tracing::warn!(
                segment = %path.display(),
                from = offset,
                "raft log: zeroing unacknowledged bytes after the last record"
            );
            cut_tail(&file, offset, buf.len() as u64)?;
        }
        let empty = offset == HEADER_BYTES;
        if empty && !is_last {
            return Err(invalid(format!("segment {n} holds no records")));
        }
        st.segments.entry(n).or_default().file = Some(Arc::new(file));
        st.count_bytes(n, offset);
        if is_last {
            st.active = n;
            st.offset = offset;
            st.durable = (n, offset);
            st.active_has_records = !empty;
            needs_checkpoint = empty;
        }
    }
    // Entries before the first one held must all be purged; otherwise a segment that
    // held them is gone and the log would claim entries it cannot produce.
    if st.missing_prefix() {
        return Err(invalid(format!(
            "log entries after {:?} are missing (a segment was lost)",
            st.purged
        )));
    }
    Ok((st, needs_checkpoint))
}

/// Zeroes `[from, to)` so stale bytes past the cut can never read as records.
fn cut_tail(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
