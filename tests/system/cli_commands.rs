//! The etcdctl-style CLI against a running node, through the real binary:
//! `apply --events`, `query --json` with the applied index and the server's
//! key order, and `plugins remove`.

use serde_json::json;

use crate::harness::Cluster;
use crate::process::cairn_bin;

/// Runs `cairn --url URL ARGS…` and returns its stdout (fails on a non-zero exit).
async fn cairn(url: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = std::process::Command::new(cairn_bin());
    cmd.arg("--url").arg(url).args(args);
    if let Some(token) = crate::harness::token_for(url) {
        cmd.env("CAIRN_TOKEN", token);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    anyhow::ensure!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_events_query_json_and_plugins_remove() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let node = cluster.node(1);
    let url = node.url();
    cairn(&url, &["deploy", "bank"]).await?;
    for account in ["alice", "bob"] {
        let open = json!({"open": {"account": account, "initial": 50}}).to_string();
        cairn(&url, &["apply", "bank", &open]).await?;
    }
    let transfer = json!({"transfer": {"from": "alice", "to": "bob", "amount": 20}}).to_string();
    let out = cairn(&url, &["--json", "apply", "bank", &transfer, "--events"]).await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        v["output"]["events"],
        json!([{"topic": "transfer", "payload": {"from": "alice", "to": "bob", "amount": 20}}]),
        "{out}"
    );
    let log_index = v["log_index"].as_u64().expect("log_index");

    // The bank's total answers `{"total", "accounts"}`: not alphabetical, so a
    // client that re-sorted keys would print them the other way round.
    let query = json!({"total": {}}).to_string();
    let out = cairn(&url, &["--json", "query", "bank", &query]).await?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert!(
        v["applied_index"].as_u64() >= Some(log_index),
        "no applied index in {out}"
    );
    assert!(
        out.trim()
            .ends_with(r#""output":{"total":100,"accounts":2}}"#),
        "{out}"
    );

    let out = cairn(&url, &["plugins", "remove", "bank"]).await?;
    assert!(out.starts_with("removed bank at log index"), "{out}");
    node.get("/v1/plugins/bank").await?.expect(404)?;
    cluster.stop_all().await
}
