//! Separate processes: a careful client sends keyed writes round-robin over three nodes
//! while the leader is SIGKILLed. The nodes wait out the election and resend forwards
//! that never arrived (or cannot apply twice), so nearly every write is acknowledged and
//! every acknowledged write is there afterwards.

use std::collections::BTreeMap;

use anyhow::Result;
use cairn_host::http_client::{self, ClientError};
use http::Method;
use serde_json::json;

use crate::harness::send_to;
use crate::http_node::HttpNode;
use crate::process::{ProcCluster, check_acked};

/// Sequential writes, each with its own key and Idempotency-Key.
const WRITES: usize = 400;
/// The leader is killed just before this write.
const KILL_AT: usize = 150;
/// At least this many must be acknowledged.
const MIN_ACKED: usize = 390;

/// True when the request never reached the node (so the client may try another).
fn never_delivered(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ClientError>()
        .is_some_and(ClientError::never_delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_round_robin_ride_through_kill9_of_the_leader() -> Result<()> {
    let mut cluster = ProcCluster::start(3, &[]).await?;
    let leader = cluster.wait_leader().await?;
    cluster.deploy_kv(leader).await?;
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();

    let mut acked = BTreeMap::new();
    let mut failed = Vec::new();
    let mut skipped_unreachable = 0;
    for i in 0..WRITES {
        if i == KILL_AT {
            cluster.node_mut(leader).kill();
        }
        let key = format!("f{i:04}");
        let body = serde_json::to_vec(&json!({"put": {"key": key, "value": i}}))?;
        let mut outcome = None;
        for attempt in 0..addrs.len() {
            let addr = &addrs[(i + attempt) % addrs.len()];
            // A fresh connection per attempt: "could not connect" then
            // unambiguously means the request was never sent.
            let client = http_client::new_client();
            let sent = send_to(
                &client,
                addr,
                Method::POST,
                "/v1/plugins/kv/apply",
                &[("idempotency-key", &key)],
                body.clone().into(),
            )
            .await;
            match sent {
                Err(e) if never_delivered(&e) => skipped_unreachable += 1,
                other => {
                    outcome = Some(other);
                    break;
                }
            }
        }
        match outcome {
            Some(Ok(r)) if r.status == 200 => {
                acked.insert(key, i as u64);
            }
            Some(Ok(r)) => failed.push(format!(
                "{key}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Some(Err(e)) => failed.push(format!("{key}: {e:#}")),
            None => failed.push(format!("{key}: no node reachable")),
        }
    }
    eprintln!(
        "failover_writes: killed leader {leader} at write {KILL_AT}; {} of {WRITES} acknowledged, \
         {} failed, {skipped_unreachable} attempts skipped to the next node (could not connect); \
         failures: {failed:?}",
        acked.len(),
        failed.len()
    );
    assert!(
        acked.len() >= MIN_ACKED,
        "only {} of {WRITES} writes acknowledged: {failed:?}",
        acked.len()
    );

    let survivor = cluster.running().next().expect("a survivor").node_id();
    let found = cluster.node(survivor).kv_scan("f").await?;
    check_acked(&acked, &found)?;
    cluster.finish().await
}
