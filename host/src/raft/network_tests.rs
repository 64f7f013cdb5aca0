//! End-to-end tests of the Raft network with the real storage: openraft nodes on the
//! durable `LogStore` and the plugin `StateMachine`, talking over loopback HTTP, running
//! the embedded `kv` plugin; nodes agree when their applied index and state hash agree.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use crate::config::Config;
use crate::raft::test_support::{TestEnv, TestNode};
use crate::raft::types::{Node, Raft};
use crate::state::{Command, CommandResult};

const TIMEOUT: Duration = Duration::from_secs(30);
const WAIT: Option<Duration> = Some(TIMEOUT);
/// Budget for a transfer of the large snapshot test, generous for a loaded CI box.
const BIG_WAIT: Duration = Duration::from_secs(600);
/// Fixed command timestamps: the state must not depend on the test's clock.
const T0: u64 = 1_700_000_000_000;

fn members(nodes: &[&TestNode]) -> BTreeMap<u64, Node> {
    nodes.iter().map(|n| (n.id, n.member())).collect()
}

async fn wait_applied(node: &TestNode, index: u64, timeout: Option<Duration>) {
    node.raft
        .wait(timeout)
        .applied_index_at_least(Some(index), format!("node {} applies {index}", node.id))
        .await
        .expect("applied in time");
}

/// Deploys the embedded kv plugin with `fuel` per call; returns the log index.
///
/// Like a node's deploy handler, it compiles the component before proposing; the
/// nodes of a test share one runtime, so none of them compiles inside `apply` (seconds
/// of CPU in a debug build, enough to starve heartbeats on two cores).
async fn deploy_kv(env: &TestEnv, raft: &Raft, fuel: u64) -> u64 {
    let wasm = crate::plugins::example("kv")
        .expect("kv is embedded")
        .to_vec();
    let runtime = env.runtime().clone();
    let w = wasm.clone();
    tokio::task::spawn_blocking(move || {
        runtime.validate(&w, crate::runtime::EngineParams::default(), usize::MAX)
    })
    .await
    .expect("join")
    .expect("kv validates");
    let resp = raft
        .client_write(Command::Deploy {
            name: "kv".into(),
            code: crate::state::DeployCode::Inline(wasm),
            fuel_per_call: fuel,
            memory_limit_bytes: 64 << 20,
            timestamp_ms: T0,
            idempotency_key: None,
        })
        .await
        .expect("deploy commits");
    assert!(
        matches!(resp.data, CommandResult::Deployed(_)),
        "deploy: {}",
        resp.data
    );
    resp.log_id.index
}

/// Puts `key` = `value` (a JSON value) through the log; returns the log index.
async fn put(raft: &Raft, key: &str, value: serde_json::Value) -> u64 {
    let input = serde_json::to_vec(&serde_json::json!({"put": {"key": key, "value": value}}))
        .expect("json");
    let resp = raft
        .client_write(Command::Apply {
            plugin: "kv".into(),
            input,
            timestamp_ms: T0 + 1,
            idempotency_key: None,
        })
        .await
        .expect("put commits");
    assert!(
        matches!(resp.data, CommandResult::Applied(_)),
        "put {key}: {}",
        resp.data
    );
    resp.log_id.index
}

/// `(applied index, state hash)` of a node: equal exactly when the states are.
fn fingerprint(node: &TestNode) -> (u64, [u8; 32]) {
    let state = node.state();
    (state.applied_index(), state.hash())
}

/// Elects `leader` as the sole voter of a new cluster.
async fn init_single(leader: &TestNode) {
    leader
        .raft
        .initialize(members(&[leader]))
        .await
        .expect("initialize");
    leader
        .raft
        .wait(WAIT)
        .current_leader(leader.id, "self-elected")
        .await
        .expect("leader");
}

/// Builds a snapshot covering `index` on `leader`, then purges the log up to it, so a
/// new member can only catch up through the snapshot.
async fn snapshot_and_purge(leader: &TestNode, index: u64, timeout: Option<Duration>) {
    leader
        .raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    leader
        .raft
        .wait(timeout)
        .metrics(
            |m| m.snapshot.as_ref().is_some_and(|s| s.index >= index),
            "snapshot built",
        )
        .await
        .expect("snapshot");
    leader.raft.trigger().purge_log(index).await.expect("purge");
    leader
        .raft
        .wait(timeout)
        .metrics(
            |m| m.purged.as_ref().is_some_and(|p| p.index >= index),
            "log purged",
        )
        .await
        .expect("purged");
}

/// Adds `learner` to `leader`'s cluster and waits until it has applied the membership
/// entry that added it, i.e. everything the leader had. openraft's "blocking"
/// `add_learner` only waits until the learner is within `replication_lag_threshold`
/// entries, which an empty learner already is.
async fn add_learner(leader: &TestNode, learner: &TestNode, timeout: Duration) {
    let node = learner.member();
    let resp = tokio::time::timeout(timeout, leader.raft.add_learner(learner.id, node, true))
        .await
        .expect("add_learner in time")
        .expect("learner added");
    wait_applied(learner, resp.log_id.index, Some(timeout)).await;
}

/// Keep no log behind a snapshot, so purging really forces snapshot replication.
fn no_log_behind_snapshots(c: &mut Config) {
    c.max_in_snapshot_log_to_keep = 0;
    c.purge_batch_size = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate_over_http() {
    let env = TestEnv::new();
    let nodes = vec![
        env.start(1, |_| {}).await,
        env.start(2, |_| {}).await,
        env.start(3, |_| {}).await,
    ];
    let refs: Vec<&TestNode> = nodes.iter().collect();
    nodes[0]
        .raft
        .initialize(members(&refs))
        .await
        .expect("initialize");

    // Every node must learn the same leader through votes and heartbeats over HTTP.
    let leader_id = nodes[0]
        .raft
        .wait(WAIT)
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .expect("leader elected")
        .current_leader
        .expect("leader");
    for n in &nodes {
        n.raft
            .wait(WAIT)
            .current_leader(leader_id, format!("node {} sees leader", n.id))
            .await
            .expect("agrees on leader");
    }
    let leader = nodes
        .iter()
        .find(|n| n.id == leader_id)
        .expect("leader node");

    deploy_kv(&env, &leader.raft, 100_000_000).await;
    let mut last_index = 0;
    for i in 0..10 {
        last_index = put(&leader.raft, &format!("k{i}"), serde_json::json!(i)).await;
        // Read-your-writes: the leader's state includes a write once it is acknowledged.
        assert_eq!(leader.state().applied_index(), last_index);
        let query = format!(r#"{{"get":{{"key":"k{i}"}}}}"#);
        let out = leader
            .state()
            .query(env.runtime(), "kv", query.as_bytes(), 0)
            .expect("query");
        assert_eq!(out.output, format!(r#"{{"value":{i}}}"#).into_bytes());
    }
    for n in &nodes {
        wait_applied(n, last_index, WAIT).await;
    }
    let expected = fingerprint(leader);
    assert_eq!(expected.0, last_index);
    assert_eq!(leader.state().kv("kv").len(), 10, "ten keys on the leader");
    for n in &nodes {
        assert_eq!(fingerprint(n), expected, "node {} state", n.id);
    }
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_batches_over_the_byte_target_are_split_and_all_arrive() {
    // A small target: the kv component (tens of KiB) and a 20 KiB value each
    // exceed it and must travel alone; runs of 1 KiB values are cut into prefixes.
    const TARGET: u64 = 4 * 1024;
    let env = TestEnv::new();
    let leader = env.start(1, |c| c.max_append_bytes = TARGET).await;
    let learner = env.start(2, |_| {}).await;
    init_single(&leader).await;

    deploy_kv(&env, &leader.raft, 100_000_000).await;
    let kib = "x".repeat(1024);
    for i in 0..20 {
        put(&leader.raft, &format!("k{i:02}"), serde_json::json!(kib)).await;
    }
    put(
        &leader.raft,
        "big",
        serde_json::json!("y".repeat(20 * 1024)),
    )
    .await;
    let last = put(&leader.raft, "last", serde_json::json!(1)).await;

    // The learner starts empty, so it is sent the whole log in batches.
    add_learner(&leader, &learner, TIMEOUT).await;
    wait_applied(&learner, last, WAIT).await;
    assert_eq!(fingerprint(&learner), fingerprint(&leader));
    assert_eq!(learner.state().kv("kv").len(), 22);
    let stats = leader.peer.stats();
    assert!(stats.appends_split() > 0, "no batch was split");
    assert!(stats.errors().is_empty(), "{:?}", stats.errors());
    assert!(learner.peer.stats().refused().is_empty());

    learner.stop().await;
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_learner_receives_a_snapshot_in_many_chunks() {
    // Small chunks force a multi-request transfer (the kv component alone is
    // tens of KiB); keeping no log behind the snapshot forces the leader to
    // send it instead of replaying entries.
    const CHUNK: u64 = 8 * 1024;
    let small = |c: &mut Config| {
        c.snapshot_chunk_bytes = CHUNK;
        no_log_behind_snapshots(c);
    };
    let env = TestEnv::new();
    let leader = env.start(1, small).await;
    let learner = env.start(2, small).await;
    init_single(&leader).await;

    deploy_kv(&env, &leader.raft, 100_000_000).await;
    let mut last_index = 0;
    for i in 0..40 {
        last_index = put(&leader.raft, &format!("k{i:02}"), serde_json::json!(i)).await;
    }
    snapshot_and_purge(&leader, last_index, WAIT).await;
    let snapshot_bytes = std::fs::metadata(leader.data_dir.join("snapshots/current.snap"))
        .expect("leader's snapshot file")
        .len();

    add_learner(&leader, &learner, TIMEOUT).await;

    assert_eq!(fingerprint(&learner), fingerprint(&leader));
    assert_eq!(learner.state().kv("kv").len(), 40);
    assert_eq!(learner.peer.rpc().snapshots_installed(), 1);
    let chunks = learner.peer.rpc().snapshot_chunks_received();
    assert!(
        chunks > snapshot_bytes / CHUNK,
        "{chunks} chunks for {snapshot_bytes} bytes"
    );
    // The installed snapshot is persisted as the learner's current one.
    assert_eq!(learner.sm.snapshot_meta(), leader.sm.snapshot_meta());
    assert_eq!(
        std::fs::read(learner.data_dir.join("snapshots/current.snap")).expect("learner's file"),
        std::fs::read(leader.data_dir.join("snapshots/current.snap")).expect("leader's file"),
    );

    // The learner keeps replicating normally after the snapshot.
    let next = put(&leader.raft, "after", serde_json::json!("snapshot")).await;
    wait_applied(&learner, next, WAIT).await;
    assert_eq!(fingerprint(&learner), fingerprint(&leader));
    assert_eq!(learner.peer.rpc().snapshots_installed(), 1);
    assert_eq!(
        learner
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .as_ref()
            .map(|l| l.index),
        Some(next)
    );

    learner.stop().await;
    leader.stop().await;
}

/// Size of the state in [`a_large_snapshot_installs_over_the_network`]:
/// `CAIRN_BIG_SNAPSHOT_MB` (e.g. `100`), default 16.
fn big_snapshot_mb() -> u64 {
    std::env::var("CAIRN_BIG_SNAPSHOT_MB")
        .ok()
        .map(|v| v.parse().expect("CAIRN_BIG_SNAPSHOT_MB is a number of MB"))
        .unwrap_or(16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_snapshot_installs_over_the_network() {
    // One kv value per MB of state, each just under the 1 MiB value limit.
    const VALUE_BYTES: usize = 1_000_000;
    let mb = big_snapshot_mb();
    let env = TestEnv::new();
    let leader = env.start(1, no_log_behind_snapshots).await;
    let learner = env.start(2, no_log_behind_snapshots).await;
    let chunk = Config::default().snapshot_chunk_bytes;
    init_single(&leader).await;

    let started = Instant::now();
    // Parsing and storing a 1 MB JSON string costs far more than the default fuel
    // (the most the cluster settings allow per call).
    deploy_kv(&env, &leader.raft, 1_000_000_000).await;
    let mut last_index = 0;
    for i in 0..mb {
        // Distinct content per key, so a misplaced or dropped value changes the hash.
        let pattern = format!("{i:05}-");
        let value: String = pattern.repeat(VALUE_BYTES / pattern.len());
        last_index = put(&leader.raft, &format!("big/{i:05}"), value.into()).await;
    }
    let filled = started.elapsed();
    snapshot_and_purge(&leader, last_index, Some(BIG_WAIT)).await;
    let snapshot_bytes = std::fs::metadata(leader.data_dir.join("snapshots/current.snap"))
        .expect("leader's snapshot file")
        .len();
    assert!(
        snapshot_bytes >= mb * 1_000_000,
        "snapshot of {snapshot_bytes} bytes for {mb} MB of values"
    );
    let built = started.elapsed();

    add_learner(&leader, &learner, BIG_WAIT).await;
    let installed = started.elapsed();

    assert_eq!(fingerprint(&learner), fingerprint(&leader));
    assert_eq!(learner.state().kv("kv").len() as u64, mb);
    assert_eq!(learner.peer.rpc().snapshots_installed(), 1);
    let chunks = learner.peer.rpc().snapshot_chunks_received();
    assert!(
        chunks > snapshot_bytes / chunk,
        "{chunks} chunks of at most {chunk} bytes for {snapshot_bytes} bytes"
    );
    assert_eq!(learner.sm.snapshot_meta(), leader.sm.snapshot_meta());
    assert_eq!(
        std::fs::metadata(learner.data_dir.join("snapshots/current.snap"))
            .expect("learner's snapshot file")
            .len(),
        snapshot_bytes
    );
    eprintln!(
        "large snapshot: {snapshot_bytes} bytes in {chunks} chunks; filled in {filled:?}, \
         snapshot built and purged by {built:?}, installed by {installed:?}"
    );

    learner.stop().await;
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_from_snapshot_and_log_tail_has_the_same_state() {
    let env = TestEnv::new();
    let leader = env.start(1, no_log_behind_snapshots).await;
    let learner = env.start(2, no_log_behind_snapshots).await;
    init_single(&leader).await;

    // The learner's state starts as a snapshot of the first half ...
    deploy_kv(&env, &leader.raft, 100_000_000).await;
    let mut snapshot_index = 0;
    for i in 0..20 {
        snapshot_index = put(&leader.raft, &format!("k{i:02}"), serde_json::json!(i)).await;
    }
    snapshot_and_purge(&leader, snapshot_index, WAIT).await;
    add_learner(&leader, &learner, TIMEOUT).await;
    assert_eq!(learner.peer.rpc().snapshots_installed(), 1);
    // ... and continues as a log tail: new keys and overwrites of snapshotted ones.
    let mut last_index = 0;
    for i in 10..30 {
        last_index = put(
            &leader.raft,
            &format!("k{i:02}"),
            serde_json::json!(i * 100),
        )
        .await;
    }
    wait_applied(&learner, last_index, WAIT).await;
    let before = fingerprint(&learner);
    assert_eq!(before, fingerprint(&leader));
    assert_eq!(before.0, last_index);
    let snapshot_meta = learner.sm.snapshot_meta().expect("learner has a snapshot");
    let snapshot_at = snapshot_meta.last_log_id.expect("non-empty snapshot").index;
    assert!(
        snapshot_at < last_index,
        "the learner's snapshot ({snapshot_at}) must leave a log tail before {last_index}"
    );

    // Stop the leader first: after the restart the learner has only its own disk.
    leader.stop().await;
    learner.stop().await;

    let restarted = env.start(2, no_log_behind_snapshots).await;
    // Opened from the snapshot file, then openraft re-applied the durable tail.
    assert_eq!(restarted.sm.snapshot_meta(), Some(snapshot_meta));
    restarted
        .raft
        .wait(WAIT)
        .applied_index(Some(last_index), "restarted node re-applies its log tail")
        .await
        .expect("tail re-applied");
    assert_eq!(fingerprint(&restarted), before);
    assert_eq!(restarted.state().kv("kv").len(), 30);
    restarted.stop().await;
}
