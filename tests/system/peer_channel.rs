//! The peer channel of a real 3-node cluster (in-process): forged `append`,
//! `vote` and `snapshot` requests to a node's peer port — without
//! credentials, signed with another cluster's secret, or with a body other
//! than the signed one — and replays of valid signed requests are refused
//! with `401` and counted, and no node's applied index or state hash moves.
//! The client port does not serve `/raft/…` at all.

use anyhow::{Result, ensure};
use bytes::Bytes;
use cairn_host::raft::codec;
use cairn_host::raft::network::SnapshotChunkHeader;
use cairn_host::raft::peer_auth::{ClusterSecret, MacKey, now_ms, sign_request};
use cairn_host::raft::types::TypeConfig;
use cairn_host::state::Command;
use http::Method;
use openraft::Vote;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde_json::json;

use crate::harness::{Cluster, Node, Resp, send_to};

/// Sends `body` to `path` on `node`'s peer port, signed with `key` if given.
async fn to_peer_port(
    node: &Node,
    path: &str,
    key: Option<&MacKey>,
    body: &[u8],
    signed_body: &[u8],
) -> Result<Resp> {
    let signed = key.map(|k| sign_request(k, "POST", path, "9", signed_body, now_ms()));
    let headers: Vec<(&str, String)> = match signed {
        Some(s) => s?.headers,
        None => Vec::new(),
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = cairn_host::http_client::new_client();
    send_to(
        &client,
        node.peer_addr(),
        Method::POST,
        path,
        &headers,
        Bytes::copy_from_slice(body),
    )
    .await
}

/// The three forged RPCs: a term far ahead and a log that would wipe the kv plugin.
fn forged(term: u64) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let leader = openraft::impls::leader_id_adv::LeaderId { term, node_id: 9 };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, 9),
        prev_log_id: None,
        entries: vec![openraft::Entry {
            log_id: openraft::LogId::new(leader, 1),
            payload: openraft::EntryPayload::Normal(Command::Remove { name: "kv".into() }),
        }],
        leader_commit: None,
    };
    let vote = VoteRequest::<TypeConfig> {
        vote: Vote::new(term, 9),
        last_log_id: None,
        leadership_transfer: false,
    };
    let chunk = SnapshotChunkHeader {
        vote: Vote::new_committed(term, 9),
        transfer_id: 1,
        offset: 0,
        done: true,
        meta: None,
    };
    Ok(vec![
        ("/raft/append", codec::encode(&append)?),
        ("/raft/vote", codec::encode(&vote)?),
        (
            "/raft/snapshot",
            codec::encode_with_tail(&chunk, b"not a snapshot")?,
        ),
    ])
}

/// Valid requests a node accepts without effect: a heartbeat carrying the
/// leader's own vote and the node's log end, a vote and a snapshot chunk
/// from term 0 (refused by Raft, but authentic).
fn harmless(node: &Node) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let m = node
        .handle()
        .service
        .raft()
        .metrics()
        .borrow_watched()
        .clone();
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: m.vote,
        prev_log_id: m.last_applied,
        entries: vec![],
        leader_commit: m.last_applied,
    };
    let vote = VoteRequest::<TypeConfig> {
        vote: Vote::new(0, 9),
        last_log_id: None,
        leadership_transfer: false,
    };
    let chunk = SnapshotChunkHeader {
        vote: Vote::new_committed(0, 9),
        transfer_id: 2,
        offset: 0,
        done: false,
        meta: None,
    };
    Ok(vec![
        ("/raft/append", codec::encode(&heartbeat)?),
        ("/raft/vote", codec::encode(&vote)?),
        ("/raft/snapshot", codec::encode_with_tail(&chunk, b"")?),
    ])
}

fn footprints(cluster: &Cluster) -> Vec<(u64, String)> {
    cluster.nodes.iter().map(|n| n.state_hash()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_replayed_peer_requests_are_refused_and_change_nothing() -> Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let leader_id = cluster.wait_leader().await?;
    let leader = cluster.node(leader_id);
    let kv = cairn_host::plugins::example("kv").expect("kv example");
    leader.deploy("kv", kv).await?.expect(201)?;
    for i in 0..5 {
        leader
            .apply("kv", &json!({"put": {"key": format!("k{i}"), "value": i}}))
            .await?
            .expect(200)?;
    }
    cluster.converge().await?;
    let before = footprints(&cluster);
    let term = leader.cluster().await?["term"].as_u64().unwrap_or(1);
    let follower_id = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader_id)
        .map(|n| n.id);
    let follower = cluster.node(follower_id.expect("a follower"));
    let stranger = ClusterSecret::generate()?.peer_key();
    // What an insider would have; here only to make authentic requests to replay.
    let secret = ClusterSecret::load(&follower.config.data_dir)?.expect("a stored secret");
    let key = secret.peer_key();

    for target in [follower, leader] {
        for (path, body) in forged(term + 10)? {
            // No credentials; another cluster's secret; the right MAC over another body.
            let tampered = [body.as_slice(), b"x"].concat();
            for (key, sent) in [
                (None, &body),
                (Some(&stranger), &body),
                (Some(&key), &tampered),
            ] {
                let r = to_peer_port(target, path, key, sent, &body).await?;
                ensure!(
                    r.status == 401 && r.code().as_deref() == Some("unauthenticated"),
                    "{path} to node {}: {} {:?}",
                    target.id,
                    r.status,
                    r.code()
                );
            }
        }
    }
    // A captured authentic request is accepted once; played again it is refused.
    for (path, body) in harmless(follower)? {
        let signed = sign_request(&key, "POST", path, "9", &body, now_ms())?;
        let headers: Vec<(&str, &str)> = signed
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let client = cairn_host::http_client::new_client();
        let send = || {
            send_to(
                &client,
                follower.peer_addr(),
                Method::POST,
                path,
                &headers,
                Bytes::copy_from_slice(&body),
            )
        };
        let first = send().await?;
        ensure!(
            first.status == 200,
            "{path}: the original is authentic: {first:?}"
        );
        let replay = send().await?;
        ensure!(
            replay.status == 401 && replay.code().as_deref() == Some("replayed"),
            "{path} replayed: {} {:?}",
            replay.status,
            replay.code()
        );
    }

    // Nothing moved on any node, and Raft still works.
    ensure!(
        footprints(&cluster) == before,
        "state changed: {before:?} → {:?}",
        footprints(&cluster)
    );
    let metrics =
        String::from_utf8_lossy(&follower.get("/metrics").await?.expect(200)?.body).to_string();
    for line in [
        r#"cairn_peer_rpc_refused_total{endpoint="append",reason="unauthenticated"} 3"#,
        r#"cairn_peer_rpc_refused_total{endpoint="vote",reason="unauthenticated"} 3"#,
        r#"cairn_peer_rpc_refused_total{endpoint="snapshot",reason="unauthenticated"} 3"#,
        r#"cairn_peer_rpc_refused_total{endpoint="append",reason="replayed"} 1"#,
    ] {
        ensure!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }
    leader
        .apply("kv", &json!({"put": {"key": "after", "value": 1}}))
        .await?
        .expect(200)?;
    cluster.converge().await?;

    // The client port knows no Raft route.
    for node in &cluster.nodes {
        for path in ["/raft/append", "/raft/vote", "/raft/snapshot", "/raft/join"] {
            let r = node
                .req(Method::POST, path, &[], forged(term)?[0].1.clone())
                .await?;
            ensure!(
                r.status == 404,
                "{path} on node {}'s client port: {}",
                node.id,
                r.status
            );
        }
    }
    cluster.stop_all().await
}
