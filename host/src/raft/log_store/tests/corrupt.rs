//! Torn and corrupted tails: reopening recovers to the last intact record, never returns
//! garbage, and accepts appends afterwards. Damage in an older segment, or a missing
//! segment, refuses to open.

use std::fs;
use std::path::{Path, PathBuf};

use openraft::storage::RaftLogStorage;

use super::super::{LogStore, LogStoreConfig};
use super::support::*;

const N: u64 = 20;

/// One segment holds all N records; small enough to copy once per test case.
fn one_segment() -> LogStoreConfig {
    LogStoreConfig {
        segment_bytes: 64 * 1024,
        ..LogStoreConfig::default()
    }
}

/// Writes entries 1..=N, one append (one record) each, and closes the store.
async fn write_log(dir: &Path, cfg: LogStoreConfig) {
    let mut store = LogStore::open(dir, cfg).unwrap();
    for i in 1..=N {
        append_durably(&mut store, vec![entry(1, i)]).await.unwrap();
    }
}

/// Entries 1..=200 in 16 KiB segments: several segment files.
async fn write_several_segments(dir: &Path) {
    let mut store = LogStore::open(dir, small_segments()).unwrap();
    for i in 1..=200 {
        append_durably(&mut store, vec![entry(1, i)]).await.unwrap();
    }
}

/// Opening `dir` must fail as damaged data (`InvalidData`), never cut and go on.
fn assert_refused(dir: &Path, what: &str) {
    let err = LogStore::open(dir, small_segments()).expect_err(what);
    assert_eq!(
        std::io::ErrorKind::InvalidData,
        std::io::Error::from(err).kind(),
        "{what}"
    );
}

fn newest_segment(dir: &Path) -> PathBuf {
    segment_files(dir).pop().expect("a segment file")
}

/// `(offset, length)` of the record holding entry N (the newest segment's last).
fn last_record(dir: &Path) -> (usize, usize) {
    *record_spans(&newest_segment(dir)).last().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for f in fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

/// Reopens `dir` and checks it holds exactly 1..=`last`, intact, then that it takes a
/// new entry `last + 1` that survives another reopen.
async fn assert_recovers_to(dir: &Path, last: u64) {
    let mut store = LogStore::open(dir, one_segment()).expect("reopen after damage");
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(
        (1..=last).collect::<Vec<_>>(),
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>()
    );
    entries.iter().for_each(assert_intact);
    assert_eq!(
        Some(log_id(1, last)),
        store.get_log_state().await.unwrap().last_log_id
    );

    append_durably(&mut store, vec![entry(2, last + 1)])
        .await
        .unwrap();
    drop(store);
    let mut store = LogStore::open(dir, one_segment()).unwrap();
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(last + 1, entries.len() as u64);
    let newest = entries.last().unwrap();
    assert_eq!(log_id(2, last + 1), newest.log_id);
    assert_intact(newest);
}

#[tokio::test]
async fn torn_last_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, one_segment()).await;

    // A crash mid-write leaves the record's later sectors as they were: zeros.
    let seg = newest_segment(&dir);
    let (at, len) = last_record(&dir);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at + len / 2..at + len].fill(0);
    fs::write(&seg, &bytes).unwrap();

    assert_recovers_to(&dir, N - 1).await;
}

#[tokio::test]
async fn every_single_byte_flip_in_the_last_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    write_log(&pristine, one_segment()).await;

    let (at, len) = last_record(&pristine);
    // Every byte of the record: length, checksum, kind, log id, payload.
    for offset in at..at + len {
        let dir = tmp.path().join(format!("flip-{offset}"));
        copy_dir(&pristine, &dir);
        let seg = newest_segment(&dir);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[offset] ^= 0x5a;
        fs::write(&seg, &bytes).unwrap();

        assert_recovers_to(&dir, N - 1).await;
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut_and_never_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, one_segment()).await;
    let seg = newest_segment(&dir);
    let (at, len) = last_record(&dir);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at + len..at + len + 100].fill(0xa7);
    fs::write(&seg, &bytes).unwrap();

    assert_recovers_to(&dir, N).await;
    // The cut zeroed the garbage: nothing but records and zeros remain.
    let bytes = fs::read(&seg).unwrap();
    let (at, len) = last_record(&dir);
    assert!(bytes[at + len..].iter().all(|&b| b == 0));
}

#[tokio::test]
async fn damage_in_an_older_segment_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_several_segments(&dir).await;

    let files = segment_files(&dir);
    assert!(
        files.len() >= 3,
        "want several segments, got {}",
        files.len()
    );
    // Flip a byte in the middle of an acknowledged record of a closed segment.
    let closed = &files[files.len() / 2];
    let (at, len) = record_spans(closed)[2];
    let mut bytes = fs::read(closed).unwrap();
    bytes[at + len / 2] ^= 0xff;
    fs::write(closed, &bytes).unwrap();

    // Cutting here would silently drop acknowledged entries; it must fail instead.
    assert_refused(&dir, "a damaged closed segment");
}

#[tokio::test]
async fn a_missing_segment_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_several_segments(&dir).await;
    let files = segment_files(&dir);
    // In the middle: a gap in the numbers. The first: entries nobody purged are gone.
    for victim in [files[files.len() / 2].clone(), files[0].clone()] {
        let copy = tmp.path().join("copy");
        copy_dir(&dir, &copy);
        fs::remove_file(copy.join(victim.file_name().unwrap())).unwrap();
        assert_refused(&copy, &format!("without {}", victim.display()));
        fs::remove_dir_all(&copy).unwrap();
    }
}

#[tokio::test]
async fn repair_can_be_disabled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, one_segment()).await;
    let seg = newest_segment(&dir);
    let (at, len) = last_record(&dir);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at + len - 10] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();

    let strict = LogStoreConfig {
        repair_damaged_tail: false,
        ..one_segment()
    };
    assert!(LogStore::open(&dir, strict).is_err());
    // Nothing was cut by the refused open: the default config still recovers 1..=N-1.
    assert_recovers_to(&dir, N - 1).await;
}

#[tokio::test]
async fn records_after_a_never_written_one_are_wiped_not_replayed_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, one_segment()).await;

    // A torn batch: the sector of entry N-1 never reached the disk (zeros, as
    // preallocated), entry N after it did.
    let seg = newest_segment(&dir);
    let spans = record_spans(&seg);
    let (at, len) = spans[spans.len() - 2];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[at..at + len].fill(0);
    fs::write(&seg, &bytes).unwrap();

    // Reopen, then write N-1 again in a new term: same size, so it ends exactly
    // where the stale record of entry N starts.
    let mut store = LogStore::open(&dir, one_segment()).unwrap();
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(Some(N - 2), entries.last().map(|e| e.log_id.index));
    append_durably(&mut store, vec![entry(2, N - 1)])
        .await
        .unwrap();
    drop(store);

    // The stale entry N (term 1) must not come back after entry N-1 of term 2.
    let mut store = LogStore::open(&dir, one_segment()).unwrap();
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(
        (1..N).collect::<Vec<_>>(),
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>()
    );
    assert_eq!(log_id(2, N - 1), entries.last().unwrap().log_id);
}
