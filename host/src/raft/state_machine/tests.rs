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

fn command(index: u64, cmd: Command) -> EntryResponder<TypeConfig> {
    let entry = EntryOf::<TypeConfig> {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd),
    };
    (entry, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_fault_fails_the_apply_and_publishes_nothing() {
    use crate::runtime::{CallContext, Code, EngineParams, Limits, RuntimeConfig};
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(
        Runtime::new(RuntimeConfig {
            pooled_instances: 1,
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let wasm = crate::plugins::built("counter");
    let mut sm = StateMachine::open(dir.path(), rt.clone()).unwrap();
    let deploy = Command::Deploy {
        name: "c".into(),
        code: crate::state::DeployCode::Inline(wasm.clone()),
        fuel_per_call: 10_000_000,
        memory_limit_bytes: 32 << 20,
        timestamp_ms: 1,
        idempotency_key: None,
    };
    apply_all(&mut sm, vec![blank(1), command(2, deploy)]).await;
    let increment = || Command::Apply {
        plugin: "c".into(),
        input: br#"{"increment":{"by":1}}"#.to_vec(),
        timestamp_ms: 2,
        idempotency_key: None,
    };
    let limits = Limits::default();
    let ctx = CallContext {
        plugin: "c",
        log_index: 2,
        timestamp_ms: 2,
        fuel: 10_000_000,
        memory_limit_bytes: 32 << 20,
        limits: &limits,
        engine: EngineParams::default(),
    };
    let held = rt.occupy_slot(&Code::new(wasm), &ctx);
    let entries = vec![blank(3), command(4, increment())];
    let err = sm
        .apply(stream::iter(entries.into_iter().map(Ok)))
        .await
        .expect_err("a host fault must fail the apply");
    assert!(err.to_string().contains("log index 4"), "{err}");
    // Not even the blank before it was published: the batch is replayed whole.
    assert_eq!(*sm.subscribe_applied().borrow(), 2);
    assert_eq!(sm.applied().state.kv("c").len(), 0);
    drop(held);
    apply_all(&mut sm, vec![blank(3), command(4, increment())]).await;
    assert_eq!(*sm.subscribe_applied().borrow(), 4);
    assert_eq!(sm.applied().state.kv("c").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_seeds_a_one_node_snapshot_with_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut sm = StateMachine::open(&dir.path().join("a"), rt.clone()).unwrap();
    apply_all(&mut sm, vec![membership(1), blank(2), blank(3)]).await;
    let image = sm.backup().unwrap();
    assert_eq!(image.applied_index, 3);

    // Any damage is caught before anything is written.
    let mut flipped = image.bytes.clone();
    flipped[image.bytes.len() / 2] ^= 1;
    assert!(ValidBackup::check(&flipped).is_err());
    assert!(ValidBackup::check(&image.bytes[..image.bytes.len() - 1]).is_err());

    let backup = ValidBackup::check(&image.bytes).unwrap();
    assert_eq!(backup.state_hash(), image.state_hash);
    let seeded = dir.path().join("b");
    backup
        .seed(
            &seeded,
            9,
            crate::raft::types::Node::new("127.0.0.1:9", "127.0.0.1:10"),
        )
        .unwrap();
    let restored = StateMachine::open(&seeded, rt).unwrap();
    let applied = restored.applied();
    assert_eq!(applied.state.hash_hex(), image.state_hash);
    assert_eq!(applied.state.applied_index(), 3);
    // Term 0, this node, the backup's index; the only voter is this node.
    let last = applied.last_applied.expect("a position");
    assert_eq!(
        (last.leader_id.term, last.leader_id.node_id, last.index),
        (0, 9, 3)
    );
    let voters: Vec<u64> = applied.membership.membership().voter_ids().collect();
    assert_eq!(voters, [9]);
    assert_eq!(
        restored.snapshot_meta().and_then(|m| m.last_log_id),
        Some(last)
    );
}
