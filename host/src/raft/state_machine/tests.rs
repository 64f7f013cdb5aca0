//! Unit tests of `state_machine`.

//! The openraft contract points the network tests cannot pin down: snapshot
//! files only move forward, installs validate and persist, reopen restores,
//! and the applied-index watch follows every batch.

use std::collections::BTreeSet;

use futures_util::stream;
use openraft::alias::EntryOf;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::RaftStateMachine;

use super::*;

fn log_id(index: u64) -> LogIdOf<TypeConfig> {
    LogIdOf::<TypeConfig> {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    }
}

fn blank(index: u64) -> EntryResponder<TypeConfig> {
    let entry = EntryOf::<TypeConfig> {
        log_id: log_id(index),
        payload: EntryPayload::Blank,
    };
    (entry, None)
}

fn membership(index: u64) -> EntryResponder<TypeConfig> {
    let m = openraft::Membership::<u64, crate::raft::types::Node>::new_with_defaults(
        vec![BTreeSet::from([1])],
        [1],
    );
    let entry = EntryOf::<TypeConfig> {
        log_id: log_id(index),
        payload: EntryPayload::Membership(m),
    };
    (entry, None)
}

async fn apply_all(sm: &mut StateMachine, items: Vec<EntryResponder<TypeConfig>>) {
    sm.apply(stream::iter(items.into_iter().map(Ok)))
        .await
        .expect("apply");
}

fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new(Default::default()).expect("runtime"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_publish_the_applied_index_and_reopen_restores_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut sm = StateMachine::open(dir.path(), rt.clone()).unwrap();
    let watch = sm.subscribe_applied();
    // More entries than one sub-batch holds.
    let n = APPLY_BATCH_MAX_ENTRIES as u64 * 2 + 5;
    let mut items = vec![membership(1)];
    items.extend((2..=n).map(blank));
    apply_all(&mut sm, items).await;
    assert_eq!(*watch.borrow(), n);
    assert_eq!(sm.applied().state.applied_index(), n);
    let (last, members) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(n)));
    assert_eq!(members.log_id(), &Some(log_id(1)));

    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(n)));
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.into_inner(), built.snapshot.into_inner());

    // Reopen: state, applied log id and membership come back from the file.
    drop(sm);
    let mut sm = StateMachine::open(dir.path(), rt).unwrap();
    assert_eq!(*sm.subscribe_applied().borrow(), n);
    assert_eq!(sm.applied_state().await.unwrap(), (last, members));
    assert_eq!(sm.snapshot_meta(), Some(built.meta));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_never_replaces_a_newer_one() {
    let rt = runtime();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A node at 3 and a leader at 10.
    let mut node = StateMachine::open(d1.path(), rt.clone()).unwrap();
    apply_all(&mut node, (1..=3).map(blank).collect()).await;
    let mut leader = StateMachine::open(d2.path(), rt).unwrap();
    apply_all(&mut leader, (1..=10).map(blank).collect()).await;
    let old = node
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let new = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    node.install_snapshot(&new.meta, new.snapshot.clone())
        .await
        .unwrap();
    assert_eq!(*node.subscribe_applied().borrow(), 10);
    assert_eq!(node.applied_state().await.unwrap().0, Some(log_id(10)));

    // A build that copied the state before the install finishes after it:
    // its file write must be refused, or a restart would resume at 3 with
    // the log up to 10 already purged.
    let old_bytes = old.snapshot.into_inner();
    assert!(!node.persist(&old_bytes, &old.meta).unwrap());
    let current = node
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot");
    assert_eq!(current.meta, new.meta);
    assert_eq!(current.snapshot.into_inner(), new.snapshot.into_inner());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_offered_at_the_wrong_position_is_refused() {
    let rt = runtime();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = StateMachine::open(d1.path(), rt.clone()).unwrap();
    apply_all(&mut leader, (1..=10).map(blank).collect()).await;
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let mut node = StateMachine::open(d2.path(), rt).unwrap();
    let mut wrong = snap.meta.clone();
    wrong.last_log_id = Some(log_id(12));
    let err = node
        .install_snapshot(&wrong, snap.snapshot.clone())
        .await
        .expect_err("mismatched meta");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let mut corrupt = snap.snapshot.clone().into_inner();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 1;
    assert!(
        node.install_snapshot(&snap.meta, Cursor::new(corrupt))
            .await
            .is_err()
    );
    // Nothing changed and nothing was written.
    assert_eq!(node.applied_state().await.unwrap().0, None);
    assert!(node.get_current_snapshot().await.unwrap().is_none());

    node.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(node.applied().state.hash(), leader.applied().state.hash());
    assert_eq!(node.snapshot_meta(), Some(snap.meta));
}
