//! A clean stop and reopen brings back vote, entries, purge point and committed id, and
//! the format marker guards against reading a store this build does not understand.

use std::sync::Arc;

use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;
use raft_log::RaftLog;
use raft_log::api::raft_log_writer::RaftLogWriter;

use super::super::codec::{STORE_FORMAT_VERSION, StoreMeta, WalLogId, WalVote, encode_payload};
use super::super::migrate::{Done, WalTypes};
use super::super::{LogStore, LogStoreConfig, LogStoreError};
use super::support::*;

#[tokio::test]
async fn reopen_after_clean_stop_restores_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");

    {
        let mut store = LogStore::open(&dir, small_segments()).unwrap();
        store.save_vote(&vote(2, LEADER, false)).await.unwrap();
        store.save_vote(&vote(3, LEADER, true)).await.unwrap();
        for i in 1..=100 {
            let term = if i <= 50 { 2 } else { 3 };
            append_durably(&mut store, vec![entry(term, i)])
                .await
                .unwrap();
        }
        // 96..=100 are dropped as a conflicting suffix; the truncation must persist too.
        store.truncate_after(Some(log_id(3, 95))).await.unwrap();
        store.save_committed(Some(log_id(3, 90))).await.unwrap();
        let files_before = segment_files(&dir).len();
        store.purge(log_id(2, 40)).await.unwrap();
        assert!(
            files_before > 2,
            "test wants several chunks, got {files_before}"
        );
        // Dropping the last clone closes the WAL, fsyncing what is pending (the
        // committed id has no fsync of its own).
    }

    let mut store = LogStore::open(&dir, small_segments()).unwrap();
    let entries = assert_holds(
        &mut store,
        vote(3, LEADER, true),
        log_id(3, 90),
        log_id(2, 40),
        log_id(3, 95),
    )
    .await;
    for e in &entries {
        assert_eq!(
            if e.log_id.index <= 50 { 2 } else { 3 },
            e.log_id.leader_id.term
        );
    }
    // Purged entries stay purged, even those still inside a surviving chunk file.
    assert!(store.try_get_log_entries(0..41).await.unwrap().is_empty());

    // The reopened log keeps working, and that survives another reopen.
    append_durably(&mut store, vec![entry(4, 96)])
        .await
        .unwrap();
    drop(store);
    let mut store = LogStore::open(&dir, small_segments()).unwrap();
    let last = all_entries(&mut store).await.unwrap().pop().unwrap();
    assert_eq!(log_id(4, 96), last.log_id);
    assert_intact(&last);
}

#[tokio::test]
async fn purge_deletes_segment_files_after_reopen_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut store = LogStore::open(&dir, small_segments()).unwrap();
    for i in 1..=300 {
        append_durably(&mut store, vec![entry(1, i)]).await.unwrap();
    }
    let before = segment_files(&dir).len();
    store.purge(log_id(1, 280)).await.unwrap();
    // Deletion runs on the flush thread behind the purge record's fsync; a durable
    // append queued after it returns only once both are done.
    append_durably(&mut store, vec![entry(1, 301)])
        .await
        .unwrap();
    let after = segment_files(&dir).len();
    assert!(
        after < before,
        "purge freed no chunk files: {before} -> {after}"
    );
    drop(store);

    let mut store = LogStore::open(&dir, small_segments()).unwrap();
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(281, entries[0].log_id.index);
    assert_eq!(301, entries.last().unwrap().log_id.index);
}

#[test]
fn open_rejects_an_unknown_format_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    drop(LogStore::open(&dir, small_segments()).unwrap());

    // Rewrite the segment header as a future build would (checksum included).
    let seg = segment_files(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();

    let err = LogStore::open(&dir, small_segments()).expect_err("a future format must be refused");
    assert!(err.to_string().contains("format version 3"), "{err}");
    assert_eq!(
        std::io::ErrorKind::InvalidData,
        std::io::Error::from(err).kind()
    );
}

/// Writes a log the way builds before the WAL did (raft-log, store format 1): vote 3,
/// entries 1..=60 in several chunks, purged up to 20, committed 55.
fn write_format_1(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut cfg = raft_log::Config::new(dir.to_str().unwrap());
    cfg.wal.chunk_max_size = Some(8 * 1024);
    let mut old = RaftLog::<WalTypes>::open(Arc::new(cfg)).unwrap();
    old.save_user_data(Some(StoreMeta {
        format_version: STORE_FORMAT_VERSION,
    }))
    .unwrap();
    old.save_vote(WalVote::from(&vote(3, LEADER, true)))
        .unwrap();
    let entries = (1..=60)
        .map(|i| {
            let e = entry(3, i);
            (
                WalLogId::from(&e.log_id),
                encode_payload(&e.payload).unwrap(),
            )
        })
        .collect::<Vec<_>>();
    old.append(entries).unwrap();
    old.purge(WalLogId::from(&log_id(3, 20))).unwrap();
    old.commit(WalLogId::from(&log_id(3, 55))).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    old.flush(true, Some(Done(tx))).unwrap();
    rx.recv().unwrap().unwrap();
}

async fn assert_format_1_content(dir: &std::path::Path) {
    let mut store = LogStore::open(dir, small_segments()).expect("conversion");
    assert_holds(
        &mut store,
        vote(3, LEADER, true),
        log_id(3, 55),
        log_id(3, 20),
        log_id(3, 60),
    )
    .await;
    append_durably(&mut store, vec![entry(4, 61)])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_log_from_an_earlier_build_is_converted_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_format_1(&dir);
    let chunk = |n: &str| n.starts_with("r-") && n.ends_with(".wal");
    let names = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(names(&dir).iter().any(|n| chunk(n)));

    assert_format_1_content(&dir).await;
    assert!(
        !names(&dir).iter().any(|n| chunk(n)),
        "old chunks left: {:?}",
        names(&dir)
    );
    // Reopened as a WAL: the converted content and the append after it are there.
    let mut store = LogStore::open(&dir, small_segments()).unwrap();
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(Some(61), entries.last().map(|e| e.log_id.index));
}

#[tokio::test]
async fn an_interrupted_conversion_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    write_format_1(&dir);
    // As if the last conversion died after moving in some (incomplete) segments.
    std::fs::write(dir.join(format!("{:020}.seg", 1)), b"half a segment").unwrap();
    std::fs::create_dir_all(dir.join("migrating")).unwrap();
    assert_format_1_content(&dir).await;
}

#[test]
fn a_directory_is_held_by_one_store_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let first = LogStore::open(tmp.path(), LogStoreConfig::default()).unwrap();
    assert!(LogStore::open(tmp.path(), LogStoreConfig::default()).is_err());
    drop(first);
    LogStore::open(tmp.path(), LogStoreConfig::default()).unwrap();
}

#[test]
fn config_validation_names_the_field() {
    let cfg = LogStoreConfig {
        segment_bytes: 0,
        ..LogStoreConfig::default()
    };
    match cfg.validate() {
        Err(LogStoreError::InvalidConfig { field, .. }) => assert_eq!("segment_bytes", field),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[tokio::test]
async fn payloads_evicted_from_memory_are_read_back_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let tiny_cache = LogStoreConfig {
        cache_max_bytes: 4 * 1024,
        ..small_segments()
    };
    let mut store = LogStore::open(&dir, tiny_cache.clone()).unwrap();
    for i in 1..=200 {
        append_durably(&mut store, vec![entry(1, i)]).await.unwrap();
    }
    // Most payloads are only on disk now, spread over several segments.
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(200, entries.len());
    entries.iter().for_each(assert_intact);
    assert!(segment_files(&dir).len() > 3);
    // A bounded read stops early but returns at least one entry.
    let some = store.limited_get_log_entries(10, 200).await.unwrap();
    assert_eq!(10, some[0].log_id.index);
    drop(store);

    let mut store = LogStore::open(&dir, tiny_cache).unwrap();
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(200, entries.len());
    entries.iter().for_each(assert_intact);
}
