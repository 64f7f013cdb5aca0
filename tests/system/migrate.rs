//! Upgrades you can trust: a 0.2.0 component's `migrate` runs inside the
//! upgrade's log entry on every node; a failing `migrate` rejects the upgrade
//! (the old version keeps running, data untouched); 0.1.0 components keep
//! working; a dry run reports what an upgrade would do and commits nothing;
//! the events a `migrate` emits are the upgrade entry's.

use std::time::Duration;

use bytes::Bytes;
use cairn_host::cli::events::{EventStream, Start};
use http::Method;
use serde_json::{Value, json};

use crate::harness::{Cluster, Node};

async fn apply_raw(node: &Node, name: &str, body: &'static str) -> anyhow::Result<Value> {
    let r = node
        .req(
            Method::POST,
            &format!("/v1/plugins/{name}/apply"),
            &[],
            Bytes::from_static(body.as_bytes()),
        )
        .await?
        .expect(200)?;
    Ok(r.json())
}

async fn dry_run(node: &Node, name: &str, wasm: &[u8], queries: &Value) -> anyhow::Result<Value> {
    let q = queries.to_string();
    let r = node
        .req(
            Method::POST,
            &format!("/v1/plugins/{name}/dry-run"),
            &[("cairn-sample-queries", q.as_str())],
            Bytes::copy_from_slice(wasm),
        )
        .await?
        .expect(200)?;
    Ok(r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_transforms_data_and_a_failing_migrate_rejects_the_upgrade() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader = cluster.node(cluster.wait_leader().await?);
    let v1 = cairn_host::plugins::built("counter-v1");
    let v2 = cairn_host::plugins::built("counter-v2");
    let get = json!({"get": {}});

    // A 0.1.0 component (no migrate export) deploys and runs.
    for name in ["a", "b"] {
        leader.deploy(name, &v1).await?.expect(201)?;
        assert_eq!(apply_raw(leader, name, "5").await?, json!({"n": 5}));
    }
    apply_raw(leader, "b", "poison").await?;

    // A dry run: migrate and the sample query against a copy; nothing changes.
    let (_, hash_before) = cluster.converge().await?;
    let report = dry_run(leader, "a", &v2, &json!([get])).await?;
    assert_eq!(report["outcome"], "deployed", "{report}");
    assert_eq!(report["from_version"], 1, "{report}");
    assert_eq!(report["migrate_ran"], true, "{report}");
    assert_eq!(
        (&report["keys_added"], &report["keys_removed"]),
        (&json!(2), &json!(1)),
        "{report}"
    );
    assert_eq!(
        report["queries"][0]["old"],
        json!({"ok": {"n": 5}}),
        "{report}"
    );
    assert_eq!(
        report["queries"][0]["new"],
        json!({"ok": {"value": 5, "migrated_from": 1}}),
        "{report}"
    );
    // The same through the CLI.
    let (url, path) = (leader.url(), cairn_host::plugins::built_path("counter-v2"));
    let token = crate::harness::token_for(&url);
    let cli = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(crate::process::cairn_bin());
        cmd.args(["--url", &url, "--json", "deploy", "a"])
            .arg(path)
            .args(["--dry-run", "--sample-query", r#"{"get":{}}"#]);
        if let Some(token) = token {
            cmd.env("CAIRN_TOKEN", token);
        }
        cmd.output()
    })
    .await??;
    assert!(cli.status.success(), "{cli:?}");
    let printed: Value = serde_json::from_slice(&cli.stdout)?;
    assert_eq!(printed["queries"], report["queries"]);
    let failing = dry_run(leader, "b", &v2, &json!([])).await?;
    assert_eq!(failing["outcome"], "failed", "{failing}");
    assert_eq!(failing["error"]["code"], "migrate-failed", "{failing}");
    let (_, hash_after) = cluster.converge().await?;
    assert_eq!(hash_before, hash_after, "a dry run committed something");
    assert_eq!(
        leader.query("a", "", &get).await?.expect(200)?.json(),
        json!({"n": 5})
    );

    // The real upgrade: migrate runs inside the entry, on every node.
    let up = leader.deploy("a", &v2).await?.expect(201)?.json();
    assert_eq!(up["version"], 2);
    let params = format!("consistency=stale&min_index={}", up["log_index"]);
    for n in cluster.running() {
        let q = n.query("a", &params, &get).await?.expect(200)?;
        assert_eq!(
            q.json(),
            json!({"value": 5, "migrated_from": 1}),
            "node {}",
            n.id
        );
    }
    // What migrate emitted belongs to the upgrade's entry, on every node.
    let index = up["log_index"]
        .as_u64()
        .expect("a deploy answers its index");
    let client = cairn_host::http_client::new_client();
    for n in cluster.running() {
        let token = crate::harness::token_for(n.addr());
        let start = Start::FromIndex(index);
        let mut stream =
            EventStream::connect(&client, n.addr(), token.as_deref(), "a", &start).await?;
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await??
            .expect("the stream holds the migrate's event");
        assert_eq!(
            (event.id.as_str(), event.topic.as_str()),
            (format!("{index}-0").as_str(), "migrated"),
            "node {}",
            n.id
        );
        let payload: Value = serde_json::from_str(&event.data)?;
        assert_eq!(payload, json!({"from": 1, "count": 5}), "node {}", n.id);
    }
    let out = leader
        .apply("a", &json!({"increment": {"by": 1}}))
        .await?
        .expect(200)?;
    assert_eq!(out.json(), json!({"value": 6, "migrated_from": 1}));

    // A failing migrate: rejected, recorded alike everywhere, v1 keeps its data.
    let refused = leader.deploy("b", &v2).await?.expect(400)?;
    assert_eq!(refused.code().as_deref(), Some("migrate-failed"));
    for n in cluster.running() {
        let info = n.get("/v1/plugins/b").await?.expect(200)?.json();
        assert_eq!(info["version"], 1, "node {}", n.id);
    }
    assert_eq!(
        leader.query("b", "", &get).await?.expect(200)?.json(),
        json!({"n": 5})
    );
    assert_eq!(apply_raw(leader, "b", "1").await?, json!({"n": 6}));
    cluster.converge().await?;
    cluster.stop_all().await
}
