//! Idempotency-Key: the same key twice applies once and both responses are identical.

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_idempotency_key_applies_once() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let node = &cluster.nodes[0];
    node.deploy("counter", cairn_host::plugins::example("counter").unwrap())
        .await?
        .expect(201)?;

    let cmd = json!({"increment": {"by": 5}});
    let first = node
        .apply_with_key("counter", &cmd, "req-1")
        .await?
        .expect(200)?;
    let second = node
        .apply_with_key("counter", &cmd, "req-1")
        .await?
        .expect(200)?;
    assert_eq!(first.json(), json!({"value": 5}));
    assert_eq!(second.body, first.body);
    let idx = first
        .header_u64("cairn-log-index")
        .expect("cairn-log-index");
    assert_eq!(second.header_u64("cairn-log-index"), Some(idx));
    let q = node
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 5}), "the retry was applied again");

    // A different key is a different request and does apply.
    let third = node
        .apply_with_key("counter", &cmd, "req-2")
        .await?
        .expect(200)?;
    assert_eq!(third.json(), json!({"value": 10}));
    assert!(third.header_u64("cairn-log-index").unwrap() > idx);
    // Without a key, the same body applies every time.
    let r = node.apply("counter", &cmd).await?.expect(200)?;
    assert_eq!(r.json(), json!({"value": 15}));
    cluster.stop_all().await
}

/// `(status, body, cairn-log-index)` of a response.
fn seen(r: &crate::harness::Resp) -> (u16, bytes::Bytes, Option<u64>) {
    (r.status, r.body.clone(), r.header_u64("cairn-log-index"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_hold_across_nodes_and_refuse_another_body() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader = cluster.wait_leader().await?;
    let ids: Vec<u64> = cluster.running().map(|n| n.id).collect();
    let follower = cluster.node(*ids.iter().find(|id| **id != leader).unwrap());
    let (n1, n2, n3) = (
        cluster.node(ids[0]),
        cluster.node(ids[1]),
        cluster.node(ids[2]),
    );
    follower
        .deploy("counter", cairn_host::plugins::example("counter").unwrap())
        .await?
        .expect(201)?;
    let value = || async {
        let q = cluster
            .node(leader)
            .query("counter", "", &json!({"get": {}}))
            .await?
            .expect(200)?;
        anyhow::Ok(q.json()["value"].clone())
    };

    // Through a follower: a retry gets the same answer and index, applied once.
    let alice = json!({"increment": {"by": 5}});
    let first = follower
        .apply_with_key("counter", &alice, "k1")
        .await?
        .expect(200)?;
    let idx = first.header_u64("cairn-log-index").expect("index");
    let retry = follower
        .apply_with_key("counter", &alice, "k1")
        .await?
        .expect(200)?;
    assert_eq!(seen(&retry), seen(&first));
    assert_eq!(value().await?, json!(5));

    // Bob's different body under alice's key: 409 on the follower (which has
    // applied alice's record) and on the leader; alice's answer is not his.
    follower.wait_applied(idx).await?;
    let bob = json!({"increment": {"by": 100}});
    for node in [follower, cluster.node(leader)] {
        let r = node.apply_with_key("counter", &bob, "k1").await?;
        assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.code().as_deref(), Some("idempotency-key-reused"));
        assert_ne!(r.body, first.body);
    }
    assert_eq!(value().await?, json!(5));

    // The same key and body sent to all three nodes at once: one apply, one
    // answer and index for all.
    let cmd = json!({"increment": {"by": 1}});
    let (a, b, c) = tokio::join!(
        n1.apply_with_key("counter", &cmd, "together"),
        n2.apply_with_key("counter", &cmd, "together"),
        n3.apply_with_key("counter", &cmd, "together"),
    );
    let (a, b, c) = (a?.expect(200)?, b?.expect(200)?, c?.expect(200)?);
    assert_eq!(a.json(), json!({"value": 6}));
    assert_eq!(seen(&b), seen(&a));
    assert_eq!(seen(&c), seen(&a));
    assert_eq!(value().await?, json!(6));

    // Two different bodies under one fresh key at once: exactly one applies,
    // the other is refused, whichever path (leader's look or the state
    // machine) caught it.
    let small = json!({"increment": {"by": 10}});
    let big = json!({"increment": {"by": 1000}});
    let (x, y) = tokio::join!(
        n1.apply_with_key("counter", &small, "race"),
        n2.apply_with_key("counter", &big, "race"),
    );
    let (x, y) = (x?, y?);
    let mut statuses = [x.status, y.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{x:?} {y:?}");
    let refused = if x.status == 409 { &x } else { &y };
    assert_eq!(refused.code().as_deref(), Some("idempotency-key-reused"));
    let won_by = if x.status == 200 { 10 } else { 1000 };
    assert_eq!(value().await?, json!(6 + won_by));

    cluster.converge().await?;
    cluster.stop_all().await
}
