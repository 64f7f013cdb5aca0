//! Torn and corrupted tails: reopening recovers to the last intact record, never returns
//! garbage, and accepts appends afterwards. Damage in an older chunk refuses to open.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use openraft::storage::RaftLogStorage;
use raft_log::codeq::Encode;
use raft_log::{RaftLogAction, RaftLogRecord};

use super::super::codec::{WalLogId, encode_payload};
use super::super::raft_log_types::WalTypes;
use super::super::{LogStore, LogStoreConfig};
use super::support::*;

const N: u64 = 20;

/// Writes entries 1..=N, one append (one record) each, and closes the store.
async fn write_log(dir: &Path, cfg: LogStoreConfig) {
    let mut store = LogStore::open(dir, cfg).unwrap();
    for i in 1..=N {
        append_durably(&mut store, vec![entry(1, i)]).await.unwrap();
    }
}

/// Bytes of the WAL record holding [`entry`]`(1, index)`.
fn record_len(index: u64) -> u64 {
    let e = entry(1, index);
    let rec = RaftLogRecord::<WalTypes>::Action(RaftLogAction::Append(
        WalLogId::from(&e.log_id),
        encode_payload(&e.payload).unwrap(),
    ));
    let mut buf = Vec::new();
    rec.encode(&mut buf).unwrap() as u64
}

fn newest_chunk(dir: &Path) -> PathBuf {
    chunk_files(dir).pop().expect("a chunk file")
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
    let mut store = LogStore::open(dir, LogStoreConfig::default()).expect("reopen after damage");
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
    let mut store = LogStore::open(dir, LogStoreConfig::default()).unwrap();
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
    write_log(&dir, LogStoreConfig::default()).await;

    let chunk = newest_chunk(&dir);
    let len = fs::metadata(&chunk).unwrap().len();
    // Stop in the middle of the last record, as a crash mid-write would.
    OpenOptions::new()
        .write(true)
        .open(&chunk)
        .unwrap()
        .set_len(len - record_len(N) / 2)
        .unwrap();

    assert_recovers_to(&dir, N - 1).await;
}

#[tokio::test]
async fn every_single_byte_flip_in_the_last_record_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    write_log(&pristine, LogStoreConfig::default()).await;

    let rec_len = record_len(N);
    let file_len = fs::metadata(newest_chunk(&pristine)).unwrap().len();
    // Every byte of the record: type tag, log id, length prefix, payload, checksum.
    for offset in file_len - rec_len..file_len {
        let dir = tmp.path().join(format!("flip-{offset}"));
        copy_dir(&pristine, &dir);
        let chunk = newest_chunk(&dir);
        let mut bytes = fs::read(&chunk).unwrap();
        bytes[offset as usize] ^= 0x5a;
        fs::write(&chunk, &bytes).unwrap();

        assert_recovers_to(&dir, N - 1).await;
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test]
async fn garbage_and_zeros_after_the_last_record_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, tail) in [("garbage", vec![0xa7u8; 100]), ("zeros", vec![0u8; 4096])] {
        let dir = tmp.path().join(name);
        write_log(&dir, LogStoreConfig::default()).await;
        let chunk = newest_chunk(&dir);
        let mut bytes = fs::read(&chunk).unwrap();
        bytes.extend_from_slice(&tail);
        fs::write(&chunk, &bytes).unwrap();

        assert_recovers_to(&dir, N).await;
    }
}

#[tokio::test]
async fn damage_in_an_older_chunk_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut store = LogStore::open(&dir, small_chunks()).unwrap();
    for i in 1..=200 {
        append_durably(&mut store, vec![entry(1, i)]).await.unwrap();
    }
    drop(store);

    let files = chunk_files(&dir);
    assert!(files.len() >= 3, "want several chunks, got {}", files.len());
    // Flip a byte in the middle of an acknowledged record of a closed chunk.
    let closed = &files[files.len() / 2];
    let mut bytes = fs::read(closed).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(closed, &bytes).unwrap();

    // Cutting here would silently drop acknowledged entries; it must fail instead.
    let err =
        LogStore::open(&dir, small_chunks()).expect_err("open must refuse a damaged closed chunk");
    assert_eq!(
        std::io::ErrorKind::InvalidData,
        std::io::Error::from(err).kind()
    );
}

#[tokio::test]
async fn repair_can_be_disabled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_log(&dir, LogStoreConfig::default()).await;
    let chunk = newest_chunk(&dir);
    let mut bytes = fs::read(&chunk).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    fs::write(&chunk, &bytes).unwrap();

    let strict = LogStoreConfig {
        repair_damaged_tail: false,
        ..LogStoreConfig::default()
    };
    assert!(LogStore::open(&dir, strict).is_err());
    // Nothing was cut by the refused open: the default config still recovers 1..=N-1.
    assert_recovers_to(&dir, N - 1).await;
}
