//! A clean stop and reopen brings back vote, entries, purge point and committed id, and
//! the format marker guards against reading a store this build does not understand.

use std::sync::Arc;

use openraft::RaftLogReader;
use openraft::storage::RaftLogStorage;
use raft_log::RaftLog;
use raft_log::api::raft_log_writer::RaftLogWriter;

use super::super::codec::{STORE_FORMAT_VERSION, StoreMeta};
use super::super::raft_log_types::WalTypes;
use super::super::{LogStore, LogStoreConfig, LogStoreError};
use super::support::*;

#[tokio::test]
async fn reopen_after_clean_stop_restores_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");

    {
        let mut store = LogStore::open(&dir, small_chunks()).unwrap();
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
        let files_before = chunk_files(&dir).len();
        store.purge(log_id(2, 40)).await.unwrap();
        assert!(
            files_before > 2,
            "test wants several chunks, got {files_before}"
        );
        // Dropping the last clone closes the WAL, fsyncing what is pending (the
        // committed id has no fsync of its own).
    }

    let mut store = LogStore::open(&dir, small_chunks()).unwrap();
    assert_eq!(
        Some(vote(3, LEADER, true)),
        store.read_vote().await.unwrap()
    );
    assert_eq!(Some(log_id(3, 90)), store.read_committed().await.unwrap());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(Some(log_id(2, 40)), state.last_purged_log_id);
    assert_eq!(Some(log_id(3, 95)), state.last_log_id);

    let entries = all_entries(&mut store).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!((41..=95).collect::<Vec<_>>(), indexes);
    for e in &entries {
        assert_eq!(
            if e.log_id.index <= 50 { 2 } else { 3 },
            e.log_id.leader_id.term
        );
        assert_intact(e);
    }
    // Purged entries stay purged, even those still inside a surviving chunk file.
    assert!(store.try_get_log_entries(0..41).await.unwrap().is_empty());

    // The reopened log keeps working, and that survives another reopen.
    append_durably(&mut store, vec![entry(4, 96)])
        .await
        .unwrap();
    drop(store);
    let mut store = LogStore::open(&dir, small_chunks()).unwrap();
    let last = all_entries(&mut store).await.unwrap().pop().unwrap();
    assert_eq!(log_id(4, 96), last.log_id);
    assert_intact(&last);
}

#[tokio::test]
async fn purge_deletes_chunk_files_after_reopen_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut store = LogStore::open(&dir, small_chunks()).unwrap();
    for i in 1..=300 {
        append_durably(&mut store, vec![entry(1, i)]).await.unwrap();
    }
    let before = chunk_files(&dir).len();
    store.purge(log_id(1, 280)).await.unwrap();
    // Deletion runs on the flush thread behind the purge record's fsync; a durable
    // append queued after it returns only once both are done.
    append_durably(&mut store, vec![entry(1, 301)])
        .await
        .unwrap();
    let after = chunk_files(&dir).len();
    assert!(
        after < before,
        "purge freed no chunk files: {before} -> {after}"
    );
    drop(store);

    let mut store = LogStore::open(&dir, small_chunks()).unwrap();
    let entries = all_entries(&mut store).await.unwrap();
    assert_eq!(281, entries[0].log_id.index);
    assert_eq!(301, entries.last().unwrap().log_id.index);
}

#[test]
fn open_rejects_an_unknown_format_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    drop(LogStore::open(&dir, LogStoreConfig::default()).unwrap());

    // Rewrite the marker as a future build would.
    {
        let cfg = LogStoreConfig::default().to_raft_log(&dir).unwrap();
        let mut wal = RaftLog::<WalTypes>::open(Arc::clone(&cfg)).unwrap();
        wal.save_user_data(Some(StoreMeta {
            format_version: STORE_FORMAT_VERSION + 1,
        }))
        .unwrap();
    }

    match LogStore::open(&dir, LogStoreConfig::default()) {
        Err(LogStoreError::UnsupportedFormat {
            found, supported, ..
        }) => {
            assert_eq!(Some(STORE_FORMAT_VERSION + 1), found);
            assert_eq!(STORE_FORMAT_VERSION, supported);
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
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
        chunk_max_bytes: 0,
        ..LogStoreConfig::default()
    };
    match cfg.validate() {
        Err(LogStoreError::InvalidConfig { field, .. }) => assert_eq!("chunk_max_bytes", field),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}
