//! Cluster settings: written at init from the first node's flags, followed by
//! nodes whose flags differ (and they say so), changed through any node.

use anyhow::{Result, ensure};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::harness::{WAIT, eventually};
use crate::process::ProcCluster;

const FLAG_FUEL: u64 = 5_000_000_000;

async fn settings(cluster: &ProcCluster, id: u64) -> Result<Value> {
    Ok(cluster
        .node(id)
        .get("/v1/cluster/settings")
        .await?
        .expect(200)?
        .json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_the_cluster_settings_and_changes_replicate() -> Result<()> {
    let fuel = FLAG_FUEL.to_string();
    let mut cluster = ProcCluster::start(1, &["--max-fuel-per-call", &fuel]).await?;
    // Node 2 starts with the default ceiling; the cluster's record wins.
    cluster.add(2, vec![]).await?;
    eventually(WAIT, "node 2 applies the settings record", || async {
        let s = settings(&cluster, 2).await?;
        Ok((s["max_fuel_per_call"] == json!(FLAG_FUEL)).then_some(()))
    })
    .await?;
    eventually(WAIT, "node 2 says its flags differ", || async {
        Ok(cluster
            .node(2)
            .log()
            .contains("differ from the cluster settings")
            .then_some(()))
    })
    .await?;
    ensure!(
        !cluster
            .node(1)
            .log()
            .contains("differ from the cluster settings"),
        "node 1's flags are the cluster's"
    );

    // A change through the follower reaches every node.
    let patch = |body: Value| {
        cluster.node(2).req(
            Method::PATCH,
            "/v1/cluster/settings",
            Bytes::from(body.to_string()),
        )
    };
    let changed =
        patch(json!({"max_fuel_per_call": 2_000_000_000u64, "limits": {"max_value_bytes": 4096}}))
            .await?
            .expect(200)?
            .json();
    ensure!(
        changed["limits"]["max_value_bytes"] == json!(4096),
        "{changed}"
    );
    for id in [1, 2] {
        eventually(WAIT, "the change reaches every node", || async {
            let s = settings(&cluster, id).await?;
            Ok((s == changed).then_some(()))
        })
        .await?;
    }
    for (bad, why) in [
        (json!({"no_such_setting": 1}), "unknown field"),
        (
            json!({"default_fuel_per_call": 3_000_000_000u64}),
            "default above the ceiling",
        ),
        (
            json!({"max_plugin_bytes": 1u64 << 40}),
            "plugin larger than an entry",
        ),
        (json!({"limits": {"max_key_bytes": "big"}}), "not a number"),
    ] {
        let r = patch(bad).await?;
        ensure!(
            r.status == 400 && r.code().as_deref() == Some("invalid-settings"),
            "{why}: {} {:?}",
            r.status,
            r.code()
        );
    }
    ensure!(
        settings(&cluster, 1).await? == changed,
        "refused changes changed nothing"
    );

    // Deploys are held to the ceiling in force.
    let wasm = cairn_host::plugins::example("counter").expect("counter example");
    let r = cluster
        .node(2)
        .req(
            Method::PUT,
            "/v1/plugins/counter?fuel_per_call=2000000001",
            Bytes::from_static(wasm),
        )
        .await?;
    ensure!(
        r.status == 400 && r.code().as_deref() == Some("fuel-too-large"),
        "{} {:?}",
        r.status,
        r.code()
    );
    cluster
        .node(2)
        .req(
            Method::PUT,
            "/v1/plugins/counter?fuel_per_call=2000000000",
            Bytes::from_static(wasm),
        )
        .await?
        .expect(201)?;
    cluster.converge().await?;
    cluster.finish().await
}
