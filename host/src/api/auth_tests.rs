//! Tests of `api::auth`: the permission matrix, the route → action map,
//! bearer parsing, and the HTTP behaviour against the stub service.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

use super::*;
use crate::api::server::{RequestHead, route};
use crate::api::test_support::{StubService, TestNode, start_node, start_node_with};
use crate::http_client;

/// TEST-ONLY tokens the stub knows.
pub(crate) const STUB_ADMIN_TOKEN: &str = "stub-admin";
const STUB_WRITER_TOKEN: &str = "stub-writer";
const STUB_READER_KV_TOKEN: &str = "stub-reader-kv";

impl AuthService for StubService {
    fn authenticate(&self, bearer: &str) -> Option<Principal> {
        let (role, plugins) = match bearer {
            STUB_ADMIN_TOKEN => (Role::Admin, None),
            STUB_WRITER_TOKEN => (Role::Writer, None),
            STUB_READER_KV_TOKEN => (Role::Reader, Some(vec!["kv".to_string()])),
            _ => return None,
        };
        Some(Principal {
            token_id: bearer.to_string(),
            role,
            plugins,
        })
    }
    async fn create_token(
        &self,
        _request: CreateTokenRequest,
        _deadline: crate::api::service::Deadline,
    ) -> Result<CreatedToken, ApiError> {
        Err(ApiError::Unavailable("test stub".into()))
    }
    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        Ok(vec![])
    }
    async fn revoke_token(
        &self,
        _id: String,
        _deadline: crate::api::service::Deadline,
    ) -> Result<RevokedToken, ApiError> {
        Err(ApiError::Unavailable("test stub".into()))
    }
}

#[test]
fn the_permission_matrix_is_exact() {
    use Role::*;
    let kv_only = Some(vec!["kv".to_string()]);
    // (action on kv, on bank) → allowed for: admin, deployer, writer, reader,
    // each once with every plugin and once limited to kv.
    type Row = (&'static str, [bool; 4], [bool; 4], [bool; 4]);
    let rows: [(Action<'static>, Action<'static>, Row); 6] = [
        (
            Action::Inspect,
            Action::Inspect,
            ("inspect", [true; 4], [true; 4], [true; 4]),
        ),
        (
            Action::ViewPlugin("kv"),
            Action::ViewPlugin("bank"),
            ("view", [true; 4], [true; 4], [true, false, false, false]),
        ),
        (
            Action::Query("kv"),
            Action::Query("bank"),
            ("query", [true; 4], [true; 4], [true, false, false, false]),
        ),
        (
            Action::Apply("kv"),
            Action::Apply("bank"),
            (
                "apply",
                [true, true, true, false],
                [true, true, true, false],
                [true, false, false, false],
            ),
        ),
        (
            Action::Deploy("kv"),
            Action::Deploy("bank"),
            (
                "deploy",
                [true, true, false, false],
                [true, true, false, false],
                [true, false, false, false],
            ),
        ),
        (
            Action::Admin,
            Action::Admin,
            (
                "admin",
                [true, false, false, false],
                [true, false, false, false],
                [true, false, false, false],
            ),
        ),
    ];
    for (on_kv, on_bank, (what, all, scoped_on_kv, scoped_on_bank)) in rows {
        for (i, role) in [Admin, Deployer, Writer, Reader].into_iter().enumerate() {
            assert_eq!(
                permits(role, None, on_kv),
                all[i],
                "{what} {role} all plugins"
            );
            assert_eq!(
                permits(role, None, on_bank),
                all[i],
                "{what} {role} all plugins"
            );
            assert_eq!(
                permits(role, kv_only.as_deref(), on_kv),
                scoped_on_kv[i],
                "{what} {role} limited to kv, on kv"
            );
            assert_eq!(
                permits(role, kv_only.as_deref(), on_bank),
                scoped_on_bank[i],
                "{what} {role} limited to kv, on bank"
            );
        }
    }
}

#[test]
fn every_route_needs_the_right_action() {
    let cases: Vec<(Method, &str, Option<Action<'static>>)> = vec![
        (Method::GET, "/healthz", None),
        (Method::GET, "/readyz", None),
        (Method::GET, "/", None),
        (Method::POST, "/v1/cluster/join-token", Some(Action::Admin)),
        (Method::GET, "/v1/backup", Some(Action::Admin)),
        (Method::GET, "/metrics", Some(Action::Inspect)),
        (Method::GET, "/v1/cluster", Some(Action::Inspect)),
        (Method::GET, "/v1/state-hash", Some(Action::Inspect)),
        (Method::GET, "/v1/plugins", Some(Action::Inspect)),
        (Method::GET, "/v1/cluster/settings", Some(Action::Inspect)),
        (
            Method::GET,
            "/v1/plugins/kv",
            Some(Action::ViewPlugin("kv")),
        ),
        (Method::PUT, "/v1/plugins/kv", Some(Action::Deploy("kv"))),
        (Method::DELETE, "/v1/plugins/kv", Some(Action::Deploy("kv"))),
        (
            Method::POST,
            "/v1/plugins/kv/apply",
            Some(Action::Apply("kv")),
        ),
        (
            Method::POST,
            "/v1/plugins/kv/query",
            Some(Action::Query("kv")),
        ),
        (Method::PATCH, "/v1/cluster/settings", Some(Action::Admin)),
        (Method::POST, "/v1/cluster/members", Some(Action::Admin)),
        (Method::DELETE, "/v1/cluster/members/2", Some(Action::Admin)),
        (Method::GET, "/v1/tokens", Some(Action::Admin)),
        (Method::POST, "/v1/tokens", Some(Action::Admin)),
        (Method::DELETE, "/v1/tokens/t3", Some(Action::Admin)),
    ];
    for (method, path, want) in cases {
        let r = route(path).expect(path);
        assert_eq!(required_action(&r, &method), want, "{method} {path}");
    }
}

fn head(authorization: Option<&str>) -> RequestHead {
    let mut headers = http::HeaderMap::new();
    if let Some(v) = authorization {
        headers.insert(header::AUTHORIZATION, v.parse().unwrap());
    }
    RequestHead {
        method: Method::POST,
        uri: "/v1/plugins/kv/apply".parse().unwrap(),
        headers,
    }
}

#[test]
fn bearer_headers_are_parsed_strictly() {
    let stub = StubService::default();
    let apply = route("/v1/plugins/kv/apply").unwrap();
    let code = |auth: Option<&str>| {
        check(&stub, &apply, &head(auth))
            .map(|p| p.map(|p| p.token_id))
            .map_err(|e| e.code().to_string())
    };
    assert_eq!(
        code(Some("Bearer stub-writer")),
        Ok(Some("stub-writer".into()))
    );
    assert_eq!(
        code(Some("bearer  stub-writer ")),
        Ok(Some("stub-writer".into()))
    );
    for bad in [
        None,
        Some("stub-writer"),
        Some("Basic stub-writer"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer nope"),
    ] {
        assert_eq!(code(bad), Err("unauthenticated".into()), "{bad:?}");
    }
    assert_eq!(code(Some("Bearer stub-reader-kv")), Err("forbidden".into()));
    // Open routes need nothing.
    let healthz = route("/healthz").unwrap();
    assert_eq!(check(&stub, &healthz, &head(None)).unwrap(), None);
}

async fn call(
    node: &TestNode,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
    token: Option<&str>,
) -> http::Response<Bytes> {
    let uri = http_client::url(&node.addr, path).unwrap();
    let mut req = http_client::request(method, uri, None, body.into());
    if let Some(t) = token {
        http_client::set_bearer(&mut req, t).unwrap();
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

fn code(resp: &http::Response<Bytes>) -> String {
    crate::api::error::ErrorEnvelope::parse(resp.body())
        .expect("JSON error")
        .code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_before_the_body_is_read() {
    let node = start_node(1, |c| {
        c.snapshot_chunk_bytes = 1024;
        c.max_body_bytes = 70 * 1024;
    })
    .await;
    let resp = call(&node, Method::POST, "/v1/plugins/kv/apply", "{}", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(&resp), "unauthenticated");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"cairn\"");
    // A body over the cap: refused as unauthenticated (401), not measured (413).
    let big = vec![0u8; 80 * 1024];
    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/kv/apply",
        big,
        Some("nope"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/kv/apply",
        "{}",
        Some(STUB_READER_KV_TOKEN),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(&resp), "forbidden");
    let resp = call(
        &node,
        Method::POST,
        "/v1/plugins/kv/query",
        "{}",
        Some(STUB_READER_KV_TOKEN),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Open: health, readiness; and /raft is not served on the client port at all.
    let resp = call(&node, Method::GET, "/healthz", Bytes::new(), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call(&node, Method::GET, "/readyz", Bytes::new(), None).await;
    assert_eq!(code(&resp), "not-ready");
    let resp = call(&node, Method::POST, "/raft/vote", "junk", None).await;
    assert_eq!(code(&resp), "not-found");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_carries_its_token_to_the_leader() {
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
    // The leader checks again: had the header been dropped, it would answer 401.
    let resp = call(
        &follower,
        Method::POST,
        "/v1/plugins/kv/apply",
        "in",
        Some(STUB_WRITER_TOKEN),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.body());
    let resp = call(&follower, Method::POST, "/v1/plugins/kv/apply", "in", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    for n in [leader, follower] {
        n.stop().await;
    }
}
