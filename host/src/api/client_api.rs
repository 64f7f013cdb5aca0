//! The `/v1/…` and `/readyz` handlers: parse the HTTP request, call [`ClusterService`], shape the response.
//!
//! | method | path | success |
//! |---|---|---|
//! | PUT | `/v1/plugins/{name}?fuel_per_call=N&memory_limit_bytes=M` | 201 `{"name","version","sha256","log_index","changed"}` (200 if unchanged) |
//! | PATCH | `/v1/plugins/{name}?fuel_per_call=N&memory_limit_bytes=M` | 200 the same shape |
//! | GET | `/v1/plugins` | 200 `{"plugins":[…]}` |
//! | GET | `/v1/plugins/{name}` | 200 plugin info |
//! | DELETE | `/v1/plugins/{name}` | 200 `{"name","log_index"}` |
//! | POST | `/v1/plugins/{name}/apply` | 200 plugin output, `cairn-log-index` |
//! | POST | `/v1/plugins/{name}/query?consistency=linearizable\|stale&min_index=N` | 200 plugin output, `cairn-applied-index` |
//! | POST | `/v1/plugins/{name}/dry-run?fuel_per_call=N&memory_limit_bytes=M` body: the component; header `cairn-sample-queries: [<query JSON>, …]` | 200 dry-run report (nothing committed) |
//! | GET | `/v1/cluster` | 200 cluster status |
//! | POST | `/v1/cluster/members` `{"id","addr","peer_addr"}` | 200 cluster status |
//! | POST | `/v1/cluster/join-token` `{"ttl_secs"}` (optional) | 200 `{"token","expires_at_unix_secs","peers"}` |
//! | DELETE | `/v1/cluster/members/{id}` | 200 cluster status |
//! | GET | `/v1/cluster/settings` | 200 the cluster settings |
//! | PATCH | `/v1/cluster/settings` `{field: value, "limits": {…}}` | 200 the settings after the change |
//! | GET | `/v1/state-hash` | 200 `{"applied_index","hash"}` |
//! | POST, GET, DELETE | `/v1/tokens`, `/v1/tokens/{id}` | see `api/auth.rs` |
//! | GET | `/v1/plugins/{name}/events?from_index=N` (`Last-Event-ID`) | 200 `text/event-stream` (see `api::events`) |
//! | GET | `/v1/backup` | 200 snapshot-format bytes, `cairn-applied-index`, `cairn-state-hash` |
//! | GET | `/readyz` | 200 `{"ready":true}` |

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use crate::api::error::{ApiError, json_response};
use crate::api::server::{RequestHead, Route};
use crate::api::service::{
    AddMemberRequest, ClusterService, Consistency, Deadline, DeployOptions, JoinTokenRequest,
    PluginList,
};
use crate::state::CommandResult;

/// Response header: the log index a write was applied at.
pub const LOG_INDEX_HEADER: &str = "cairn-log-index";
/// Response header: the applied index of the state that answered a query.
pub const APPLIED_INDEX_HEADER: &str = "cairn-applied-index";
/// Response header of a backup: the hex state hash of the backed-up state.
pub const STATE_HASH_HEADER: &str = "cairn-state-hash";
/// Request header making a write safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Request header of a dry run: a JSON array of sample queries, each sent as
/// a query's input to the running version and to the candidate.
pub const SAMPLE_QUERIES_HEADER: &str = "cairn-sample-queries";
/// Most sample queries one dry run runs.
pub const MAX_SAMPLE_QUERIES: usize = 64;
/// Longest accepted idempotency key; keys live in replicated state forever-ish.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Handles every route but `/healthz` (the router has already checked the method).
pub(crate) async fn handle<S: ClusterService>(
    service: &S,
    route: Route<'_>,
    head: &RequestHead,
    body: Bytes,
    deadline: Deadline,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match (route, &head.method) {
        (Route::Readyz, _) => {
            service.readiness().await?;
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({"ready": true}),
            ))
        }
        (Route::Plugins, _) => {
            let plugins = service.list_plugins().await?;
            Ok(json_response(StatusCode::OK, &PluginList { plugins }))
        }
        (Route::Plugin(name), &Method::PUT) => {
            let options = deploy_params(head.uri.query())?;
            let key = idempotency_key(head)?;
            let deployed = service
                .deploy(name.to_string(), body, options, key, deadline)
                .await?;
            let status = if deployed.changed {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let index = deployed.log_index;
            Ok(with_index(
                json_response(status, &deployed),
                LOG_INDEX_HEADER,
                index,
            ))
        }
        (Route::Plugin(name), &Method::PATCH) => {
            let options = deploy_params(head.uri.query())?;
            if options == DeployOptions::default() {
                return Err(ApiError::bad_request(
                    "bad-query",
                    "PATCH takes fuel_per_call=N and/or memory_limit_bytes=M",
                ));
            }
            let changed = service
                .set_limits(name.to_string(), options, deadline)
                .await?;
            let index = changed.log_index;
            Ok(with_index(
                json_response(StatusCode::OK, &changed),
                LOG_INDEX_HEADER,
                index,
            ))
        }
        (Route::Plugin(name), &Method::DELETE) => {
            let removed = service.remove(name.to_string(), deadline).await?;
            let index = removed.log_index;
            Ok(with_index(
                json_response(StatusCode::OK, &removed),
                LOG_INDEX_HEADER,
                index,
            ))
        }
        (Route::Plugin(name), _) => Ok(json_response(
            StatusCode::OK,
            &service.get_plugin(name.to_string()).await?,
        )),
        (Route::PluginDryRun(name), _) => {
            let options = deploy_params(head.uri.query())?;
            let queries = sample_queries(head)?;
            let report = service
                .dry_run(name.to_string(), body, options, queries)
                .await?;
            Ok(json_response(StatusCode::OK, &report))
        }
        (Route::PluginApply(name), _) => {
            let with_events = apply_params(head.uri.query())?;
            let key = idempotency_key(head)?;
            let applied = service.apply(name.to_string(), body, key, deadline).await?;
            match applied.result {
                CommandResult::Applied(out) if with_events => Ok(with_index(
                    json_response(StatusCode::OK, &output_with_events(&out)),
                    LOG_INDEX_HEADER,
                    applied.log_index,
                )),
                CommandResult::Applied(out) => Ok(with_index(
                    output_response(out.output),
                    LOG_INDEX_HEADER,
                    applied.log_index,
                )),
                CommandResult::Failed(err) => Ok(with_index(
                    ApiError::Plugin(err).into_response(),
                    LOG_INDEX_HEADER,
                    applied.log_index,
                )),
                other => Err(ApiError::Internal(format!("apply produced {other}"))),
            }
        }
        (Route::PluginQuery(name), _) => {
            let (consistency, min_index) = query_params(head.uri.query())?;
            let out = service
                .query(name.to_string(), body, consistency, min_index, deadline)
                .await?;
            Ok(with_index(
                output_response(out.output),
                APPLIED_INDEX_HEADER,
                out.applied_index,
            ))
        }
        (Route::Cluster, _) => Ok(json_response(
            StatusCode::OK,
            &service.cluster_status().await?,
        )),
        (Route::Members, _) => {
            let req: AddMemberRequest = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(
                    "bad-json",
                    format!(
                        "expected {{\"id\":N,\"addr\":\"host:port\",\"peer_addr\":\"host:port\"}}: {e}"
                    ),
                )
            })?;
            check_new_member(&req)?;
            Ok(json_response(
                StatusCode::OK,
                &service
                    .add_member(req.id, req.addr, req.peer_addr, deadline)
                    .await?,
            ))
        }
        (Route::JoinToken, _) => {
            // An empty body asks for the default lifetime.
            let req: JoinTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
                JoinTokenRequest::default()
            } else {
                serde_json::from_slice(&body).map_err(|e| {
                    ApiError::bad_request("bad-json", format!("expected {{\"ttl_secs\":N}}: {e}"))
                })?
            };
            Ok(json_response(
                StatusCode::OK,
                &service.join_token(req.ttl_secs).await?,
            ))
        }
        (Route::Member(id), _) => {
            let id: u64 = id.parse().map_err(|_| {
                ApiError::bad_request("bad-member-id", format!("member id {id:?} is not a number"))
            })?;
            Ok(json_response(
                StatusCode::OK,
                &service.remove_member(id, deadline).await?,
            ))
        }
        (Route::Settings, &Method::PATCH) => {
            let changes: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(
                    "bad-json",
                    format!("expected a JSON object of settings to change: {e}"),
                )
            })?;
            Ok(json_response(
                StatusCode::OK,
                &service.update_settings(changes, deadline).await?,
            ))
        }
        (Route::Settings, _) => Ok(json_response(StatusCode::OK, &service.settings().await?)),
        (Route::StateHash, _) => Ok(json_response(StatusCode::OK, &service.state_hash().await?)),
        // Served from this node's applied state, never forwarded: any member's
        // applied state is a consistent prefix of the log. A complete body for
        // now (the server has no streaming body type yet). Admin-only once
        // authentication exists.
        (Route::Backup, _) => {
            let backup = service.backup().await?;
            let hash = HeaderValue::from_str(&backup.state_hash)
                .map_err(|_| ApiError::Internal("state hash is not a header value".into()))?;
            let mut resp = with_index(
                Response::new(Full::new(backup.bytes)),
                APPLIED_INDEX_HEADER,
                backup.applied_index,
            );
            resp.headers_mut().insert(STATE_HASH_HEADER, hash);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok(resp)
        }
        (Route::Metrics, _) => {
            let mut resp = Response::new(Full::new(Bytes::from(service.metrics().await?)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                // What prometheus-client writes (the node renders with it).
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            Ok(resp)
        }
        (Route::Tokens | Route::Token(_), _) => {
            crate::api::auth::handle(service, route, head, body, deadline).await
        }
        // The page, healthz and event streams are answered by the server before reaching here.
        (Route::Dashboard | Route::Healthz | Route::PluginEvents(_), _) => Err(ApiError::Internal(
            "route dispatched to the client api".into(),
        )),
    }
}

/// A plugin's output bytes; labelled JSON when they are JSON (our plugins), else opaque.
/// Parses an apply's query string: only `events=true|false`.
pub(crate) fn apply_params(query: Option<&str>) -> Result<bool, ApiError> {
    let mut events = false;
    for pair in query_pairs(query) {
        match pair {
            ("events", "true") => events = true,
            ("events", "false") => events = false,
            (key, value) => {
                return Err(ApiError::bad_request(
                    "bad-query",
                    format!(
                        "unknown query parameter {key}={value:?} (apply takes events=true|false)"
                    ),
                ));
            }
        }
    }
    Ok(events)
}

/// Bytes as JSON: embedded as-is when they are JSON, else `{"hex": "..."}`.
fn bytes_as_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::json!({ "hex": hex::encode(bytes) }))
}

/// `{"output": …, "events": [{"topic", "payload"}]}` for `?events=true`.
fn output_with_events(out: &crate::state::Output) -> serde_json::Value {
    let events: Vec<serde_json::Value> = out
        .events
        .iter()
        .map(|e| serde_json::json!({ "topic": e.topic, "payload": bytes_as_json(&e.payload) }))
        .collect();
    serde_json::json!({ "output": bytes_as_json(&out.output), "events": events })
}

fn output_response(output: Vec<u8>) -> Response<Full<Bytes>> {
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&output).is_ok();
    let mut resp = Response::new(Full::new(Bytes::from(output)));
    let ct = if is_json {
        "application/json"
    } else {
        "application/octet-stream"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn with_index(
    mut resp: Response<Full<Bytes>>,
    name: &'static str,
    index: u64,
) -> Response<Full<Bytes>> {
    resp.headers_mut().insert(name, HeaderValue::from(index));
    resp
}

fn idempotency_key(head: &RequestHead) -> Result<Option<String>, ApiError> {
    let Some(value) = head.headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let bad =
        |why: &str| ApiError::bad_request("bad-idempotency-key", format!("Idempotency-Key {why}"));
    let key = value.to_str().map_err(|_| bad("must be visible ASCII"))?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(bad(&format!(
            "must be 1..={MAX_IDEMPOTENCY_KEY_BYTES} bytes"
        )));
    }
    Ok(Some(key.to_string()))
}

/// Refuses a member no node could be: id 0 (ids start at 1) or an address that is
/// not `host:port` (optionally `http://host:port`), before anything is proposed;
/// a learner added with an unusable address would stay in the membership.
fn check_new_member(req: &AddMemberRequest) -> Result<(), ApiError> {
    if req.id == 0 {
        return Err(ApiError::bad_request(
            "bad-member-id",
            "member ids start at 1",
        ));
    }
    check_member_addr("member address", &req.addr)?;
    check_member_addr("peer address", &req.peer_addr)
}

/// `addr` must be `host:port` (optionally with an `http(s)://` scheme).
fn check_member_addr(what: &str, addr: &str) -> Result<(), ApiError> {
    let bad =
        |why: &str| ApiError::bad_request("bad-member-addr", format!("{what} {addr:?} {why}"));
    let uri = crate::http_client::url(addr, "/").map_err(|_| bad("is not host:port"))?;
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(bad("is not host:port"));
    }
    if authority.port_u16().is_none() {
        return Err(bad("has no port"));
    }
    if uri.path() != "/" || uri.query().is_some() {
        return Err(bad("must be host:port without a path"));
    }
    Ok(())
}

/// The `key=value` pairs of a query string (a bare `key` has an empty value).
pub(crate) fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The sample queries of a dry run: header [`SAMPLE_QUERIES_HEADER`], a JSON
/// array of at most [`MAX_SAMPLE_QUERIES`] values (absent: none).
fn sample_queries(head: &RequestHead) -> Result<Vec<serde_json::Value>, ApiError> {
    let Some(value) = head.headers.get(SAMPLE_QUERIES_HEADER) else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| {
        ApiError::bad_request(
            "bad-sample-queries",
            format!(
                "{SAMPLE_QUERIES_HEADER} must be a JSON array of at most {MAX_SAMPLE_QUERIES} queries: {why}"
            ),
        )
    };
    let queries: Vec<serde_json::Value> =
        serde_json::from_slice(value.as_bytes()).map_err(|_| bad("not a JSON array"))?;
    if queries.len() > MAX_SAMPLE_QUERIES {
        return Err(bad("too many"));
    }
    Ok(queries)
}

/// Parses `fuel_per_call=N` and `memory_limit_bytes=N` of a deploy; anything
/// else is a 400.
pub(crate) fn deploy_params(query: Option<&str>) -> Result<DeployOptions, ApiError> {
    let mut options = DeployOptions::default();
    for (key, value) in query_pairs(query) {
        let slot = match key {
            "fuel_per_call" => &mut options.fuel_per_call,
            "memory_limit_bytes" => &mut options.memory_limit_bytes,
            other => {
                return Err(ApiError::bad_request(
                    "bad-query",
                    format!("unknown query parameter {other:?}"),
                ));
            }
        };
        let n = value
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad-query",
                    format!("{key} must be a positive number, not {value:?}"),
                )
            })?;
        *slot = Some(n);
    }
    Ok(options)
}

/// Parses `consistency=linearizable|stale` and `min_index=N`; anything else is a 400
/// so that a typo (`min-index`) is not silently ignored.
pub(crate) fn query_params(query: Option<&str>) -> Result<(Consistency, Option<u64>), ApiError> {
    let mut consistency = Consistency::default();
    let mut min_index = None;
    for (key, value) in query_pairs(query) {
        match key {
            "consistency" => {
                consistency = match value {
                    "linearizable" => Consistency::Linearizable,
                    "stale" => Consistency::Stale,
                    other => {
                        return Err(ApiError::bad_request(
                            "bad-query",
                            format!("consistency must be linearizable or stale, not {other:?}"),
                        ));
                    }
                }
            }
            "min_index" => {
                let n = value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(
                        "bad-query",
                        format!("min_index must be a number, not {value:?}"),
                    )
                })?;
                min_index = Some(n);
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad-query",
                    format!("unknown query parameter {other:?}"),
                ));
            }
        }
    }
    Ok((consistency, min_index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_embedded_as_json_or_hex() {
        assert!(!apply_params(None).unwrap());
        assert!(apply_params(Some("events=true")).unwrap());
        assert_eq!(
            apply_params(Some("events=yes")).unwrap_err().code(),
            "bad-query"
        );
        let out = crate::state::Output {
            output: br#"{"ok":1}"#.to_vec(),
            events: vec![crate::state::Event {
                topic: "t".into(),
                payload: vec![0xff, 0x00],
            }],
        };
        assert_eq!(
            output_with_events(&out),
            serde_json::json!({"output": {"ok": 1}, "events": [{"topic": "t", "payload": {"hex": "ff00"}}]})
        );
    }

    #[test]
    fn new_members_need_an_id_and_a_host_port_address() {
        let member = |id, addr: &str| AddMemberRequest {
            id,
            addr: addr.into(),
            peer_addr: "127.0.0.1:7171".into(),
        };
        for addr in [
            "127.0.0.1:7071",
            "http://node-2:7070",
            "[::1]:7070",
            "n2:1/",
        ] {
            check_new_member(&member(2, addr)).unwrap_or_else(|e| panic!("{addr}: {e}"));
        }
        assert_eq!(
            check_new_member(&member(0, "127.0.0.1:7071"))
                .unwrap_err()
                .code(),
            "bad-member-id"
        );
        for addr in ["", "n2", "n2:", "n2:x", "n2:1/raft", "a b:1", "u@n2:1"] {
            assert_eq!(
                check_new_member(&member(2, addr)).unwrap_err().code(),
                "bad-member-addr",
                "{addr}"
            );
        }
    }

    #[test]
    fn parses_sample_queries() {
        let head = |value: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            if let Some(v) = value {
                headers.insert(SAMPLE_QUERIES_HEADER, HeaderValue::from_str(v).unwrap());
            }
            RequestHead {
                method: Method::POST,
                uri: "/v1/plugins/a/dry-run".parse().unwrap(),
                headers,
            }
        };
        assert!(sample_queries(&head(None)).unwrap().is_empty());
        assert_eq!(
            sample_queries(&head(Some(r#"[{"get":{}}, 1]"#))).unwrap(),
            vec![serde_json::json!({"get": {}}), serde_json::json!(1)]
        );
        let too_many = serde_json::json!(vec![0; MAX_SAMPLE_QUERIES + 1]).to_string();
        for bad in [r#"{"get":{}}"#, "not json", too_many.as_str()] {
            assert_eq!(
                sample_queries(&head(Some(bad))).unwrap_err().code(),
                "bad-sample-queries",
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_deploy_parameters() {
        assert_eq!(deploy_params(None).unwrap(), DeployOptions::default());
        assert_eq!(
            deploy_params(Some("fuel_per_call=1000&memory_limit_bytes=65536")).unwrap(),
            DeployOptions {
                fuel_per_call: Some(1000),
                memory_limit_bytes: Some(65536)
            }
        );
        for bad in ["fuel_per_call=0", "fuel_per_call=x", "fuel=1"] {
            assert_eq!(
                deploy_params(Some(bad)).unwrap_err().code(),
                "bad-query",
                "{bad}"
            );
        }
    }

    #[test]
    fn parses_query_parameters() {
        assert_eq!(
            query_params(None).unwrap(),
            (Consistency::Linearizable, None)
        );
        assert_eq!(
            query_params(Some("consistency=stale&min_index=42")).unwrap(),
            (Consistency::Stale, Some(42))
        );
        assert_eq!(
            query_params(Some("min_index=7&")).unwrap(),
            (Consistency::Linearizable, Some(7))
        );
        for bad in [
            "consistency=eventual",
            "min_index=-1",
            "min_index=",
            "min-index=3",
        ] {
            assert_eq!(
                query_params(Some(bad)).unwrap_err().code(),
                "bad-query",
                "{bad}"
            );
        }
    }
}
