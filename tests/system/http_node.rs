//! What every kind of test node shares: HTTP access, and the cluster-wide waits
//! built on it (agreed leader, voters, convergence, reading back kv data).
//!
//! In-process nodes, `cairn` processes and processes in network namespaces all
//! implement [`HttpNode`], so each wait is written once.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use cairn_host::http_client::HttpClient;
use http::Method;
use serde_json::{Value, json};

use crate::harness::{Resp, eventually, send_to};

/// A node the tests reach over HTTP.
pub(crate) trait HttpNode {
    /// The node's id.
    fn node_id(&self) -> u64;
    /// `host:port` it serves on.
    fn http_addr(&self) -> String;
    /// The pooled client used to reach it.
    fn http_client(&self) -> &HttpClient;

    /// Sends one request without extra headers.
    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<Resp> {
        send_to(
            self.http_client(),
            &self.http_addr(),
            method,
            path,
            &[],
            body,
        )
        .await
    }

    /// `GET /v1/cluster` as JSON.
    async fn cluster_json(&self) -> Result<Value> {
        Ok(self
            .send(Method::GET, "/v1/cluster", Bytes::new())
            .await?
            .expect(200)?
            .json())
    }

    /// `GET /v1/state-hash` as `(applied_index, hash)`.
    async fn http_state_hash(&self) -> Result<(u64, String)> {
        let v = self
            .send(Method::GET, "/v1/state-hash", Bytes::new())
            .await?
            .expect(200)?
            .json();
        let idx = v["applied_index"]
            .as_u64()
            .ok_or_else(|| anyhow!("no applied_index in {v}"))?;
        let hash = v["hash"]
            .as_str()
            .ok_or_else(|| anyhow!("no hash in {v}"))?;
        Ok((idx, hash.to_string()))
    }

    /// Every kv entry whose key starts with `prefix`, read linearizably and
    /// paged with the kv plugin's `range`.
    async fn kv_scan(&self, prefix: &str) -> Result<BTreeMap<String, Value>> {
        const PAGE: usize = 500;
        let mut out = BTreeMap::new();
        let mut start = prefix.to_string();
        // Bounded: far more pages than any scenario writes.
        for _ in 0..1000 {
            let q = json!({"range": {"start": start, "limit": PAGE}});
            let path = "/v1/plugins/kv/query?consistency=linearizable";
            let r = self
                .send(Method::POST, path, serde_json::to_vec(&q)?.into())
                .await?
                .expect(200)?
                .json();
            let entries = r["entries"]
                .as_array()
                .ok_or_else(|| anyhow!("no entries in {r}"))?;
            let mut new = 0;
            for e in entries {
                let k = e["key"].as_str().ok_or_else(|| anyhow!("bad entry {e}"))?;
                if !k.starts_with(prefix) {
                    return Ok(out);
                }
                if out.insert(k.to_string(), e["value"].clone()).is_none() {
                    new += 1;
                }
                start = k.to_string();
            }
            // `start` is inclusive: a page holding only the key it started from is the end.
            if entries.len() < PAGE || new == 0 {
                return Ok(out);
            }
        }
        bail!("kv scan did not finish in 1000 pages")
    }
}

/// One look: the leader every node in `nodes` names, if they agree, it is one
/// of them, and it reports itself leader.
pub(crate) async fn agreed_leader<N: HttpNode>(nodes: &[&N]) -> Result<Option<u64>> {
    let mut leader = None;
    for n in nodes {
        let Some(l) = n.cluster_json().await?["leader_id"].as_u64() else {
            return Ok(None);
        };
        if leader.is_some_and(|x| x != l) {
            return Ok(None);
        }
        leader = Some(l);
    }
    let Some(ln) = leader.and_then(|l| nodes.iter().find(|n| n.node_id() == l)) else {
        return Ok(None);
    };
    Ok((ln.cluster_json().await?["state"] == "leader").then_some(ln.node_id()))
}

/// Waits for [`agreed_leader`].
pub(crate) async fn wait_agreed_leader<N: HttpNode>(
    nodes: &[&N],
    timeout: Duration,
) -> Result<u64> {
    let ids: Vec<u64> = nodes.iter().map(|n| n.node_id()).collect();
    eventually(
        timeout,
        &format!("a leader agreed by nodes {ids:?}"),
        || agreed_leader(nodes),
    )
    .await
}

/// Waits until every node in `nodes` lists exactly the voters `ids`.
pub(crate) async fn wait_voter_ids<N: HttpNode>(
    nodes: &[&N],
    ids: &[u64],
    timeout: Duration,
) -> Result<()> {
    let mut want = ids.to_vec();
    want.sort_unstable();
    eventually(
        timeout,
        &format!("voters {want:?} on every node"),
        || async {
            for n in nodes {
                let c = n.cluster_json().await?;
                let mut voters: Vec<u64> = c["members"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter(|m| m["role"] == "voter")
                            .filter_map(|m| m["id"].as_u64())
                            .collect()
                    })
                    .unwrap_or_default();
                voters.sort_unstable();
                if voters != want {
                    return Err(anyhow!("node {} lists voters {voters:?}", n.node_id()));
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

/// Waits until every node reports the same applied index and state hash over HTTP.
pub(crate) async fn converge_http<N: HttpNode>(
    nodes: &[&N],
    timeout: Duration,
) -> Result<(u64, String)> {
    eventually(
        timeout,
        "identical applied index and state hash",
        || async {
            let mut hashes = Vec::new();
            for n in nodes {
                hashes.push((n.node_id(), n.http_state_hash().await?));
            }
            let first = hashes
                .first()
                .map(|h| h.1.clone())
                .ok_or_else(|| anyhow!("no node"))?;
            if hashes.iter().all(|h| h.1 == first) {
                Ok(Some(first))
            } else {
                Err(anyhow!("states differ: {hashes:?}"))
            }
        },
    )
    .await
}
