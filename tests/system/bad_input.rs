//! Bad input over HTTP: each malformed request is a 4xx with its code, state is unchanged and the node keeps serving.

use http::Method;
use serde_json::json;

use crate::harness::{Cluster, Resp};

const KIB: u64 = 1024;

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        r.status,
        status,
        "want {status} {code}, got body {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.code().as_deref(),
        Some(code),
        "body {:?}",
        String::from_utf8_lossy(&r.body)
    );
}

/// Sends only a request head announcing `len` body bytes with `Expect: 100-continue` and
/// returns the final status and error code the server answers with.
async fn oversized_head(
    addr: &str,
    method: &str,
    path: &str,
    len: u64,
) -> anyhow::Result<(u16, Option<String>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    // Authorised, so the size is what gets refused.
    let auth = crate::harness::token_for(addr)
        .map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\ncontent-length: {len}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await??;
    let text = String::from_utf8_lossy(&buf);
    // Skip any interim 1xx response; the final one decides.
    let fin = text.split("\r\n\r\n").collect::<Vec<_>>();
    let mut i = 0;
    while i < fin.len() && fin[i].starts_with("HTTP/1.1 1") {
        i += 1;
    }
    let status_line = fin
        .get(i)
        .and_then(|h| h.lines().next())
        .unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = fin.get(i + 1).copied().unwrap_or_default();
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    anyhow::ensure!(status != 0, "no HTTP response in {text:?}");
    Ok((status, code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_rejected_without_changing_state() -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(1, &|c| {
        c.snapshot_chunk_bytes = 64 * KIB;
        c.max_body_bytes = 256 * KIB;
        c.cluster.max_plugin_bytes = 512 * KIB;
    })
    .await?;
    let node = &cluster.nodes[0];
    node.deploy("counter", cairn_host::plugins::example("counter").unwrap())
        .await?
        .expect(201)?;
    node.deploy("kv", cairn_host::plugins::example("kv").unwrap())
        .await?
        .expect(201)?;
    let r = node
        .apply("counter", &json!({"increment": {"by": 4}}))
        .await?
        .expect(200)?;
    // The response can precede the node publishing its applied state (see the report), so
    // wait for the write's index before taking the reference hash.
    node.wait_applied(r.header_u64("cairn-log-index").expect("cairn-log-index"))
        .await?;
    let before = node.state_hash();

    // Deploys that must not reach the log.
    assert_error(
        &node.deploy("junk", b"this is not wasm at all").await?,
        400,
        "not-wasm",
    );
    assert_error(&node.deploy("junk", &[0u8; 0]).await?, 400, "not-wasm");
    let wrong = cairn_host::plugins::built("wrong-world");
    assert_error(&node.deploy("wrong", &wrong).await?, 400, "wrong-world");
    // Oversized bodies, announced by Content-Length. Sent as a client that waits for
    // `100 Continue` before the body (like curl does for big uploads): the server rejects
    // from the headers alone. Streaming the body instead races the server closing the
    // connection on the unread body (see the report).
    let (status, code) = oversized_head(node.addr(), "PUT", "/v1/plugins/big", 600 * KIB).await?;
    assert_eq!((status, code.as_deref()), (413, Some("body-too-large")));
    let (status, code) =
        oversized_head(node.addr(), "POST", "/v1/plugins/counter/apply", 300 * KIB).await?;
    assert_eq!((status, code.as_deref()), (413, Some("body-too-large")));

    // Unknown plugin, for apply and query.
    assert_error(
        &node.apply("nope", &json!({"increment": {"by": 1}})).await?,
        404,
        "plugin-not-found",
    );
    assert_error(
        &node.query("nope", "", &json!({"get": {}})).await?,
        404,
        "plugin-not-found",
    );

    // Malformed JSON and wrong shapes to our plugins: the plugin's own 422 bad-input.
    for body in [
        &b"{not json"[..],
        b"",
        b"[]",
        b"{\"increment\":{\"by\":\"five\"}}",
        b"{\"frobnicate\":{}}",
    ] {
        let r = node
            .req(
                Method::POST,
                "/v1/plugins/counter/apply",
                &[],
                body.to_vec(),
            )
            .await?;
        assert_error(&r, 422, "bad-input");
    }
    let r = node
        .req(
            Method::POST,
            "/v1/plugins/kv/apply",
            &[],
            b"{\"put\":".to_vec(),
        )
        .await?;
    assert_error(&r, 422, "bad-input");
    let r = node
        .req(
            Method::POST,
            "/v1/plugins/counter/query",
            &[],
            b"garbage".to_vec(),
        )
        .await?;
    assert_error(&r, 422, "bad-input");

    // Bad query parameters are refused before reaching the plugin.
    assert_error(
        &node
            .query("counter", "min-index=3", &json!({"get": {}}))
            .await?,
        400,
        "bad-query",
    );

    // Malformed Raft frames: a 4xx with a JSON error code, never a crash.
    for ep in ["append", "vote", "pre-vote", "snapshot"] {
        let r = node
            .req(
                Method::POST,
                &format!("/raft/{ep}"),
                &[],
                b"\xff\xff\xffgarbage".to_vec(),
            )
            .await?;
        assert!(
            (400..500).contains(&r.status),
            "/raft/{ep}: {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.code().is_some(),
            "/raft/{ep}: no JSON error code in {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // Unknown route and wrong method.
    assert_error(&node.get("/v1/nothing-here").await?, 404, "not-found");
    assert_error(
        &node
            .req(Method::DELETE, "/v1/state-hash", &[], Vec::new())
            .await?,
        405,
        "method-not-allowed",
    );

    // Nothing above changed the state (failed applies may still be logged but must not
    // change plugin state), and the node still serves reads and writes.
    let after = node.state_hash();
    assert_eq!(
        after.1, before.1,
        "state hash changed: {before:?} -> {after:?}"
    );
    node.get("/healthz").await?.expect(200)?;
    node.get("/readyz").await?.expect(200)?;
    let q = node
        .query("counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 4}));
    let plugins = node.get("/v1/plugins").await?.expect(200)?.json();
    let names: Vec<&str> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "only counter and kv deployed: {names:?}");
    let r = node
        .apply("counter", &json!({"increment": {"by": 1}}))
        .await?
        .expect(200)?;
    assert_eq!(r.json(), json!({"value": 5}));
    cluster.stop_all().await
}

/// Per-plugin limits from the deploy URL are recorded and enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_limits_are_per_plugin() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let wasm = cairn_host::plugins::built("misbehave");
    let node = cluster.node(1);
    node.req(
        Method::PUT,
        "/v1/plugins/tight?fuel_per_call=200000",
        &[],
        wasm.clone(),
    )
    .await?
    .expect(201)?;
    let info = node.get("/v1/plugins/tight").await?.expect(200)?.json();
    assert_eq!(info["fuel_per_call"], 200_000);
    let resp = node.apply("tight", &json!({"op": "loop"})).await?;
    assert_error(&resp, 422, "out-of-fuel");
    let resp = node
        .req(
            Method::PUT,
            "/v1/plugins/big?memory_limit_bytes=999999999999",
            &[],
            wasm,
        )
        .await?;
    assert_error(&resp, 400, "memory-limit-too-large");
    cluster.stop_all().await
}

/// A plugin that panics while applying writes its message to stderr through
/// WASI inside the node's apply path (which runs plugin calls in place on a
/// runtime worker): the command fails with the guest's message, the node
/// keeps applying, and the plugin's next command succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_apply_fails_cleanly_and_the_node_goes_on() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let wasm = cairn_host::plugins::built("misbehave");
    let node = cluster.node(1);
    node.req(Method::PUT, "/v1/plugins/misbehave", &[], wasm)
        .await?
        .expect(201)?;
    for round in 0..3 {
        let resp = node
            .apply(
                "misbehave",
                &json!({"op": "panic", "msg": format!("boom-{round}")}),
            )
            .await?;
        assert_eq!(resp.status, 422, "{}", String::from_utf8_lossy(&resp.body));
        let body = resp.json();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("boom-{round}")), "{body}");
        node.apply(
            "misbehave",
            &json!({"op": "write", "key": "k", "value": round}),
        )
        .await?
        .expect(200)?;
    }
    cluster.stop_all().await
}
