//! Requests that arrive while the cluster has no reachable leader wait for the
//! next one (within their deadline) instead of failing: writes with and without
//! an Idempotency-Key and a linearizable read, sent to the followers right after
//! the leader stops, are all answered.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_sent_during_an_election_wait_for_the_new_leader() -> Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let old = cluster.wait_leader().await?;
    let deployed = cluster
        .node(old)
        .deploy("counter", cairn_host::plugins::example("counter").unwrap())
        .await?
        .expect(201)?;
    let at = deployed.header_u64("cairn-log-index").expect("log index");
    let survivors: Vec<u64> = cluster
        .running()
        .map(|n| n.id)
        .filter(|id| *id != old)
        .collect();
    for id in &survivors {
        cluster.node(*id).wait_applied(at).await?;
    }

    // The followers still name the stopped leader: their forwards cannot
    // connect, then there is no leader at all until the election ends.
    cluster.node_mut(old).stop().await?;
    let started = Instant::now();
    let (a, b) = (cluster.node(survivors[0]), cluster.node(survivors[1]));
    let (one, two, get) = (
        json!({"increment": {"by": 1}}),
        json!({"increment": {"by": 2}}),
        json!({"get": {}}),
    );
    let (plain, keyed, read) = tokio::join!(
        a.apply("counter", &one),
        b.apply_with_key("counter", &two, "during-election"),
        b.query("counter", "consistency=linearizable", &get),
    );
    plain?.expect(200)?;
    keyed?.expect(200)?;
    read?.expect(200)?;
    let waited = started.elapsed();

    let new = cluster.wait_leader().await?;
    assert_ne!(new, old);
    let total = cluster
        .node(survivors[0])
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(total.json(), json!({"value": 3}));
    eprintln!(
        "election_wait: leader {old} stopped, {new} took over; requests answered after {waited:?}"
    );
    cluster.converge().await?;
    cluster.stop_all().await
}
