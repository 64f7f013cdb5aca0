//! The flush thread: writes whatever is queued, fsyncs it once, then tells the waiters.
//!
//! Group commit without a timer: while one fsync runs, new records pile up in
//! [`Pending`], and the next round takes them all. A lone write is never held back
//! waiting for company, and under load one fsync covers every write that arrived
//! during the previous one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::segment;
use super::state::{Pending, SegmentWrite};
use super::{Shared, relock};

/// A spare segment being zero-filled on its own thread, for the given number.
type Spare = Option<(u64, JoinHandle<io::Result<File>>)>;

pub(super) fn run(shared: Arc<Shared>) {
    let mut spare: Spare = None;
    loop {
        let batch = {
            let mut st = relock(shared.state.lock());
            loop {
                if st.failed.is_some() {
                    return;
                }
                if !st.pending.is_empty() {
                    // Writers blocked on a full queue may go on: it is taken whole.
                    shared.room.notify_all();
                    break std::mem::take(&mut st.pending);
                }
                if st.closed {
                    return;
                }
                st = relock(shared.wake.wait(st));
            }
        };
        let Pending {
            writes,
            callbacks,
            remove,
            bytes: _,
        } = batch;
        let res = write_and_sync(&shared, &mut spare, &writes);
        {
            let mut st = relock(shared.state.lock());
            match &res {
                Ok(()) => {
                    if let Some(w) = writes.last() {
                        st.durable = (w.segment, w.offset + w.data.len() as u64);
                    }
                    st.evict(shared.cache_max_bytes);
                }
                Err(e) => {
                    tracing::error!(error = %e, "raft log: write or fsync failed; the log stops");
                    st.failed = Some((e.kind(), e.to_string()));
                }
            }
            // A writer blocked on a full queue must see the failure.
            shared.room.notify_all();
        }
        // Before the callbacks (rare: once per purged segment), so whoever waits on a
        // write queued after a purge also sees its segments gone.
        if res.is_ok() {
            remove_segments(&shared, &remove);
        }
        for cb in callbacks {
            cb.send(match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
        if let Err(e) = &res {
            // Writes queued behind the failed one will never be written either:
            // tell their waiters now rather than leave them waiting.
            let queued = std::mem::take(&mut relock(shared.state.lock()).pending.callbacks);
            for cb in queued {
                cb.send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            return;
        }
        prepare_spare(&shared, &mut spare, writes.last());
    }
}

/// Writes every queued run in order, fsyncing a segment before moving past it: so only
/// the newest segment can ever hold a torn record.
fn write_and_sync(shared: &Shared, spare: &mut Spare, writes: &[SegmentWrite]) -> io::Result<()> {
    let mut open: Option<(u64, Arc<File>)> = None;
    for w in writes {
        if open.as_ref().map(|(n, _)| *n) != Some(w.segment) {
            if let Some((_, f)) = open.take() {
                f.sync_data()?;
            }
            open = Some((w.segment, file_for(shared, spare, w.segment)?));
        }
        let (_, f) = open.as_ref().expect("just opened");
        f.write_all_at(&w.data, w.offset)?;
    }
    match open {
        Some((_, f)) => f.sync_data(),
        None => Ok(()),
    }
}

/// The file of segment `n`, made (from the spare if it is the right one) the first time
/// the writer rotates into it.
fn file_for(shared: &Shared, spare: &mut Spare, n: u64) -> io::Result<Arc<File>> {
    if let Some(f) = relock(shared.state.lock())
        .segments
        .get(&n)
        .and_then(|s| s.file.clone())
    {
        return Ok(f);
    }
    let file = match spare.take() {
        Some((m, h)) if m == n => h
            .join()
            .map_err(|_| io::Error::other("spare segment thread panicked"))??,
        other => {
            if let Some((_, h)) = other {
                // A spare for another number (cannot happen while rotation is +1);
                // its temporary file is removed at the next open.
                let _ = h.join();
            }
            segment::prepare(&shared.dir, n, shared.segment_bytes)?
        }
    };
    segment::install(&shared.dir, n)?;
    let file = Arc::new(file);
    relock(shared.state.lock())
        .segments
        .entry(n)
        .or_default()
        .file = Some(file.clone());
    Ok(file)
}

/// Once the active segment is half full, zero-fills the next one on another thread, so
/// a rotation does not stall appends behind a segment's worth of writes.
fn prepare_spare(shared: &Arc<Shared>, spare: &mut Spare, last: Option<&SegmentWrite>) {
    let Some(last) = last else { return };
    let next = last.segment + 1;
    let half_full = last.offset + last.data.len() as u64 > shared.segment_bytes / 2;
    if !half_full || spare.as_ref().is_some_and(|(n, _)| *n == next) {
        return;
    }
    let dir = shared.dir.clone();
    let bytes = shared.segment_bytes;
    let spawned = std::thread::Builder::new()
        .name("cairn-wal-spare".into())
        .spawn(move || segment::prepare(&dir, next, bytes));
    match spawned {
        Ok(h) => *spare = Some((next, h)),
        // The rotation will then make the segment itself; slower, not wrong.
        Err(e) => tracing::warn!(error = %e, "raft log: no thread to prepare a spare segment"),
    }
}

/// Deletes segments whose entries are all purged, now that the purge is durable.
fn remove_segments(shared: &Shared, numbers: &[u64]) {
    if numbers.is_empty() {
        return;
    }
    let res = numbers.iter().try_for_each(|&n| {
        relock(shared.state.lock()).forget_segment(n);
        match std::fs::remove_file(segment::path(&shared.dir, n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    });
    // A segment left behind only costs disk space until the next purge or open.
    if let Err(e) = res.and_then(|()| segment::sync_dir(&shared.dir)) {
        tracing::warn!(error = %e, "raft log: removing purged segments failed");
    }
}
