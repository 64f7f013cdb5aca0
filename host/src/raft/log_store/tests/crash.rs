//! kill -9 during a stream of appends: every append whose IO-completion callback fired
//! before the kill is present and intact after reopening.
//!
//! The test binary re-executes itself with [`CHILD_DIR_ENV`] set, running only
//! [`crash_writer_child`], which appends forever and prints `ack <first> <last>` once an
//! append's callback reports durability. The parent SIGKILLs it mid-stream, then
//! reopens the log. Three rounds, each continuing the log the previous kill left.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;

use super::super::{LogStore, LogStoreConfig};
use super::support::*;
use crate::raft::types::TypeConfig;

/// Set (to the log directory) only in the re-executed child.
const CHILD_DIR_ENV: &str = "CAIRN_LOG_STORE_CRASH_DIR";
/// The term the child writes with; a new one per round, as after a leader change.
const CHILD_TERM_ENV: &str = "CAIRN_LOG_STORE_CRASH_TERM";
/// This file's test path, for `--exact`.
const CHILD_TEST: &str = "raft::log_store::tests::crash::crash_writer_child";

/// Small chunks and a short batch wait, so kills land during rotations and syncs.
fn crash_cfg() -> LogStoreConfig {
    LogStoreConfig {
        segment_bytes: 64 * 1024,
        ..LogStoreConfig::default()
    }
}

/// The writer half, run only as the parent's child process (so it is ignored
/// in a normal run instead of passing without doing anything).
#[test]
#[ignore = "child process of kill_9_during_appends_loses_no_acknowledged_entry"]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let term: u64 = std::env::var(CHILD_TERM_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(write_until_killed(Path::new(&dir), term));
}

async fn write_until_killed(dir: &Path, term: u64) {
    let mut store = LogStore::open(dir, crash_cfg()).unwrap();
    let last = store
        .get_log_state()
        .await
        .unwrap()
        .last_log_id
        .map_or(0, |id| id.index);
    // Keep many appends in flight so one fsync covers several of them.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(32));
    let mut next = last + 1;
    loop {
        let n = 1 + next % 5;
        let batch: Vec<_> = (next..next + n).map(|i| entry(term, i)).collect();
        let (first, last) = (next, next + n - 1);
        next += n;

        let permit = in_flight.clone().acquire_owned().await.unwrap();
        let (tx, rx) = TypeConfig::oneshot();
        store.append(batch, IOFlushed::signal(tx)).await.unwrap();
        tokio::spawn(async move {
            if let Ok(Ok(())) = rx.await {
                println!("ack {first} {last}");
            }
            drop(permit);
        });
    }
}

#[test]
fn kill_9_during_appends_loses_no_acknowledged_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked = BTreeSet::new();

    for round in 1..=3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                CHILD_TEST,
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_TERM_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

        let mut acks_this_round = 0;
        let mut killed = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let (a, b) = rest.split_once(' ').unwrap();
            acked.extend(a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap());
            acks_this_round += 1;
            // Kill mid-stream; acks already in the pipe are still read below.
            // A different point each round, so kills hit different chunk offsets.
            if acks_this_round == 200 * round + 100 && !killed {
                child.kill().unwrap(); // SIGKILL on Unix
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            killed,
            "child ended by itself ({status}) after {acks_this_round} acks"
        );

        let mut store = LogStore::open(&dir, crash_cfg()).expect("reopen after kill -9");
        let entries = rt.block_on(all_entries(&mut store)).unwrap();
        // Whatever survived is a gap-free run of intact entries…
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(i as u64 + 1, e.log_id.index, "hole in the log");
            assert_intact(e);
        }
        // …that covers every acknowledged one.
        let max_acked = *acked.last().unwrap();
        assert!(
            entries.len() as u64 >= max_acked,
            "round {round}: acked up to {max_acked}, only {} survived",
            entries.len()
        );
        for i in &acked {
            assert!(*i <= entries.len() as u64, "acknowledged entry {i} lost");
        }
        eprintln!(
            "round {round}: acked up to {max_acked}, {} entries after reopen",
            entries.len()
        );
    }
}
