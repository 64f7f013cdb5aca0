//! Leader stopped under a stream of writes: a new leader is elected, writes resume, every acknowledged put survives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::harness::{Cluster, WAIT, eventually, send_to};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_stop() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let old_leader = cluster.wait_leader().await?;
    let survivors: Vec<String> = cluster
        .running()
        .filter(|n| n.id != old_leader)
        .map(|n| n.addr().to_string())
        .collect();
    cluster
        .node(old_leader)
        .deploy("kv", cairn_host::plugins::example("kv").unwrap())
        .await?
        .expect(201)?;

    // A writer streaming puts through the two surviving nodes (forwarded to whoever leads),
    // recording each put that was acknowledged with 200.
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, survivors) = (acked.clone(), stop.clone(), survivors.clone());
        tokio::spawn(async move {
            let client = cairn_host::http_client::new_client();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let addr = &survivors[(i % 2) as usize];
                let body =
                    serde_json::to_vec(&json!({"put": {"key": format!("k{i}"), "value": i}}))
                        .unwrap();
                match send_to(
                    &client,
                    addr,
                    Method::POST,
                    "/v1/plugins/kv/apply",
                    &[],
                    body.into(),
                )
                .await
                {
                    Ok(r) if r.status == 200 => acked.lock().unwrap().push(i),
                    // Failures during the election are expected; an unacknowledged put may or may not land.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                i += 1;
            }
        })
    };
    let acked_count = || acked.lock().unwrap().len();

    eventually(WAIT, "20 acknowledged writes before the stop", || async {
        Ok((acked_count() >= 20).then_some(()))
    })
    .await?;
    cluster.node_mut(old_leader).stop().await?;
    let at_stop = acked_count();

    let new_leader = cluster.wait_leader().await?;
    assert_ne!(new_leader, old_leader);
    eventually(
        WAIT,
        "20 more acknowledged writes after the stop",
        || async { Ok((acked_count() >= at_stop + 20).then_some(())) },
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    writer.await?;

    let acked = acked.lock().unwrap().clone();
    for n in cluster.running() {
        for &i in &acked {
            let q = n
                .query(
                    "kv",
                    "consistency=linearizable",
                    &json!({"get": {"key": format!("k{i}")}}),
                )
                .await?
                .expect(200)?;
            assert_eq!(
                q.json(),
                json!({"value": i}),
                "acknowledged put k{i} missing on node {}",
                n.id
            );
        }
    }
    cluster.converge().await?;
    cluster.stop_all().await
}
