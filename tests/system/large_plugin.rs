//! Sizes that agree: a plugin near `max_plugin_bytes` deploys through a follower
//! of a 3-node cluster while writes keep flowing; a deploy over the cap and an
//! apply over `max_entry_bytes` get 413 and change nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::harness::{Cluster, Resp, send_to};

const MIB: usize = 1024 * 1024;
/// The large plugin: a little under the default `max_plugin_bytes` (64 MiB).
const BIG_PLUGIN_BYTES: usize = 60 * MIB;
/// The deploy of the large plugin must answer within this (the harness's
/// per-request deadline is 15 s; the follower forwards with a 10 s one).
const DEPLOY_BOUND: Duration = Duration::from_secs(15);
/// Longest pause allowed between two successful background writes while the
/// large entry is replicated and applied (it sits in the log ahead of them).
const MAX_WRITE_GAP: Duration = Duration::from_secs(6);
/// Upper bound on background writes, so the writer loop is bounded.
const MAX_BACKGROUND_WRITES: usize = 100_000;

/// Appends `bytes` to LEB128 `out`.
fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `component` with a custom section appended so the whole is `total` bytes
/// (a custom section at the end of a component is valid and ignored).
pub(crate) fn padded_component(component: &[u8], total: usize) -> Vec<u8> {
    const NAME: &[u8] = b"cairn-test-padding";
    let mut head = Vec::new();
    leb128(NAME.len(), &mut head);
    head.extend_from_slice(NAME);
    // Solve for the payload: id (1) + size LEB + head + payload = total - component.
    let room = total - component.len() - 1 - head.len();
    let mut size_leb = Vec::new();
    let mut payload = room;
    for _ in 0..4 {
        size_leb.clear();
        leb128(head.len() + payload, &mut size_leb);
        payload = room - size_leb.len();
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(component);
    out.push(0x00);
    leb128(head.len() + payload, &mut out);
    out.extend_from_slice(&head);
    out.resize(out.len() + payload, 0xA5);
    assert_eq!(out.len(), total, "padding arithmetic");
    out
}

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.code().as_deref()),
        (status, Some(code)),
        "body {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

/// Puts keys through `addr` until `stop`; returns the instants of successes and the failures.
async fn write_until(addr: String, stop: Arc<AtomicBool>) -> (Vec<Instant>, Vec<String>) {
    let client = cairn_host::http_client::new_client();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for i in 0..MAX_BACKGROUND_WRITES {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let body = serde_json::to_vec(&json!({"put": {"key": format!("w{i:06}"), "value": i}}))
            .expect("json");
        match send_to(
            &client,
            &addr,
            Method::POST,
            "/v1/plugins/kv/apply",
            &[],
            body.into(),
        )
        .await
        {
            Ok(r) if r.status == 200 => ok.push(Instant::now()),
            Ok(r) => failed.push(format!(
                "{}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_near_max_plugin_bytes_deploys_through_a_follower_while_writes_flow()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader_id = cluster.wait_leader().await?;
    let leader = cluster.node(leader_id);
    let follower = cluster
        .running()
        .find(|n| n.id != leader_id)
        .expect("a follower");
    let kv = cairn_host::plugins::example("kv").expect("kv embedded");
    leader.deploy("kv", kv).await?.expect(201)?;

    let counter = cairn_host::plugins::example("counter").expect("counter embedded");
    let big = Bytes::from(padded_component(counter, BIG_PLUGIN_BYTES));

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(leader.addr().to_string(), stop.clone()));
    // Let the writer get going before the large entry enters the log.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let r = follower
        .req(Method::PUT, "/v1/plugins/big", &[], big.clone())
        .await?;
    let deploy_took = started.elapsed();
    let r = r.expect(201)?;
    let deploy_index = r.json()["log_index"].as_u64().expect("log_index");
    // A few more writes after the deploy, then stop the writer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = writer.await?;

    let mut gaps: Vec<Duration> = ok.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let longest = gaps.last().copied().unwrap_or_default();
    println!(
        "deploy of {} MiB through a follower: {deploy_took:?}; background writes ok {}, failed {}; \
         longest gap between successful writes {longest:?}",
        BIG_PLUGIN_BYTES / MIB,
        ok.len(),
        failed.len()
    );
    assert!(deploy_took < DEPLOY_BOUND, "deploy took {deploy_took:?}");
    assert!(failed.is_empty(), "background writes failed: {failed:?}");
    assert!(ok.len() >= 10, "only {} background writes", ok.len());
    assert!(
        ok.first().is_some_and(|t| *t < started)
            && ok.last().is_some_and(|t| *t > started + deploy_took),
        "the writes did not span the deploy"
    );
    assert!(longest < MAX_WRITE_GAP, "writes paused for {longest:?}");

    // The plugin is callable on every node (a stale read once each has applied it).
    let params = format!("consistency=stale&min_index={deploy_index}");
    for n in cluster.running() {
        let q = n
            .query("big", &params, &json!({"get": {}}))
            .await?
            .expect(200)?;
        assert_eq!(q.json(), json!({"value": 0}), "node {}", n.id);
        let info = n.get("/v1/plugins/big").await?.expect(200)?.json();
        assert_eq!(info["size_bytes"], BIG_PLUGIN_BYTES as u64, "node {}", n.id);
    }
    let (_, hash) = cluster.converge().await?;
    // Nobody refused a peer RPC on the way (the follower accepts what the leader sends).
    for n in cluster.running() {
        let metrics = String::from_utf8(n.get("/metrics").await?.expect(200)?.body.to_vec())?;
        assert!(
            !metrics.contains("cairn_peer_rpc_refused_total{"),
            "node {} refused peer rpcs:\n{metrics}",
            n.id
        );
    }
    assert!(!hash.is_empty());
    cluster.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_over_max_plugin_bytes_and_an_apply_over_max_entry_bytes_get_413()
-> anyhow::Result<()> {
    const KIB: usize = 1024;
    // Small cluster settings, so "just over" is small; the node's own HTTP cap for
    // apply bodies (max_body_bytes, 8 MiB) stays far above max_entry_bytes.
    let max_plugin_bytes = MIB;
    let max_entry_bytes = MIB + 64 * KIB;
    let mut cluster = Cluster::start_with(3, &|c| {
        c.cluster.max_plugin_bytes = max_plugin_bytes as u64;
        c.cluster.max_entry_bytes = max_entry_bytes as u64;
    })
    .await?;
    let leader_id = cluster.wait_leader().await?;
    let leader = cluster.node(leader_id);
    let follower = cluster
        .running()
        .find(|n| n.id != leader_id)
        .expect("a follower");
    let counter = cairn_host::plugins::example("counter").expect("counter embedded");
    leader.deploy("counter", counter).await?.expect(201)?;
    // At the cap exactly, a deploy goes through (through a follower, which checks too).
    let at_cap = padded_component(counter, max_plugin_bytes);
    cluster.converge().await?;
    follower.deploy("fits", &at_cap).await?.expect(201)?;
    let before = cluster.converge().await?;

    let over = padded_component(counter, max_plugin_bytes + 1);
    for n in [leader, follower] {
        assert_error(&n.deploy("over", &over).await?, 413, "body-too-large");
        // Bigger than max_entry_bytes, below the node's HTTP cap: the cluster's limit decides.
        let input = json!({"put": {"key": "k", "value": "v".repeat(2 * MIB)}});
        let r = n.apply("counter", &input).await?;
        assert_error(&r, 413, "entry-too-large");
        let message = r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains(&max_entry_bytes.to_string()),
            "the message names the limit: {message}"
        );
    }
    // Nothing changed: same applied index and state hash everywhere.
    assert_eq!(cluster.converge().await?, before);
    assert_eq!(
        leader.get("/v1/plugins/over").await?.status,
        404,
        "the refused plugin is not deployed"
    );
    cluster.stop_all().await
}
