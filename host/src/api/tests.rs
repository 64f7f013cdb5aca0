//! HTTP-level tests of the server: limits, routing, JSON errors, raft body validation, forwarding.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::api::auth::tests::STUB_ADMIN_TOKEN;
use crate::api::error::ErrorEnvelope;
use crate::api::service::Consistency;
use crate::config::Config;
use crate::http_client;
use crate::raft::test_support::{StubService, TestNode, start_node, start_node_with};

const KIB: u64 = 1024;

/// Small caps so the tests send small bodies.
fn small_limits(c: &mut Config) {
    c.snapshot_chunk_bytes = KIB;
    c.max_body_bytes = 70 * KIB;
}

async fn call(
    node: &TestNode,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Response<Bytes> {
    let uri = http_client::url(&node.addr, path).unwrap();
    let mut req = http_client::request(method, uri, None, body.into());
    http_client::set_bearer(&mut req, STUB_ADMIN_TOKEN).unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
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

fn error_code(resp: &Response<Bytes>) -> String {
    assert_eq!(resp.headers()["content-type"], "application/json");
    let env: ErrorEnvelope = serde_json::from_slice(resp.body()).expect("JSON error envelope");
    assert!(!env.error.message.is_empty());
    env.error.code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413_with_a_json_error() {
    let node = start_node(1, small_limits).await;

    // Announced by Content-Length: refused before reading.
    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/counter/apply",
        vec![b'x'; 80 * KIB as usize],
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&resp), "body-too-large");

    // Plugin uploads have their own (larger) cap: 80 KiB passes the size check there…
    let resp = call(
        &node,
        Method::PUT,
        "/v1/plugins/counter",
        vec![0u8; 80 * KIB as usize],
        &[],
    )
    .await;
    assert_ne!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // …and 200 KiB does not.
    let resp = call(
        &node,
        Method::PUT,
        "/v1/plugins/counter",
        vec![0u8; 200 * KIB as usize],
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&resp), "body-too-large");

    // Without Content-Length the streaming cap catches it.
    let req = Request::post("/v1/plugins/counter/apply")
        .header("authorization", format!("Bearer {STUB_ADMIN_TOKEN}"))
        .body(Full::new(Bytes::from(vec![1u8; 71 * KIB as usize])))
        .unwrap();
    let resp = node.api.handle(req).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A raft frame is capped too.
    let resp = call(
        &node,
        Method::POST,
        "/raft/append",
        vec![0u8; 80 * KIB as usize],
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let node = start_node(1, |_| {}).await;
    for path in [
        "/",
        "/nope",
        "/v1",
        "/v1/plugins/a/b/c",
        "/raft/install",
        "/v2/plugins",
    ] {
        let resp = call(&node, Method::GET, path, Bytes::new(), &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(&resp), "not-found");
    }
    let resp = call(&node, Method::POST, "/healthz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET");
    assert_eq!(error_code(&resp), "method-not-allowed");
    let resp = call(&node, Method::GET, "/raft/vote", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    let resp = call(&node, Method::GET, "/healthz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call(&node, Method::GET, "/readyz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), "not-ready");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_raft_bodies_are_400_and_the_node_keeps_working() {
    let node = start_node(1, |_| {}).await;
    let members: std::collections::BTreeMap<u64, openraft::BasicNode> = [(
        1,
        openraft::BasicNode {
            addr: node.addr.clone(),
        },
    )]
    .into();
    node.raft.initialize(members).await.unwrap();
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .unwrap();

    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"hello".to_vec(),
        b"CRN\x01\xff\xff\xff\xff".to_vec(),
        b"CRN\x07\x00\x00\x00\x00".to_vec(),
        [b"CRN\x01\x10\x00\x00\x00".as_slice(), &[0xff; 16]].concat(),
    ];
    for path in [
        "/raft/append",
        "/raft/vote",
        "/raft/pre-vote",
        "/raft/snapshot",
    ] {
        for body in &garbage {
            let resp = call(&node, Method::POST, path, body.clone(), &[]).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {body:?}");
            assert_eq!(error_code(&resp), "bad-raft-body");
        }
    }
    // A well-formed chunk that does not continue any upload is a conflict, not a crash.
    let header = crate::raft::network::SnapshotChunkHeader {
        vote: openraft::Vote::new_committed(1, 1),
        transfer_id: 9,
        offset: 64,
        done: false,
        meta: None,
    };
    let frame = crate::raft::codec::encode_with_tail(&header, b"data").unwrap();
    let resp = call(&node, Method::POST, "/raft/snapshot", frame, &[]).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(&resp), "snapshot-out-of-order");

    // Raft is unharmed: it still commits.
    node.raft
        .client_write(crate::state::Command::Remove {
            name: "after".into(),
        })
        .await
        .expect("still commits");
    let resp = call(&node, Method::GET, "/healthz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_api_maps_results_headers_and_query_parameters() {
    let service = StubService::default();
    let node = start_node_with(1, |_| {}, service.clone()).await;

    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/counter/apply",
        r#"{"add":1}"#,
        &[("idempotency-key", "k-1")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cairn-log-index"], "7");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let echo: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(
        echo,
        serde_json::json!({"input": r#"{"add":1}"#, "key": "k-1"})
    );

    let resp = call(&node, Method::POST, "/v1/plugins/trap/apply", "{}", &[]).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&resp), "out-of-fuel");
    let resp = call(&node, Method::POST, "/v1/plugins/missing/apply", "{}", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&resp), "plugin-not-found");
    let resp = call(&node, Method::GET, "/v1/plugins/missing", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = call(&node, Method::GET, "/v1/plugins", Bytes::new(), &[]).await;
    assert_eq!(resp.body().as_ref(), br#"{"plugins":[]}"#);

    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/counter/query?consistency=stale&min_index=5",
        "{}",
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cairn-applied-index"], "3");
    assert_eq!(
        *service.last_query.lock().unwrap(),
        Some((Consistency::Stale, Some(5)))
    );
    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/counter/query?consistency=maybe",
        "{}",
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&resp), "bad-query");

    let resp = call(&node, Method::POST, "/v1/cluster/members", "{not json", &[]).await;
    assert_eq!(error_code(&resp), "bad-json");
    let resp = call(
        &node,
        Method::DELETE,
        "/v1/cluster/members/abc",
        Bytes::new(),
        &[],
    )
    .await;
    assert_eq!(error_code(&resp), "bad-member-id");
    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/counter/apply",
        "{}",
        &[("idempotency-key", "")],
    )
    .await;
    assert_eq!(error_code(&resp), "bad-idempotency-key");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_follower_are_proxied_to_the_leader_once() {
    let leader = start_node(1, |_| {}).await;
    let follower = start_node_with(
        2,
        |_| {},
        StubService {
            forward_to: Some(leader.addr.clone()),
            ..Default::default()
        },
    )
    .await;

    let resp = call(
        &follower,
        Method::POST,
        "/v1/plugins/counter/apply?events=false",
        "in",
        &[("idempotency-key", "abc")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.body());
    assert_eq!(resp.headers()["cairn-log-index"], "7");
    let echo: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(echo["key"], "abc", "Idempotency-Key survives the hop");

    // A node that is asked to forward an already forwarded request refuses (no ping-pong).
    let confused = start_node_with(
        3,
        |_| {},
        StubService {
            forward_to: Some("127.0.0.1:9".into()),
            ..Default::default()
        },
    )
    .await;
    let relay = start_node_with(
        4,
        |_| {},
        StubService {
            forward_to: Some(confused.addr.clone()),
            ..Default::default()
        },
    )
    .await;
    let resp = call(&relay, Method::POST, "/v1/plugins/counter/apply", "{}", &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), "no-leader");

    // A leader that cannot be reached is a 503 forward-failed.
    let resp = call(
        &confused,
        Method::POST,
        "/v1/plugins/counter/apply",
        "{}",
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), "forward-failed");

    for n in [leader, follower, confused, relay] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting() {
    let node = start_node(1, |_| {}).await;
    let addr = node.addr.clone();
    assert_eq!(
        call(&node, Method::GET, "/healthz", Bytes::new(), &[])
            .await
            .status(),
        StatusCode::OK
    );
    node.stop().await;
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "listener closed after shutdown"
    );
}
