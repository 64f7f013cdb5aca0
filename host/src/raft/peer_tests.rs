//! Tests of the peer listener against a real Raft node: authentication
//! (missing, forged, replayed, tampered), body caps, malformed frames, and the
//! join-secret exchange.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use openraft::Vote;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, VoteRequest};

use crate::http_client;
use crate::raft::codec;
use crate::raft::join::{
    JOIN_SECRET_PATH, JOIN_TOKEN_EXPIRES_HEADER, JOIN_TOKEN_ID_HEADER, SecretReply,
};
use crate::raft::network::SnapshotChunkHeader;
use crate::raft::peer_auth::{
    AUTH_MAC_HEADER, ClusterSecret, MacKey, SignedRequest, now_ms, sign_request, verify_reply,
};
use crate::raft::test_support::{TestNode, start_node};
use crate::raft::types::TypeConfig;
use crate::state::Command;

const KIB: usize = 1024;

/// A signed request, ready to send (and to send again).
struct Prepared {
    path: &'static str,
    body: Bytes,
    signed: Option<SignedRequest>,
    extra: Vec<(&'static str, String)>,
}

fn prepare(key: Option<&MacKey>, path: &'static str, body: impl Into<Bytes>) -> Prepared {
    let body = body.into();
    let signed = key.map(|k| sign_request(k, "POST", path, "7", &body, now_ms()).unwrap());
    Prepared {
        path,
        body,
        signed,
        extra: Vec::new(),
    }
}

async fn send(node: &TestNode, p: &Prepared) -> Response<Bytes> {
    let uri = http_client::url(&node.addr, p.path).unwrap();
    let mut req = http_client::request(Method::POST, uri, None, p.body.clone());
    let headers = p.signed.iter().flat_map(|s| s.headers.iter());
    for (k, v) in headers.chain(p.extra.iter()) {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    http_client::send(
        &http_client::new_client(),
        req,
        Duration::from_secs(10),
        1 << 20,
    )
    .await
    .expect("http exchange")
}

fn code(resp: &Response<Bytes>) -> String {
    let v: serde_json::Value = serde_json::from_slice(resp.body()).expect("JSON error");
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

async fn single_leader(node: &TestNode) {
    node.raft
        .initialize(
            [(1, node.member())]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .await
        .unwrap();
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .unwrap();
}

/// What a forged request could change: term, vote and the log's end, and the state.
fn footprint(node: &TestNode) -> (u64, Option<u64>, [u8; 32]) {
    let m = node.raft.metrics().borrow_watched().clone();
    (m.current_term, m.last_log_index, node.state().hash())
}

fn forged_append() -> Vec<u8> {
    let leader = openraft::impls::leader_id_adv::LeaderId {
        term: 99,
        node_id: 7,
    };
    codec::encode(&AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(99, 7),
        prev_log_id: None,
        entries: vec![openraft::Entry {
            log_id: openraft::LogId::new(leader, 1),
            payload: openraft::EntryPayload::Normal(Command::Remove {
                name: "everything".into(),
            }),
        }],
        leader_commit: None,
    })
    .unwrap()
}

fn forged_vote(term: u64) -> Vec<u8> {
    codec::encode(&VoteRequest::<TypeConfig> {
        vote: Vote::new(term, 7),
        last_log_id: None,
        leadership_transfer: false,
    })
    .unwrap()
}

fn forged_snapshot_chunk() -> Vec<u8> {
    let header = SnapshotChunkHeader {
        vote: Vote::new_committed(99, 7),
        transfer_id: 1,
        offset: 0,
        done: true,
        meta: None,
    };
    codec::encode_with_tail(&header, b"not a snapshot").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_forged_and_replayed_requests_are_refused_and_change_nothing() {
    let node = start_node(1, |_| {}).await;
    single_leader(&node).await;
    let before = footprint(&node);
    let stranger = ClusterSecret::generate().unwrap().peer_key();

    for (path, body) in [
        ("/raft/append", forged_append()),
        ("/raft/vote", forged_vote(99)),
        ("/raft/pre-vote", forged_vote(99)),
        ("/raft/snapshot", forged_snapshot_chunk()),
    ] {
        // No credentials at all, and a MAC made with another cluster's secret.
        for key in [None, Some(&stranger)] {
            let resp = send(&node, &prepare(key, path, body.clone())).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(code(&resp), "unauthenticated", "{path}");
            assert!(!resp.headers().contains_key(AUTH_MAC_HEADER));
        }
        // The right key over another body: refused once the body is read.
        let mut tampered = prepare(Some(&node.peer_key()), path, body.clone());
        tampered.body = Bytes::from([body.as_slice(), b"x"].concat());
        let resp = send(&node, &tampered).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(code(&resp), "unauthenticated");
    }
    // A huge unauthenticated body is refused for what it is, not for its size.
    let req = Request::post("/raft/append")
        .header(
            http::header::CONTENT_LENGTH,
            crate::config::PEER_RPC_MAX_BODY_BYTES + 1,
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        node.peer.handle(req, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        footprint(&node),
        before,
        "a refused request changed the node"
    );

    // A valid (harmless: stale term) vote request is answered and signed; the
    // same request again is a replay.
    let captured = prepare(Some(&node.peer_key()), "/raft/vote", forged_vote(0));
    let resp = send(&node, &captured).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let nonce = captured.signed.as_ref().unwrap().nonce;
    verify_reply(&node.peer_key(), &nonce, 200, resp.headers(), resp.body()).unwrap();
    let resp = send(&node, &captured).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(&resp), "replayed");
    assert_eq!(footprint(&node), before);

    let refused = node.peer.stats().refused();
    let count = |endpoint: &str, reason: &str| {
        refused
            .iter()
            .find(|((e, r), _)| e == endpoint && r == reason)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count("append", "unauthenticated"), 4);
    assert_eq!(count("snapshot", "unauthenticated"), 3);
    assert_eq!(count("vote", "replayed"), 1);
    // Raft is unharmed: it still commits.
    node.raft
        .client_write(Command::Remove {
            name: "after".into(),
        })
        .await
        .expect("still commits");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_too_long_ago_is_stale() {
    let node = start_node(1, |c| c.peer_auth_max_clock_skew_ms = 1_000).await;
    let body = Bytes::from(forged_vote(0));
    let signed = sign_request(
        &node.peer_key(),
        "POST",
        "/raft/vote",
        "7",
        &body,
        now_ms() - 5_000,
    )
    .unwrap();
    let p = Prepared {
        path: "/raft/vote",
        body,
        signed: Some(signed),
        extra: Vec::new(),
    };
    let resp = send(&node, &p).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(&resp), "stale-request");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bodies_get_the_derived_caps_and_malformed_frames_are_400() {
    let node = start_node(1, |c| c.max_body_bytes = 70 * KIB as u64).await;
    single_leader(&node).await;
    let key = node.peer_key();
    // Not held to this node's client cap: 80 KiB reaches the decoder.
    let resp = send(
        &node,
        &prepare(Some(&key), "/raft/append", vec![0u8; 80 * KIB]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&resp), "bad-raft-body");
    // Replies to authenticated requests are signed, refusals included.
    assert!(resp.headers().contains_key(AUTH_MAC_HEADER));

    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"hello".to_vec(),
        b"CRN\x01\xff\xff\xff\xff".to_vec(),
        b"CRN\x07\x00\x00\x00\x00".to_vec(),
        [b"CRN\x03\x10\x00\x00\x00".as_slice(), &[0xff; 16]].concat(),
    ];
    for path in [
        "/raft/append",
        "/raft/vote",
        "/raft/pre-vote",
        "/raft/snapshot",
    ] {
        for body in &garbage {
            let resp = send(&node, &prepare(Some(&key), path, body.clone())).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {body:?}");
            assert_eq!(code(&resp), "bad-raft-body");
        }
    }
    // A well-formed chunk (from a peer: a frame naming this node itself is
    // refused outright) that does not continue any upload is a conflict, not a crash.
    let header = SnapshotChunkHeader {
        vote: Vote::new_committed(1, 2),
        transfer_id: 9,
        offset: 64,
        done: false,
        meta: None,
    };
    let frame = codec::encode_with_tail(&header, b"data").unwrap();
    let resp = send(&node, &prepare(Some(&key), "/raft/snapshot", frame)).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(code(&resp), "snapshot-out-of-order");

    // Unknown routes and methods.
    let resp = send(&node, &prepare(Some(&key), "/raft/install", "")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(&node, &prepare(Some(&key), "/v1/plugins", "")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let req = Request::get("/raft/vote")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        node.peer.handle(req, None).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );

    node.raft
        .client_write(Command::Remove {
            name: "after".into(),
        })
        .await
        .expect("still commits");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_goes_only_to_a_valid_unexpired_join_token() {
    let node = start_node(1, |_| {}).await;
    let secret = node.secret();
    let body = br#"{"id":5}"#.to_vec();
    let ask = |id: &str, expires: u64, key: &MacKey| {
        let mut p = prepare(Some(key), JOIN_SECRET_PATH, body.clone());
        p.extra = vec![
            (JOIN_TOKEN_ID_HEADER, id.to_string()),
            (JOIN_TOKEN_EXPIRES_HEADER, expires.to_string()),
        ];
        p
    };
    let later = now_ms() / 1000 + 600;

    let good = ask(
        "0011223344556677",
        later,
        &secret.join_key("0011223344556677", later),
    );
    let resp = send(&node, &good).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let nonce = good.signed.as_ref().unwrap().nonce;
    let key = secret.join_key("0011223344556677", later);
    verify_reply(&key, &nonce, 200, resp.headers(), resp.body()).unwrap();
    let reply: SecretReply = serde_json::from_slice(resp.body()).unwrap();
    let mut wrapped = [0u8; 32];
    hex::decode_to_slice(&reply.wrapped_secret, &mut wrapped).unwrap();
    assert_eq!(&key.wrap_secret(&nonce, &wrapped), secret.bytes());
    assert_ne!(
        &wrapped,
        secret.bytes(),
        "the secret never travels in the clear"
    );

    // A key for other terms (a forged expiry), an expired token, the peer key.
    let forged = ask("0011223344556677", later + 1, &key);
    assert_eq!(
        send(&node, &forged).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let past = now_ms() / 1000 - 1;
    let expired = ask(
        "0011223344556677",
        past,
        &secret.join_key("0011223344556677", past),
    );
    let resp = send(&node, &expired).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(&resp), "join-token-expired");
    let peer = ask("0011223344556677", later, &node.peer_key());
    assert_eq!(send(&node, &peer).await.status(), StatusCode::UNAUTHORIZED);
    // No token headers at all.
    let bare = prepare(Some(&key), JOIN_SECRET_PATH, body.clone());
    assert_eq!(send(&node, &bare).await.status(), StatusCode::UNAUTHORIZED);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_connection_over_the_cap_is_closed_and_counted() {
    use tokio::io::AsyncReadExt;
    let node = start_node(1, |c| c.peer_max_connections = 1).await;
    let stats = node.peer.stats().connections().clone();
    let _held = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let opened = async {
        while stats.open() < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), opened)
        .await
        .expect("the first connection is served");

    // The second is closed at once, without an answer, and counted.
    let mut second = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "a refused peer connection gets no bytes");
    assert_eq!(stats.refused(), 1);
    assert_eq!(stats.open(), 1);
    node.stop().await;
}
