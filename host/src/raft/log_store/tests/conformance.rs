//! openraft's storage conformance suite, run against `LogStore` on a fresh temp dir per case.

use std::path::Path;

use openraft::storage::RaftStateMachine;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use tempfile::TempDir;

use super::super::{LogStore, LogStoreConfig};
use crate::raft::types::TypeConfig;

/// Builds a fresh `LogStore` plus a state machine from `make_sm(dir)`, where `dir` is a
/// private directory beside the log. Swapping in the real state machine is one closure.
pub(super) struct LogStoreBuilder<F> {
    make_sm: F,
}

impl<SM, F> StoreBuilder<TypeConfig, LogStore, SM, TempDir> for LogStoreBuilder<F>
where
    SM: RaftStateMachine<TypeConfig>,
    F: Fn(&Path) -> SM + Send + Sync,
{
    async fn build(&self) -> Result<(TempDir, LogStore, SM), StorageError<TypeConfig>> {
        let err = |e: std::io::Error| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e)
        };
        let tmp = tempfile::tempdir().map_err(err)?;
        let store = LogStore::open(&tmp.path().join("log"), LogStoreConfig::default())
            .map_err(|e| err(e.into()))?;
        let sm_dir = tmp.path().join("sm");
        std::fs::create_dir_all(&sm_dir).map_err(err)?;
        let sm = (self.make_sm)(&sm_dir);
        Ok((tmp, store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite() {
    let started = std::time::Instant::now();
    // The real state machine: one runtime shared by all cases (engine setup is
    // the slow part, and it holds no per-test state).
    let runtime =
        std::sync::Arc::new(crate::runtime::Runtime::new(Default::default()).expect("runtime"));
    let builder = LogStoreBuilder {
        make_sm: move |dir: &Path| {
            crate::raft::state_machine::StateMachine::open(dir, runtime.clone())
                .expect("state machine opens")
        },
    };
    Suite::test_all(builder)
        .await
        .expect("openraft storage conformance suite");
    eprintln!(
        "openraft storage conformance suite passed in {:?}",
        started.elapsed()
    );
}
