//! Backup and restore: a backup taken from a busy 3-node cluster (writes
//! flowing) restores into a new single-node cluster whose state hash equals the
//! one the backup recorded; another node joins it and converges; writes go on
//! from there. A flipped byte or a truncated file is refused and leaves the
//! data dir uncreated; so is a data dir that already holds data. The same
//! through the real binary: `cairn backup FILE` and `cairn serve --restore`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::harness::{Cluster, Node, Resp, WAIT, eventually, free_port, send_to, test_config};
use crate::process::cairn_bin;

/// Applies kv puts through `addrs` in a loop until `stop`; counts acknowledged ones.
fn spawn_writers(
    addrs: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    addrs
        .into_iter()
        .enumerate()
        .map(|(w, addr)| {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let client = cairn_host::http_client::new_client();
                // Bounded: a writer stops after this many puts even if never told to.
                for i in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let body = json!({"put": {"key": format!("w{w}-{i}"), "value": i}});
                    let r = send_to(
                        &client,
                        &addr,
                        Method::POST,
                        "/v1/plugins/kv/apply",
                        &[],
                        Bytes::from(body.to_string()),
                    )
                    .await;
                    if matches!(r, Ok(Resp { status: 200, .. })) {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

/// Waits until `n` more puts than `from` were acknowledged.
async fn wait_acked(acked: &AtomicU64, from: u64, n: u64) -> anyhow::Result<()> {
    eventually(WAIT, &format!("{n} more acknowledged puts"), || async {
        Ok((acked.load(Ordering::Relaxed) >= from + n).then_some(()))
    })
    .await
}

fn header<'a>(r: &'a Resp, name: &str) -> anyhow::Result<&'a str> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("no {name} header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_of_busy_cluster_restores_with_equal_hash_and_others_join() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader = cluster.wait_leader().await?;
    let wasm = cairn_host::plugins::example("kv").expect("kv embedded");
    cluster.node(leader).deploy("kv", wasm).await?.expect(201)?;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let addrs = cluster.running().map(|n| n.addr().to_string()).collect();
    let writers = spawn_writers(addrs, stop.clone(), acked.clone());
    wait_acked(&acked, 0, 200).await?;

    // The backup is taken from a follower while writes keep flowing.
    let follower = cluster
        .running()
        .map(|n| n.id)
        .find(|id| *id != leader)
        .expect("a follower");
    // The follower has applied at least the first 200 writes before the backup.
    let (written, _) = cluster.node(leader).state_hash();
    cluster.node(follower).wait_applied(written).await?;
    let before = acked.load(Ordering::Relaxed);
    let backup = cluster
        .node(follower)
        .get("/v1/backup")
        .await?
        .expect(200)?;
    wait_acked(&acked, before, 50).await?;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let index: u64 = header(&backup, "cairn-applied-index")?.parse()?;
    let hash = header(&backup, "cairn-state-hash")?.to_string();
    ensure!(
        index >= written,
        "backup at index {index}, expected past the first writes (index {written})"
    );
    // Writes went on after the backup, so the cluster has moved past it.
    let (cluster_index, cluster_hash) = cluster.converge().await?;
    ensure!(
        cluster_index > index && cluster_hash != hash,
        "cluster at {cluster_index} {cluster_hash}, backup at {index} {hash}: writes did not continue"
    );
    cluster.stop_all().await?;

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("cairn.backup");
    std::fs::write(&file, &backup.body)?;

    // Corrupt copies are refused and create nothing.
    let mut flipped = backup.body.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let truncated = &backup.body[..backup.body.len() - 100];
    for (name, bytes) in [("flipped", &flipped[..]), ("truncated", truncated)] {
        let bad = dir.path().join(format!("{name}.backup"));
        std::fs::write(&bad, bytes)?;
        let data_dir = dir.path().join(format!("{name}-data"));
        let mut config = test_config(1, free_port(), data_dir.clone());
        config.restore_from = Some(bad);
        let err = match Node::start(config).await {
            Ok(_) => bail!("a {name} backup was accepted"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            err.contains("not a valid backup") && err.contains("checksum"),
            "{name}: unclear error: {err}"
        );
        ensure!(
            !data_dir.exists(),
            "{name}: the data dir was created though the backup was refused"
        );
    }

    // A data dir that already holds data is refused and left as it was.
    let used = dir.path().join("used-data");
    std::fs::create_dir_all(&used)?;
    std::fs::write(used.join("keep"), b"x")?;
    let mut config = test_config(1, free_port(), used.clone());
    config.restore_from = Some(file.clone());
    let err = match Node::start(config).await {
        Ok(_) => bail!("restore into a used data dir was accepted"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(err.contains("already holds data"), "unclear error: {err}");
    ensure!(
        std::fs::read_dir(&used)?.count() == 1,
        "the used data dir changed"
    );

    // The good backup seeds a new one-node cluster with the backup's hash.
    let mut config = test_config(7, free_port(), dir.path().join("restored"));
    config.restore_from = Some(file.clone());
    let restored = Node::start(config).await?;
    // The token table came with the backup: the old cluster's admin token works.
    let admin = crate::harness::token_for(cluster.node(leader).addr()).expect("admin token");
    crate::harness::register_token(restored.addr(), &admin);
    let c = eventually(WAIT, "the restored node leads", || async {
        let c = restored.cluster().await?;
        Ok((c["leader_id"] == 7).then_some(c))
    })
    .await?;
    ensure!(c["members"].as_array().map(Vec::len) == Some(1), "{c}");
    let got = restored.get("/v1/state-hash").await?.expect(200)?.json();
    ensure!(
        got["hash"] == hash.as_str(),
        "restored hash {got}, backup {hash}"
    );
    ensure!(
        got["applied_index"].as_u64() >= Some(index),
        "restored applied index {got} behind the backup's {index}"
    );
    // The node's own first entry (its election) changes the index, not the hash.
    let q = restored
        .query(
            "kv",
            "consistency=linearizable",
            &json!({"get": {"key": "w0-0"}}),
        )
        .await?
        .expect(200)?;
    ensure!(
        q.json() == json!({"value": 0}),
        "first put missing: {}",
        q.json()
    );

    // Another node joins the restored cluster, and both converge after more writes.
    let mut restored_cluster = Cluster {
        nodes: vec![restored],
        dir,
    };
    let mut config = test_config(8, free_port(), restored_cluster.dir.path().join("joiner"));
    config.join_token = Some(cairn_host::config::Secret::new(
        restored_cluster.nodes[0].join_token().await?,
    ));
    let joiner = Node::start(config).await?;
    crate::harness::inherit_token(restored_cluster.nodes[0].addr(), joiner.addr());
    restored_cluster.nodes.push(joiner);
    restored_cluster.wait_voters(2).await?;
    restored_cluster
        .node(8)
        .apply("kv", &json!({"put": {"key": "after", "value": 1}}))
        .await?
        .expect(200)?;
    let (after_index, after_hash) = restored_cluster.converge().await?;
    ensure!(
        after_index > index && after_hash != hash,
        "no write after the restore: {after_index} {after_hash}"
    );
    restored_cluster.stop_all().await
}

/// The binary: `cairn backup FILE` writes a file whose hash it prints;
/// `cairn serve --restore` with a corrupt file exits non-zero and creates
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_backup_and_serve_restore() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let node = cluster.node(1);
    let wasm = cairn_host::plugins::example("counter").expect("counter embedded");
    node.deploy("counter", wasm).await?.expect(201)?;
    node.apply("counter", &json!({"increment": {"by": 5}}))
        .await?
        .expect(200)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("b.cairn");
    let mut cmd = std::process::Command::new(cairn_bin());
    cmd.args(["--url", &node.url(), "--json", "backup"])
        .arg(&file);
    if let Some(token) = crate::harness::token_for(&node.url()) {
        cmd.env("CAIRN_TOKEN", token);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    ensure!(
        out.status.success(),
        "cairn backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let (_, hash) = node.state_hash();
    ensure!(
        printed["state_hash"] == hash.as_str(),
        "printed {printed}, node {hash}"
    );
    ensure!(
        !dir.path().join("b.cairn.tmp").exists(),
        "temp file left behind"
    );
    cluster.stop_all().await?;

    let mut bytes = std::fs::read(&file)?;
    let bad = dir.path().join("bad.cairn");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bad, &bytes)?;
    let data_dir = dir.path().join("bad-data");
    let mut cmd = std::process::Command::new(cairn_bin());
    cmd.args(["serve", "--id", "1", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--restore")
        .arg(&bad);
    // It must refuse before serving; if it served, it would never exit.
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .context("cairn serve --restore with a corrupt file did not exit")???;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "a truncated backup was served");
    ensure!(
        stderr.contains("cannot restore from") && stderr.contains("not a valid backup"),
        "unclear error: {stderr}"
    );
    ensure!(!data_dir.exists(), "data dir created for a refused backup");
    Ok(())
}
