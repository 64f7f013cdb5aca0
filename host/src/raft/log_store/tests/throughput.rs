//! Append throughput, measured rather than asserted (timing on a shared 2-core box is
//! noise for a pass/fail test). Run with:
//! `cargo test -p cairn-host --release --lib raft::log_store::tests::throughput -- --ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;

use super::super::{LogStore, LogStoreConfig};
use super::support::*;
use crate::raft::types::TypeConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn append_throughput() {
    let shapes = [(1, 1), (16, 1), (64, 1), (64, 8)];
    for (in_flight, entries_per_append) in shapes {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(tmp.path(), LogStoreConfig::default()).unwrap();
        let appends = if in_flight == 1 {
            2_000
        } else {
            20_000 / entries_per_append
        };
        let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let started = Instant::now();
        let mut index = 1;
        let mut waiters = Vec::with_capacity(appends as usize);
        for _ in 0..appends {
            let permit = sem.clone().acquire_owned().await.unwrap();
            let batch = (index..index + entries_per_append)
                .map(|i| entry(1, i))
                .collect::<Vec<_>>();
            index += entries_per_append;
            let (tx, rx) = TypeConfig::oneshot();
            store.append(batch, IOFlushed::signal(tx)).await.unwrap();
            waiters.push(tokio::spawn(async move {
                rx.await.unwrap().unwrap();
                drop(permit);
            }));
        }
        for w in waiters {
            w.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        let entries = (index - 1) as f64;
        eprintln!(
            "in_flight={in_flight:>3} entries/append={entries_per_append}: {:>8.0} entries/s, {:>7.0} appends/s ({} entries in {secs:.2}s)",
            entries / secs,
            appends as f64 / secs,
            index - 1
        );
    }
}
