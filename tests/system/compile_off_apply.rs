//! Big components do not stall the cluster: a large component's compile runs
//! off the apply path (leader before proposing, followers from when the entry
//! is appended), so another plugin's writes keep their latency while it is
//! deployed. Prints the time from PUT to "callable on all 3 nodes" and the
//! other plugin's write p99 with and without the deploy.
//!
//! By default the large component is the counter padded to 60 MiB with a
//! custom section (big to move and hash, quick to compile, so CI stays
//! fast). `CAIRN_BIG_COMPONENT=/path/kv.wasm` measures a real one instead
//! (e.g. the Python kv: 18.5 MB, ~20 s to compile), with
//! `CAIRN_BIG_COMPONENT_FUEL` / `_MEMORY` for its limits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::harness::{Cluster, Node, eventually};

const MIB: usize = 1024 * 1024;
/// Writes to the other plugin measured without and with the deploy.
const BASELINE_WRITES: usize = 150;
/// Upper bound on writes while the deploy runs (keeps the loop bounded).
const MAX_WRITES_DURING: usize = 20_000;
/// How long the large component may take to become callable everywhere.
const CALLABLE_BOUND: Duration = Duration::from_secs(120);
/// A client deadline that outlasts a real interpreter's compile.
const DEPLOY_CLIENT_TIMEOUT: Duration = Duration::from_secs(150);
/// The assertion is generous (shared CI machines are noisy); the printed
/// ratio is the measurement, and the target is 2×.
const P99_RATIO_BOUND: f64 = 8.0;
/// Below this, a p99 is not a compile stall: the default 60 MiB entry itself
/// (not its compile) takes from a few hundred ms to seconds to write, fsync
/// and replicate, the more so with the whole suite running at once; the same
/// bound as `large_plugin`'s longest gap between writes.
const P99_FLOOR: Duration = Duration::from_secs(6);

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples
        .get((samples.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

async fn write(node: &Node, i: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    node.apply(
        "other",
        &json!({"put": {"key": format!("k{i}"), "value": i}}),
    )
    .await?
    .expect(200)?;
    Ok(started.elapsed())
}

/// The large component, its limits as query params, and a query it answers.
fn big_component() -> anyhow::Result<(Vec<u8>, String, serde_json::Value)> {
    if let Ok(path) = std::env::var("CAIRN_BIG_COMPONENT") {
        let fuel = std::env::var("CAIRN_BIG_COMPONENT_FUEL").unwrap_or_else(|_| "5000000".into());
        let memory =
            std::env::var("CAIRN_BIG_COMPONENT_MEMORY").unwrap_or_else(|_| (32 * MIB).to_string());
        return Ok((
            std::fs::read(&path)?,
            format!("fuel_per_call={fuel}&memory_limit_bytes={memory}"),
            json!({"get": {"key": "probe"}}),
        ));
    }
    let counter = cairn_host::plugins::example("counter").expect("counter embedded");
    Ok((
        crate::large_plugin::padded_component(counter, 60 * MIB),
        String::new(),
        json!({"get": {}}),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_deploy_does_not_stall_other_plugins() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader_id = cluster.wait_leader().await?;
    let leader = cluster.node(leader_id);
    let kv = cairn_host::plugins::example("kv").expect("kv embedded");
    leader.deploy("other", kv).await?.expect(201)?;

    let mut baseline = Vec::with_capacity(BASELINE_WRITES);
    for i in 0..BASELINE_WRITES {
        baseline.push(write(leader, i).await?);
    }
    let p99_base = p99(baseline);

    let (wasm, params, probe) = big_component()?;
    let size = wasm.len();
    let addr = leader.addr().to_string();
    let started = Instant::now();
    let deploy = tokio::spawn(async move {
        let client = cairn_host::http_client::new_client();
        let path = if params.is_empty() {
            "/v1/plugins/big".to_string()
        } else {
            format!("/v1/plugins/big?{params}")
        };
        let uri = cairn_host::http_client::url(&addr, &path)?;
        let mut req = cairn_host::http_client::request(Method::PUT, uri, None, Bytes::from(wasm));
        if let Some(token) = crate::harness::token_for(&addr) {
            cairn_host::http_client::set_bearer(&mut req, &token)?;
        }
        let resp =
            cairn_host::http_client::send(&client, req, DEPLOY_CLIENT_TIMEOUT, 1 << 20).await?;
        anyhow::ensure!(resp.status() == 201, "deploy answered {}", resp.status());
        let body: serde_json::Value = serde_json::from_slice(resp.body())?;
        Ok::<_, anyhow::Error>((body["log_index"].as_u64().unwrap_or(0), started.elapsed()))
    });

    // Writes to the other plugin until the big one is callable on every node.
    let mut during = Vec::new();
    let mut i = BASELINE_WRITES;
    while !deploy.is_finished() && during.len() < MAX_WRITES_DURING {
        during.push(write(leader, i).await?);
        i += 1;
    }
    let (index, put_answered) = deploy.await??;
    let callable = {
        let mut writes = Vec::new();
        let params = format!("consistency=stale&min_index={index}");
        let mut pending: Vec<&Node> = cluster.running().collect();
        let until = Instant::now() + CALLABLE_BOUND;
        while !pending.is_empty() && Instant::now() < until {
            writes.push(write(leader, i).await?);
            i += 1;
            let mut still = Vec::new();
            for n in pending {
                let r = n.query("big", &params, &probe).await?;
                if r.status != 200 {
                    still.push(n);
                }
            }
            pending = still;
        }
        anyhow::ensure!(
            pending.is_empty(),
            "not callable everywhere in {CALLABLE_BOUND:?}"
        );
        during.extend(writes);
        started.elapsed()
    };
    let writes_during = during.len();
    let p99_during = p99(during);
    let ratio = p99_during.as_secs_f64() / p99_base.as_secs_f64().max(1e-6);
    println!(
        "deploy of a {:.1} MiB component: PUT answered after {put_answered:?}, callable on all \
         3 nodes after {callable:?}; other plugin's write p99 {p99_base:?} without the deploy \
         ({BASELINE_WRITES} writes), {p99_during:?} during it ({writes_during} writes): {ratio:.2}x",
        size as f64 / MIB as f64
    );
    assert!(
        p99_during <= P99_FLOOR.max(p99_base.mul_f64(P99_RATIO_BOUND)),
        "writes to another plugin stalled: p99 {p99_during:?} vs {p99_base:?}"
    );
    let (_, hash) = cluster.converge().await?;
    assert!(!hash.is_empty());
    eventually(Duration::from_secs(5), "big listed everywhere", || async {
        for n in cluster.running() {
            if n.get("/v1/plugins/big").await?.status != 200 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    cluster.stop_all().await
}
