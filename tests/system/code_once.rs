//! Code is stored once: redeploying the same bytes, or only new limits (PUT
//! or PATCH), adds next to nothing to the Raft log of any node; versions move
//! only when something changes; every node ends with the same state.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::harness::{Cluster, Node};

/// Bytes of records in the Raft logs of every node, as each reports them
/// (`cairn_log_bytes`: segment files are preallocated, so their sizes say nothing).
async fn log_bytes(cluster: &Cluster) -> Result<u64> {
    let mut total = 0;
    for n in &cluster.nodes {
        let r = n.get("/metrics").await?.expect(200)?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("cairn_log_bytes ")?.parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no cairn_log_bytes in /metrics"))?;
    }
    Ok(total)
}

/// `version`, `log_index` and `changed` of a deploy answer, checking its sha.
fn answer(body: &Value, sha: &str) -> (u64, u64, bool) {
    assert_eq!(body["sha256"], sha, "{body}");
    (
        body["log_index"].as_u64().expect("log_index"),
        body["version"].as_u64().expect("version"),
        body["changed"].as_bool().expect("changed"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeploys_and_limit_changes_do_not_copy_the_code_into_the_log() -> Result<()> {
    let mut cluster = Cluster::start(3).await?;
    cluster.wait_leader().await?;
    let wasm = cairn_host::plugins::example("counter").expect("counter embedded");
    let nodes: Vec<&Node> = cluster.nodes.iter().collect();
    let empty = log_bytes(&cluster).await?;

    let first = nodes[1].deploy("counter", wasm).await?.expect(201)?.json();
    let sha = first["sha256"].as_str().expect("sha256").to_string();
    let (deployed_at, version, changed) = answer(&first, &sha);
    assert_eq!((version, changed), (1, true));
    let (applied, _) = cluster.converge().await?;
    let before = log_bytes(&cluster).await?;
    // The measure sees entries: the first deploy is in all three logs.
    ensure!(
        before - empty >= 3 * wasm.len() as u64,
        "the first deploy grew the logs by only {} bytes",
        before - empty
    );

    // The same bytes and limits, through every node: the version in force, no entry.
    for i in 0..20 {
        let r = nodes[i % 3].deploy("counter", wasm).await?.expect(200)?;
        assert_eq!(
            answer(&r.json(), &sha),
            (deployed_at, 1, false),
            "redeploy {i}"
        );
        assert_eq!(r.header_u64("cairn-log-index"), Some(deployed_at));
    }
    // Answered before proposing: not even a small entry was added.
    assert_eq!(cluster.converge().await?.0, applied);
    // The same bytes with new limits: a new version, the code sent by sha.
    let r = nodes[2]
        .deploy_with("counter", wasm, "fuel_per_call=2000000", &[])
        .await?
        .expect(201)?;
    let (_, version, _) = answer(&r.json(), &sha);
    assert_eq!(version, 2);
    // New limits without the bytes.
    for i in 0..5u64 {
        let params = format!("fuel_per_call={}", 3_000_000 + i);
        let r = nodes[i as usize % 3]
            .set_limits("counter", &params)
            .await?
            .expect(200)?;
        let (_, version, changed) = answer(&r.json(), &sha);
        assert_eq!((version, changed), (3 + i, true), "patch {i}");
    }
    let r = nodes[0]
        .set_limits("counter", "fuel_per_call=3000004")
        .await?
        .expect(200)?;
    let (v7_index, version, changed) = answer(&r.json(), &sha);
    assert_eq!((version, changed), (7, false), "the same limits again");
    // Registry reads answer from the node's applied state.
    nodes[1].wait_applied(v7_index).await?;
    let info = nodes[1]
        .get("/v1/plugins/counter")
        .await?
        .expect(200)?
        .json();
    assert_eq!(
        (&info["version"], &info["fuel_per_call"]),
        (&json!(7), &json!(3_000_004))
    );

    // Refusals.
    let r = nodes[1].set_limits("nope", "fuel_per_call=5").await?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (404, Some("plugin-not-found"))
    );
    let r = nodes[1].set_limits("counter", "").await?;
    assert_eq!((r.status, r.code().as_deref()), (400, Some("bad-query")));
    let settings = nodes[0]
        .get("/v1/cluster/settings")
        .await?
        .expect(200)?
        .json();
    let too_much = settings["max_fuel_per_call"].as_u64().expect("max fuel") + 1;
    let r = nodes[2]
        .set_limits("counter", &format!("fuel_per_call={too_much}"))
        .await?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (400, Some("fuel-too-large"))
    );

    // The plugin still runs, on every node alike.
    nodes[0]
        .apply("counter", &json!({"increment": {"by": 2}}))
        .await?
        .expect(200)?;
    cluster.converge().await?;
    let grown = log_bytes(&cluster).await? - before;
    eprintln!(
        "component {} bytes; first deploy grew the logs by {}; 20 redeploys, 6 limit changes and 1 apply by {grown}",
        wasm.len(),
        before - empty
    );
    ensure!(
        grown < 2 * wasm.len() as u64,
        "20 redeploys and 6 limit changes grew the logs of 3 nodes by {grown} bytes \
         (the component is {} bytes)",
        wasm.len()
    );
    cluster.stop_all().await
}
