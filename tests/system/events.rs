//! Events emitted by a successful apply reach the caller with `?events=true`.

use http::Method;
use serde_json::json;

use crate::harness::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_events_are_returned_with_the_output() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let node = cluster.node(1);
    node.deploy(
        "bank",
        cairn_host::plugins::example("bank").expect("bank is built in"),
    )
    .await?
    .expect(201)?;
    for (account, initial) in [("alice", 100), ("bob", 0)] {
        node.apply(
            "bank",
            &json!({"open": {"account": account, "initial": initial}}),
        )
        .await?
        .expect(200)?;
    }
    let transfer = json!({"transfer": {"from": "alice", "to": "bob", "amount": 30}});
    let resp = node
        .req(
            Method::POST,
            "/v1/plugins/bank/apply?events=true",
            &[],
            transfer.to_string(),
        )
        .await?
        .expect(200)?;
    assert_eq!(
        resp.json(),
        json!({
            "output": {"from_balance": 70, "to_balance": 30},
            "events": [{"topic": "transfer", "payload": {"from": "alice", "to": "bob", "amount": 30}}]
        })
    );
    // Without the flag the body is the plain output.
    let resp = node.apply("bank", &transfer).await?.expect(200)?;
    assert_eq!(resp.json(), json!({"from_balance": 40, "to_balance": 60}));
    cluster.stop_all().await
}
