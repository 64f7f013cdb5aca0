//! Lease reads: the leader answers linearizable reads from its lease while a
//! quorum keeps acknowledging it, and an old leader woken from SIGSTOP does
//! not answer from a lease that expired while it slept.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Cluster, WAIT, token_for};
use crate::http_node::{HttpNode, wait_agreed_leader};
use crate::process::{ProcCluster, ProcNode};

/// Reads queued at the paused old leader: several, so a broken lease check
/// cannot slip through on timing alone.
const QUEUED_READS: usize = 8;
/// Longest a queued read may take once its node wakes (it may have to find
/// the new leader and forward).
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// `cairn_linearizable_reads_total{path=…}` of a node.
async fn reads_by(node: &impl HttpNode, path: &str) -> Result<u64> {
    let resp = node
        .send(Method::GET, "/metrics", Bytes::new())
        .await?
        .expect(200)?;
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    let prefix = format!("cairn_linearizable_reads_total{{path=\"{path}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {prefix} in metrics"))
}

async fn put(node: &ProcNode, key: &str, value: u64) -> Result<()> {
    let body = json!({"put": {"key": key, "value": value}}).to_string();
    node.req(Method::POST, "/v1/plugins/kv/apply", body)
        .await?
        .expect(200)?;
    Ok(())
}

/// A linearizable `get` written to `addr`'s socket in full before the
/// function returns, so it is queued even if the process is stopped. The
/// returned task reads the answer: (status, body).
async fn queue_read(
    addr: &str,
    key: &str,
) -> Result<tokio::task::JoinHandle<Result<(u16, Value)>>> {
    let body = json!({"get": {"key": key}}).to_string();
    let token = token_for(addr).context("admin token of the node")?;
    let request = format!(
        "POST /v1/plugins/kv/query?consistency=linearizable HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    Ok(tokio::spawn(async move {
        let mut raw = Vec::new();
        tokio::time::timeout(READ_TIMEOUT, stream.read_to_end(&mut raw))
            .await
            .context("no answer from the woken node")??;
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status line in {text:?}"))?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        // The answer may be chunked; the JSON object is the first `{…}` span.
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) if a < b => serde_json::from_str(&body[a..=b])?,
            _ => Value::Null,
        };
        Ok((status, json))
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn woken_old_leader_does_not_read_from_an_expired_lease() -> Result<()> {
    let cluster = ProcCluster::start(3, &[]).await?;
    let old = cluster.wait_leader().await?;
    cluster.deploy_kv(old).await?;
    put(cluster.node(old), "k", 1).await?;

    // While the quorum acknowledges it, the leader reads from its lease.
    let before = reads_by(cluster.node(old), "lease").await?;
    let resp = cluster
        .node(old)
        .req(
            Method::POST,
            "/v1/plugins/kv/query?consistency=linearizable",
            json!({"get": {"key": "k"}}).to_string(),
        )
        .await?
        .expect(200)?;
    ensure!(resp.json()["value"] == json!(1), "read before the pause");
    ensure!(
        reads_by(cluster.node(old), "lease").await? > before,
        "the leader did not use its lease"
    );

    cluster.node(old).pause()?;
    let others: Vec<&ProcNode> = cluster.nodes.iter().filter(|n| n.id != old).collect();
    let new = wait_agreed_leader(&others, WAIT).await?;
    ensure!(new != old, "the paused node cannot lead the others");
    // Acknowledged before any of the reads below is sent: they must see it.
    put(cluster.node(new), "k", 2).await?;

    let old_addr = cluster.node(old).addr();
    let mut reads = Vec::new();
    for _ in 0..QUEUED_READS {
        reads.push(queue_read(&old_addr, "k").await?);
    }
    cluster.node(old).resume()?;

    let mut answered = 0;
    for read in reads {
        let (status, body) = read.await??;
        if status == 200 {
            ensure!(
                body["value"] == json!(2),
                "the woken old leader answered {body} after 2 was acknowledged"
            );
            answered += 1;
        }
    }
    eprintln!(
        "lease_read: {answered}/{QUEUED_READS} queued reads answered (all with the new value)"
    );
    let (applied, hash) = cluster.converge().await?;
    eprintln!("lease_read: converged at {applied} {hash}");
    cluster.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_lease_reads_every_read_asks_a_quorum() -> Result<()> {
    let mut cluster = Cluster::start_with(3, &|c| c.lease_reads = false).await?;
    let leader = cluster.wait_leader().await?;
    let kv = cairn_host::plugins::example("kv").expect("kv embedded");
    cluster.node(leader).deploy("kv", kv).await?.expect(201)?;
    let node = cluster.node(leader);
    for _ in 0..3 {
        node.req(
            Method::POST,
            "/v1/plugins/kv/query?consistency=linearizable",
            &[],
            json!({"get": {"key": "k"}}).to_string(),
        )
        .await?
        .expect(200)?;
    }
    ensure!(
        reads_by(node, "lease").await? == 0,
        "a lease read with leases off"
    );
    ensure!(
        reads_by(node, "read_index").await? >= 3,
        "reads not confirmed by a quorum"
    );
    cluster.stop_all().await
}
