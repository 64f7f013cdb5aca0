//! HTTP-level tests of the client port: limits, routing, JSON errors, forwarding.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::api::auth::tests::STUB_ADMIN_TOKEN;
use crate::api::error::ErrorEnvelope;
use crate::api::service::Consistency;
use crate::api::test_support::{StubService, TestNode, start_node, start_node_with};
use crate::config::Config;
use crate::http_client;

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

    // The Raft RPCs are not served here at all (the peer port has its own caps).
    let resp = call(
        &node,
        Method::POST,
        "/raft/append",
        vec![0u8; 80 * KIB as usize],
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&resp), "not-found");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let node = start_node(1, |_| {}).await;
    for path in [
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
    // The client port knows no Raft route, whatever the method.
    for (method, path) in [
        (Method::GET, "/raft/vote"),
        (Method::POST, "/raft/append"),
        (Method::POST, "/raft/snapshot"),
        (Method::POST, "/raft/join-secret"),
    ] {
        let resp = call(&node, method, path, Bytes::new(), &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }

    let resp = call(&node, Method::GET, "/healthz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call(&node, Method::GET, "/readyz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), "not-ready");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_is_served_at_the_root_and_only_talks_to_this_node() {
    let node = start_node(1, |_| {}).await;
    let resp = call(&node, Method::GET, "/", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = std::str::from_utf8(resp.body()).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("/v1/cluster") && page.contains("/metrics"));
    let resp = call(&node, Method::POST, "/", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&resp), "method-not-allowed");
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

/// A short request deadline (it must still exceed the test election timeout).
fn short_deadline(c: &mut Config) {
    c.request_timeout_ms = 1000;
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

    // A node that is asked to forward an already forwarded request refuses
    // (no ping-pong) with `not-leader`; the first node then waits for the
    // leader to change, which it never does here, until the deadline.
    let confused = start_node_with(
        3,
        short_deadline,
        StubService {
            forward_to: Some("127.0.0.1:9".into()),
            ..Default::default()
        },
    )
    .await;
    let relay = start_node_with(
        4,
        short_deadline,
        StubService {
            forward_to: Some(confused.addr.clone()),
            ..Default::default()
        },
    )
    .await;
    let resp = call(&relay, Method::POST, "/v1/plugins/counter/apply", "{}", &[]).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), "no-leader");
    let resp = call(
        &confused,
        Method::POST,
        "/v1/plugins/counter/apply",
        "{}",
        &[("cairn-forwarded-by", "4")],
    )
    .await;
    assert_eq!(error_code(&resp), "not-leader");

    // A leader that cannot be reached and is never replaced: nothing was
    // delivered, so the answer is `no-leader` once the deadline passes.
    let resp = call(
        &confused,
        Method::POST,
        "/v1/plugins/counter/apply",
        "{}",
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), "no-leader");

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

/// What a scripted fake leader does with each connection, in order.
#[derive(Clone, Copy, Debug)]
enum FakeLeader {
    /// Reads the request, then closes without answering.
    HangUp,
    /// Reads the request and answers 200 with `cairn-log-index: 9`.
    Answer,
}

/// Reads one HTTP/1 request (headers and a `Content-Length` body) from `stream`.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
    }
}

/// Serves `script` on `listener`, one connection per step; returns the requests seen.
fn fake_leader(
    listener: tokio::net::TcpListener,
    script: Vec<FakeLeader>,
) -> tokio::task::JoinHandle<Vec<Vec<u8>>> {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut seen = Vec::new();
        for step in script {
            let (mut stream, _) = listener.accept().await.unwrap();
            seen.push(read_request(&mut stream).await);
            if let FakeLeader::Answer = step {
                let body = r#"{"fake":true}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncairn-log-index: 9\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(resp.as_bytes()).await.unwrap();
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_that_may_have_arrived_is_resent_only_when_idempotent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leader_addr = listener.local_addr().unwrap().to_string();
    let leader = fake_leader(
        listener,
        vec![FakeLeader::HangUp, FakeLeader::HangUp, FakeLeader::Answer],
    );
    let follower = start_node_with(
        2,
        |c| c.request_timeout_ms = 5000,
        StubService {
            forward_to: Some(leader_addr),
            leader_moves_after: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    )
    .await;

    // Without a key the outcome is unknown: not resent.
    let resp = call(
        &follower,
        Method::POST,
        "/v1/plugins/counter/apply",
        "a",
        &[],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), "forward-failed");

    // With a key it is sent again after the leader changes, and answered.
    let resp = call(
        &follower,
        Method::POST,
        "/v1/plugins/counter/apply",
        "b",
        &[("idempotency-key", "k-7")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.body());
    assert_eq!(resp.headers()["cairn-log-index"], "9");
    let seen = leader.await.unwrap();
    assert_eq!(
        seen.len(),
        3,
        "one hop for the first write, two for the keyed one"
    );
    for req in &seen[1..] {
        let text = String::from_utf8_lossy(req).to_lowercase();
        assert!(text.contains("idempotency-key: k-7"), "{text}");
    }
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_that_could_not_connect_is_sent_again() {
    // A port nobody listens on yet: the first hops are refused, which proves
    // they were never delivered, so even a write without a key is resent.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let leader_addr = format!("127.0.0.1:{port}");
    let follower = start_node_with(
        2,
        |c| c.request_timeout_ms = 5000,
        StubService {
            forward_to: Some(leader_addr.clone()),
            leader_moves_after: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    )
    .await;
    let started = std::time::Instant::now();
    let request = call(
        &follower,
        Method::POST,
        "/v1/plugins/counter/apply",
        "c",
        &[],
    );
    let leader = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let listener = tokio::net::TcpListener::bind(&leader_addr).await.unwrap();
        fake_leader(listener, vec![FakeLeader::Answer])
            .await
            .unwrap()
    });
    let resp = request.await;
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.body());
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(leader.await.unwrap().len(), 1);
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_504_and_a_write_is_told_it_may_have_applied() {
    let node = start_node(1, short_deadline).await;
    let started = std::time::Instant::now();
    let resp = call(&node, Method::POST, "/v1/plugins/slow/apply", "{}", &[]).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_code(&resp), "timeout");
    let env: ErrorEnvelope = serde_json::from_slice(resp.body()).unwrap();
    assert!(
        env.error.message.contains("may still have been applied")
            && env.error.message.contains("Idempotency-Key"),
        "{}",
        env.error.message
    );
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(5),
        "{took:?}"
    );
    node.stop().await;
}

/// Opens a raw connection and sends `head` (request line and headers).
async fn raw_request(addr: &str, head: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads until the server closes (bounded), returning the text.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_or_trickles_is_refused_in_time() {
    use tokio::io::AsyncWriteExt;
    let node = start_node(1, |c| c.body_read_timeout_ms = 500).await;
    let head = format!(
        "POST /v1/plugins/counter/apply HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {STUB_ADMIN_TOKEN}\r\ncontent-length: 100\r\n\r\n"
    );

    // Stops after 10 of 100 bytes.
    let started = std::time::Instant::now();
    let mut stalled = raw_request(&node.addr, &head).await;
    stalled.write_all(&[b'x'; 10]).await.unwrap();
    // Meanwhile the node serves others.
    let resp = call(&node, Method::GET, "/healthz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answer = read_to_close(&mut stalled).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body-timeout""#), "{answer}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // Trickles a byte every 100 ms: the limit is on the whole body, not per byte.
    let started = std::time::Instant::now();
    let mut trickle = raw_request(&node.addr, &head).await;
    let mut answer = String::new();
    for _ in 0..100 {
        if trickle.write_all(b"x").await.is_err() {
            break;
        }
        tokio::select! {
            text = read_to_close(&mut trickle) => { answer = text; break; }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let took = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    let resp = call(&node, Method::GET, "/healthz", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_counted_and_do_not_stall_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = start_node(1, |c| c.max_connections = 2).await;
    let stats = node.api.connection_stats().clone();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(&node.addr).await.unwrap());
    }
    let open_both = async {
        while stats.open() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), open_both)
        .await
        .expect("both connections are served");

    // A third connection is answered 503 at once and closed.
    let started = std::time::Instant::now();
    let mut third = raw_request(&node.addr, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let answer = read_to_close(&mut third).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"overloaded""#), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    assert_eq!(stats.refused(), 1);

    // The held connections still work.
    let first = &mut held[0];
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    // Closing one frees its slot.
    held.pop();
    let freed = async {
        while stats.open() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), freed)
        .await
        .expect("the slot is released");
    let resp = call(&node, Method::GET, "/metrics", Bytes::new(), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(held);
    node.stop().await;
}
