//! `POST /v1/cluster/members` and `DELETE /v1/cluster/members/{id}` with junk:
//! refused with a 400 before any membership change is proposed.

use std::time::Duration;

use http::Method;

use crate::harness::{Cluster, Node};

/// The `members` array of `GET /v1/cluster`.
async fn members(node: &Node) -> anyhow::Result<serde_json::Value> {
    let mut members = node.cluster().await?["members"].clone();
    // Replication progress moves by itself; only who is a member counts here.
    for m in members.as_array_mut().into_iter().flatten() {
        if let Some(m) = m.as_object_mut() {
            for volatile in ["matched_index", "lag_entries", "last_ack_ms_ago"] {
                m.remove(volatile);
            }
        }
    }
    Ok(members)
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

/// Whether `body` might be a valid request to add a member (an id and an address
/// ending in a port): those are not malformed, so the property skips them.
fn could_be_valid_member(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let id_ok = v["id"].as_u64().is_some_and(|id| id > 0);
    let addr_ok = v["addr"].as_str().is_some_and(|a| {
        a.rsplit_once(':')
            .is_some_and(|(_, port)| port.trim_end_matches('/').parse::<u16>().is_ok())
    });
    id_ok && addr_ok
}

/// Random JSON, near-miss objects and random bytes to `POST /v1/cluster/members`;
/// junk ids to `DELETE /v1/cluster/members/{id}`: always a 400, membership and
/// state unchanged.
#[test]
fn junk_membership_requests_are_refused() {
    use proptest::prelude::*;

    use super::{Fixture, Probe, encode, json_value, run_cases};

    let fx = Fixture::start(&|c| c.install_snapshot_timeout_ms = 2000);
    let near_miss = (json_value(), json_value())
        .prop_map(|(id, addr)| serde_json::json!({"id": id, "addr": addr}));
    let junk_addr = (any::<u64>(), any::<String>())
        .prop_map(|(id, addr)| serde_json::json!({"id": id, "addr": addr}));
    let add_body = prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).expect("json")),
        near_miss.prop_map(|v| serde_json::to_vec(&v).expect("json")),
        junk_addr.prop_map(|v| serde_json::to_vec(&v).expect("json")),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
    .prop_map(|body| Probe::new(Method::POST, "/v1/cluster/members", body));
    let junk_id = prop_oneof![
        any::<String>().prop_map(|s| encode(&s, false)),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{20,30}",
        Just("1".to_string()),
        Just("0".to_string()),
    ]
    .prop_map(|id| {
        Probe::new(
            Method::DELETE,
            format!("/v1/cluster/members/{id}"),
            Vec::new(),
        )
    });
    run_cases(
        "membership junk",
        128,
        prop_oneof![add_body, junk_id],
        |probe| {
            prop_assume!(!could_be_valid_member(&probe.body));
            prop_assume!(probe.path != "/v1/cluster/members/");
            fx.check(&probe, |_, r| r.status == 400, |_, _| false)
        },
    );
}
