//! Shared helpers for the log store tests: entry builders and a durable append.

use std::io;
use std::path::{Path, PathBuf};

use openraft::RaftLogReader;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;

use super::super::codec::{RaftLogId, RaftPayload, RaftVote};
use super::super::wal::format::{Decoded, HEADER_BYTES, decode};
use super::super::{Entry, LogStore, LogStoreConfig};
use crate::raft::types::TypeConfig;
use crate::state::Command;

/// The leader node id used for every test log id.
pub(super) const LEADER: u64 = 1;

pub(super) fn log_id(term: u64, index: u64) -> RaftLogId {
    RaftLogId {
        leader_id: openraft::impls::leader_id_adv::LeaderId {
            term,
            node_id: LEADER,
        },
        index,
    }
}

pub(super) fn vote(term: u64, node_id: u64, committed: bool) -> RaftVote {
    if committed {
        RaftVote::new_committed(term, node_id)
    } else {
        RaftVote::new(term, node_id)
    }
}

/// Deterministic input bytes for the entry at `index` (length varies with the index, so
/// records straddle chunk boundaries at different offsets).
pub(super) fn input_for(index: u64) -> Vec<u8> {
    let len = 16 + (index * 37 % 1000) as usize;
    (0..len).map(|k| (index as usize * 31 + k) as u8).collect()
}

/// A normal entry whose content is a function of its index alone.
pub(super) fn entry(term: u64, index: u64) -> Entry {
    let cmd = Command::Apply {
        plugin: "test".into(),
        input: input_for(index),
        timestamp_ms: index,
        idempotency_key: None,
    };
    Entry {
        log_id: log_id(term, index),
        payload: RaftPayload::Normal(cmd),
    }
}

/// Asserts `e` is exactly what [`entry`] built for its index.
pub(super) fn assert_intact(e: &Entry) {
    let want = entry(e.log_id.leader_id.term, e.log_id.index);
    assert_eq!(
        want.payload, e.payload,
        "entry {} has the wrong payload",
        e.log_id
    );
}

/// Appends and waits for the IO-completion callback (i.e. for the fsync).
pub(super) async fn append_durably(store: &mut LogStore, entries: Vec<Entry>) -> io::Result<()> {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await?;
    rx.await
        .map_err(|_| io::Error::other("flush callback dropped"))?
}

/// Asserts the store's vote, committed id, purge point and last entry, and that
/// it holds exactly the entries after `purged` up to `last`, intact; returns them.
pub(super) async fn assert_holds(
    store: &mut LogStore,
    want_vote: RaftVote,
    committed: RaftLogId,
    purged: RaftLogId,
    last: RaftLogId,
) -> Vec<Entry> {
    assert_eq!(Some(want_vote), store.read_vote().await.unwrap());
    assert_eq!(Some(committed), store.read_committed().await.unwrap());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(Some(purged), state.last_purged_log_id);
    assert_eq!(Some(last), state.last_log_id);
    let entries = all_entries(store).await.unwrap();
    assert_eq!(
        (purged.index + 1..=last.index).collect::<Vec<_>>(),
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>()
    );
    entries.iter().for_each(assert_intact);
    entries
}

/// Reads every entry the store holds.
pub(super) async fn all_entries(store: &mut LogStore) -> io::Result<Vec<Entry>> {
    store.try_get_log_entries(..).await
}

/// Segments small enough that a few hundred entries span several files.
pub(super) fn small_segments() -> LogStoreConfig {
    LogStoreConfig {
        segment_bytes: 16 * 1024,
        ..LogStoreConfig::default()
    }
}

/// The store's segment files, oldest first (the numbers in the names are zero-padded).
pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// `(offset, length)` of every intact record of a segment file, in order.
pub(super) fn record_spans(segment: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = HEADER_BYTES as usize;
    let mut spans = Vec::new();
    while let Decoded::Record(_, len) = decode(&bytes[at..]) {
        spans.push((at, len as usize));
        at += len as usize;
    }
    spans
}
