//! Query admission: slow queries flooding a follower get `503 overloaded` (with
//! `Retry-After`) instead of taking the Wasm instances that applying the log
//! needs; every write still applies on every node and the states stay equal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use cairn_host::http_client;
use http::Method;
use serde_json::json;

use crate::harness::{Cluster, WAIT, send_to};
use crate::http_node::converge_http;

/// Instance pool of each node, and the part of it kept for applying entries.
const POOL: u32 = 4;
const RESERVED: u32 = 2;
/// Concurrent query loops: far more than the `POOL - RESERVED` query slots.
const QUERIERS: usize = 16;
/// Writes applied through the leader while the follower is flooded.
const WRITES: u64 = 40;
/// Loop turns of one slow query (tens of ms of CPU here; bounded by fuel).
const SPIN_ITERATIONS: u64 = 10_000_000;
/// Fuel per call of the fixture: enough for the spin with room to spare.
const FUEL_PER_CALL: u64 = 2_000_000_000;
/// The node's own deploy deadline (`deploy_timeout_ms`).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    overloaded: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flooded_queries_are_refused_and_writes_still_apply_everywhere() -> Result<()> {
    let mut cluster = Cluster::start_with(3, &|c| {
        c.runtime.pooled_instances = POOL;
        c.apply_reserved_instances = RESERVED;
    })
    .await?;
    let leader = cluster.wait_leader().await?;
    let follower = cluster
        .running()
        .find(|n| n.id != leader)
        .expect("a follower")
        .id;
    let wasm = cairn_host::plugins::built("misbehave");
    let deployed = cluster
        .node(leader)
        .req(
            Method::PUT,
            &format!("/v1/plugins/misbehave?fuel_per_call={FUEL_PER_CALL}"),
            &[],
            wasm,
        )
        .await?
        .expect(201)?;
    let deployed_at = deployed.header_u64("cairn-log-index").expect("log index");
    cluster.node(follower).wait_applied(deployed_at).await?;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let follower_addr = cluster.node(follower).addr().to_string();
    let query = serde_json::to_vec(&json!({"op": "spin", "iterations": SPIN_ITERATIONS}))?;
    let queriers: Vec<_> = (0..QUERIERS)
        .map(|_| {
            let (tally, stop, addr) = (tally.clone(), stop.clone(), follower_addr.clone());
            let query = Bytes::from(query.clone());
            tokio::spawn(async move {
                let client = http_client::new_client();
                let path = "/v1/plugins/misbehave/query?consistency=stale";
                while !stop.load(Ordering::Relaxed) {
                    let r = send_to(&client, &addr, Method::POST, path, &[], query.clone()).await?;
                    match (r.status, r.code().as_deref()) {
                        (200, _) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        (503, Some("overloaded")) => {
                            let retry_after = r.header_u64("retry-after");
                            if retry_after != Some(1) {
                                bail!("503 overloaded without Retry-After: 1 ({retry_after:?})");
                            }
                            tally.overloaded.fetch_add(1, Ordering::Relaxed);
                            // Not the advertised second: the test wants pressure.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        (status, _) => bail!(
                            "query answered {status}: {}",
                            String::from_utf8_lossy(&r.body)
                        ),
                    }
                }
                Ok(())
            })
        })
        .collect();

    // Writes through the leader, applied on the flooded follower too.
    let started = Instant::now();
    let mut last_index = 0;
    for i in 0..WRITES {
        let cmd = json!({"op": "write", "key": format!("w{i:03}"), "value": i});
        let r = cluster
            .node(leader)
            .apply("misbehave", &cmd)
            .await?
            .expect(200)?;
        last_index = r.header_u64("cairn-log-index").expect("log index");
    }
    let writing = started.elapsed();
    cluster.node(follower).wait_applied(last_index).await?;
    stop.store(true, Ordering::Relaxed);
    for q in queriers {
        q.await??;
    }
    let (ok, overloaded) = (
        tally.ok.load(Ordering::Relaxed),
        tally.overloaded.load(Ordering::Relaxed),
    );
    eprintln!(
        "query_admission: {WRITES} writes in {writing:?}; follower queries: {ok} answered, \
         {overloaded} refused 503 overloaded"
    );
    assert!(ok > 0, "some queries must get a slot");
    assert!(overloaded > 0, "more queries than slots must be refused");

    let (index, hash) = converge_http(&cluster.running().collect::<Vec<_>>(), WAIT).await?;
    assert!(
        index >= last_index,
        "converged at {index}, before {last_index}"
    );
    // The follower applied every write (none failed for want of an instance).
    let r = cluster
        .node(follower)
        .query(
            "misbehave",
            "consistency=stale",
            &json!({"op": "get", "key": format!("w{:03}", WRITES - 1)}),
        )
        .await?
        .expect(200)?;
    assert_eq!(r.json(), json!({"value": (WRITES - 1).to_string()}));
    // /metrics counts the refusals and shows the HTTP connection gauges.
    let metrics = cluster.node(follower).get("/metrics").await?.expect(200)?;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let sample = |series: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    assert!(
        sample(r#"cairn_queries_total{outcome="overloaded"}"#) >= Some(overloaded),
        "{text}"
    );
    assert!(sample("cairn_http_connections_open") >= Some(1), "{text}");
    assert_eq!(
        sample("cairn_http_connections_refused_total"),
        Some(0),
        "{text}"
    );
    eprintln!("query_admission: all nodes at {index} with hash {hash}");
    cluster.stop_all().await
}

/// A burst a little larger than the query slots waits for them (bounded by
/// `query_slot_wait_ms`) instead of being refused: 64 clients released
/// together by one read index must not see `503`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_above_the_query_slots_waits_for_a_slot() -> Result<()> {
    const BURST: usize = 6;
    let mut cluster = Cluster::start_with(1, &|c| {
        c.runtime.pooled_instances = POOL;
        c.apply_reserved_instances = RESERVED;
        // Long enough for the whole burst on a loaded machine.
        c.query_slot_wait_ms = 20_000;
    })
    .await?;
    let leader = cluster.wait_leader().await?;
    let wasm = cairn_host::plugins::built("misbehave");
    // A compile can take long while other tests compile big components.
    cluster
        .node(leader)
        .req_within(
            Method::PUT,
            &format!("/v1/plugins/misbehave?fuel_per_call={FUEL_PER_CALL}"),
            wasm,
            DEPLOY_TIMEOUT,
        )
        .await?
        .expect(201)?;
    let addr = cluster.node(leader).addr().to_string();
    // Each query holds its slot for a while, so the burst cannot fit at once.
    let query = Bytes::from(serde_json::to_vec(
        &json!({"op": "spin", "iterations": SPIN_ITERATIONS / 10}),
    )?);
    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            let (addr, query) = (addr.clone(), query.clone());
            tokio::spawn(async move {
                let client = http_client::new_client();
                let path = "/v1/plugins/misbehave/query?consistency=stale";
                let r = send_to(&client, &addr, Method::POST, path, &[], query).await?;
                Ok::<u16, anyhow::Error>(r.status)
            })
        })
        .collect();
    for q in burst {
        let status = q.await??;
        assert_eq!(status, 200, "a query of the burst was not answered");
    }
    cluster.stop_all().await
}
