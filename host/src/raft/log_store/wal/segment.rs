//! Segment files: names, creation (header plus zero fill, then an atomic rename), the
//! listing read at open, and the directory lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format::{HEADER_BYTES, header};

const SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".seg.tmp";

/// The path of segment `number` in `dir`; zero-padded so names sort by number.
pub(crate) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}{SUFFIX}"))
}

/// The segments in `dir`, by number. Leftover half-made spares are removed.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for item in fs::read_dir(dir)? {
        let name = item?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            // A spare being prepared when the process stopped: never renamed, never used.
            fs::remove_file(dir.join(name))?;
        } else if let Some(stem) = name.strip_suffix(SUFFIX) {
            let number = stem.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected file {name} in the log directory"),
                )
            })?;
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Writes a spare for segment `number`: header, zeros up to `bytes`, fsynced, under a
/// temporary name. [`install`] makes it the segment.
///
/// Writing real zeros (not `fallocate`, whose unwritten extents must be converted on
/// first write) is what keeps every later append an overwrite in place.
pub(crate) fn prepare(dir: &Path, number: u64, bytes: u64) -> io::Result<File> {
    let tmp = tmp_path(dir, number);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&header(number))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes.saturating_sub(HEADER_BYTES);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(f)
}

/// Gives a prepared spare its segment name, durably.
pub(crate) fn install(dir: &Path, number: u64) -> io::Result<()> {
    fs::rename(tmp_path(dir, number), path(dir, number))?;
    sync_dir(dir)
}

/// Makes renames, creations and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn tmp_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}{TMP_SUFFIX}"))
}

/// Takes the directory's lock: one process, one store. Held while the file is open.
pub(crate) fn lock(dir: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("LOCK"))?;
    f.try_lock().map_err(|e| match e {
        fs::TryLockError::WouldBlock => io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "log directory {} is in use by another process",
                dir.display()
            ),
        ),
        fs::TryLockError::Error(e) => e,
    })?;
    Ok(f)
}
