//! `POST /v1/cluster/members` and `DELETE /v1/cluster/members/{id}` with junk:
//! refused with a 400 before any membership change is proposed.

use std::time::Duration;

use http::Method;

use crate::harness::{Cluster, Node};

/// The `members` array of `GET /v1/cluster`.
async fn members(node: &Node) -> anyhow::Result<serde_json::Value> {
    Ok(node.cluster().await?["members"].clone())
}

/// Before, a member with a malformed address or id 0 was added as a learner
/// (forever part of the membership, its address unusable) and the request then
/// waited the whole install-snapshot timeout (10 minutes by default) for it to
/// catch up before answering 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_malformed_id_or_address_is_refused() -> anyhow::Result<()> {
    // Short, so that the old behaviour fails this test quickly instead of hanging it.
    let mut cluster = Cluster::start_with(1, &|c| c.install_snapshot_timeout_ms = 2000).await?;
    let node = &cluster.nodes[0];
    let before = members(node).await?;
    let cases = [
        (r#"{"id":0,"addr":"127.0.0.1:7999"}"#, "bad-member-id"),
        (r#"{"id":7,"addr":"not an address"}"#, "bad-member-addr"),
        (r#"{"id":7,"addr":"!!"}"#, "bad-member-addr"),
        (r#"{"id":7,"addr":""}"#, "bad-member-addr"),
        (r#"{"id":7,"addr":"127.0.0.1"}"#, "bad-member-addr"),
        (r#"{"id":7,"addr":"127.0.0.1:99999"}"#, "bad-member-addr"),
        (
            r#"{"id":7,"addr":"127.0.0.1:7999/raft"}"#,
            "bad-member-addr",
        ),
        (r#"{"id":7,"addr":"127.0.0.1:7999?x=1"}"#, "bad-member-addr"),
        (
            r#"{"id":7,"addr":"https://127.0.0.1:7999"}"#,
            "bad-member-addr",
        ),
        (
            r#"{"id":7,"addr":"user@127.0.0.1:7999"}"#,
            "bad-member-addr",
        ),
    ];
    for (body, code) in cases {
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            node.req(Method::POST, "/v1/cluster/members", &[], body),
        )
        .await??;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some(code)),
            "{body}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(members(node).await?, before, "after {body}");
    }
    cluster.stop_all().await
}
