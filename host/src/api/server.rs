//! The hyper 1 server: accept loop with graceful shutdown, a small router, capped body reads.
//!
//! One port serves everything: `/raft/…` (binary frames to [`RaftRpcHandler`]),
//! `/v1/…` (JSON to [`ClusterService`]), `/healthz` and `/readyz`. Every error
//! is a JSON `{"error":{"code","message"}}` body. Client routes are
//! authenticated before their body is read (`api/auth.rs`).

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::auth;
use crate::api::client_api;
use crate::api::error::{ApiError, json_response};
use crate::api::forward;
use crate::api::raft_rpc::{RaftEndpoint, RaftRpcHandler};
use crate::api::service::ClusterService;
use crate::config::Config;
use crate::http_client::HttpClient;
use crate::raft::network::RAFT_CONTENT_TYPE;
use crate::raft::types::NodeId;

/// The limits the HTTP layer enforces, taken from [`Config`].
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// This node's id (stamped on forwarded requests to detect loops).
    pub node_id: NodeId,
    /// Cap on request bodies except plugin uploads (those follow the
    /// cluster's `max_plugin_bytes`, asked of the service per request).
    pub max_body_bytes: u64,
    /// Deadline for proxying a request to the leader.
    pub forward_timeout: Duration,
    /// How long open connections get to finish after shutdown.
    pub shutdown_grace: Duration,
    /// Bytes of an oversized body read and discarded before the 413.
    pub max_drain_bytes: u64,
    /// Deadline for a client's request headers (a slow-loris guard).
    pub header_read_timeout: Duration,
}

impl ApiLimits {
    /// Limits from the node configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            node_id: config.node_id,
            max_body_bytes: config.max_body_bytes,
            forward_timeout: config.forward_timeout(),
            shutdown_grace: config.shutdown_grace(),
            max_drain_bytes: config.max_drain_bytes,
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
        }
    }
}

/// Everything a request handler needs; shared by all connections.
pub struct Api<S, R> {
    service: S,
    raft: R,
    client: HttpClient,
    limits: ApiLimits,
}

/// A matched path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Healthz,
    Readyz,
    Raft(RaftEndpoint),
    Plugins,
    Plugin(&'a str),
    PluginApply(&'a str),
    PluginQuery(&'a str),
    Cluster,
    Members,
    Member(&'a str),
    Settings,
    StateHash,
    Metrics,
    Tokens,
    Token(&'a str),
}

impl Route<'_> {
    /// Methods this route answers, as sent in `Allow`.
    fn allowed(&self) -> &'static str {
        match self {
            Route::Healthz
            | Route::Readyz
            | Route::Plugins
            | Route::Cluster
            | Route::StateHash
            | Route::Metrics => "GET",
            Route::Plugin(_) => "GET, PUT, DELETE",
            Route::Member(_) | Route::Token(_) => "DELETE",
            Route::Tokens => "GET, POST",
            Route::Settings => "GET, PATCH",
            Route::Raft(_) | Route::PluginApply(_) | Route::PluginQuery(_) | Route::Members => {
                "POST"
            }
        }
    }
}

/// Matches a path (query string already stripped); trailing slashes are ignored.
pub(crate) fn route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let r = match segments.as_slice() {
        ["healthz"] => Route::Healthz,
        ["readyz"] => Route::Readyz,
        ["metrics"] => Route::Metrics,
        ["raft", endpoint] => Route::Raft(RaftEndpoint::from_segment(endpoint)?),
        ["v1", "plugins"] => Route::Plugins,
        ["v1", "plugins", name] => Route::Plugin(name),
        ["v1", "plugins", name, "apply"] => Route::PluginApply(name),
        ["v1", "plugins", name, "query"] => Route::PluginQuery(name),
        ["v1", "cluster"] => Route::Cluster,
        ["v1", "cluster", "members"] => Route::Members,
        ["v1", "cluster", "members", id] => Route::Member(id),
        ["v1", "cluster", "settings"] => Route::Settings,
        ["v1", "state-hash"] => Route::StateHash,
        ["v1", "tokens"] => Route::Tokens,
        ["v1", "tokens", id] => Route::Token(id),
        _ => return None,
    };
    Some(r)
}

/// The parts of a request the handlers look at (the body travels separately).
pub(crate) struct RequestHead {
    pub method: Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
}

impl<S: ClusterService, R: RaftRpcHandler> Api<S, R> {
    /// Builds the handler state.
    pub fn new(service: S, raft: R, client: HttpClient, limits: ApiLimits) -> Self {
        Self {
            service,
            raft,
            client,
            limits,
        }
    }

    /// The service behind `/v1/…`.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The handler behind `/raft/…`.
    pub fn raft(&self) -> &R {
        &self.raft
    }

    /// Answers one request. Never fails: every error becomes a JSON error response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let head = RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
        };
        let resp = match self.dispatch(&head, body).await {
            Ok(resp) => resp,
            Err(e) => {
                if e.status().is_server_error() && e.logged_per_request() {
                    tracing::warn!(method = %head.method, path = head.uri.path(), code = e.code(), error = %e, "request failed");
                } else {
                    tracing::debug!(method = %head.method, path = head.uri.path(), code = e.code(), error = %e, "request rejected");
                }
                e.into_response()
            }
        };
        tracing::trace!(method = %head.method, path = head.uri.path(), status = resp.status().as_u16(), "request");
        resp
    }

    async fn dispatch<B>(
        &self,
        head: &RequestHead,
        body: B,
    ) -> Result<Response<Full<Bytes>>, ApiError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = head.uri.path();
        let route = route(path).ok_or_else(|| ApiError::NotFound {
            path: path.to_string(),
        })?;
        if !method_allowed(&route, &head.method) {
            return Err(ApiError::MethodNotAllowed {
                method: head.method.to_string(),
                allowed: route.allowed(),
            });
        }
        // Who is asking and may they: decided before the body is read (api/auth.rs).
        auth::check(&self.service, &route, head)?;
        let limit = match route {
            Route::Plugin(_) if head.method == Method::PUT => self.service.max_upload_bytes(),
            _ => self.limits.max_body_bytes,
        };
        let body = read_body(body, &head.headers, limit, self.limits.max_drain_bytes).await?;
        match route {
            Route::Healthz => {
                self.service.health().await?;
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ok"}),
                ))
            }
            Route::Raft(endpoint) => {
                let reply = self.raft.handle(endpoint, body).await?;
                let mut resp = Response::new(Full::new(Bytes::from(reply)));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(RAFT_CONTENT_TYPE),
                );
                Ok(resp)
            }
            _ => match client_api::handle(&self.service, route, head, body.clone()).await {
                Err(ApiError::ForwardToLeader { leader_addr }) => {
                    let proxied =
                        forward::proxy(&self.client, &self.limits, &leader_addr, head, body);
                    // A leader that died or was cut off keeps the forwarded request
                    // hanging until the forward timeout; once this node sees another
                    // leader (or none), answer 503 so the client retries promptly.
                    // The request is not re-sent: it may have reached the old leader.
                    tokio::select! {
                        resp = proxied => resp,
                        () = self.service.leader_moved(leader_addr.clone()) => {
                            Err(ApiError::ForwardFailed(format!(
                                "leader {leader_addr} was replaced while the request was \
                                 forwarded; its outcome is unknown, retry with an Idempotency-Key"
                            )))
                        }
                    }
                }
                other => other,
            },
        }
    }
}

fn method_allowed(route: &Route<'_>, method: &Method) -> bool {
    route.allowed().split(", ").any(|m| m == method.as_str())
}

/// Reads the whole body, refusing more than `limit_bytes` (decided early, from
/// `Content-Length`, when the client announces it).
async fn read_body<B>(
    body: B,
    headers: &HeaderMap,
    limit_bytes: u64,
    max_drain_bytes: u64,
) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let too_large = announced.is_some_and(|len| len > limit_bytes);
    if too_large && (expects_continue || announced.is_some_and(|len| len > max_drain_bytes)) {
        // The client waits for our answer before sending (or the body is
        // too big to be worth draining): answer from the headers alone.
        return Err(ApiError::BodyTooLarge { limit_bytes });
    }
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("bad-body", format!("reading request body: {}", e.into()))
        })?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > max_drain_bytes {
            break;
        }
        if seen <= limit_bytes {
            buf.extend_from_slice(data);
        }
    }
    if too_large || seen > limit_bytes {
        return Err(ApiError::BodyTooLarge { limit_bytes });
    }
    Ok(buf.freeze())
}

/// Resolves when `shutdown` turns `true` or its sender is dropped.
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves `api` on `listener` until `shutdown` turns `true`, then stops accepting,
/// lets in-flight requests finish (bounded by `shutdown_grace`) and returns.
pub async fn serve<S, R>(
    listener: TcpListener,
    api: Arc<Api<S, R>>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: ClusterService,
    R: RaftRpcHandler,
{
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "http server listening");
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, peer, api.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown_signalled(&mut shutdown) => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(addr = %local, open = connections.len(), "http server shutting down");
    let drained = tokio::time::timeout(api.limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "closing connections that outlived the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn serve_connection<S, R>(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    api: Arc<Api<S, R>>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: ClusterService,
    R: RaftRpcHandler,
{
    let header_read_timeout = api.limits.header_read_timeout;
    let service = service_fn(move |req| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(api.handle(req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown_signalled(&mut shutdown) => {
            // Finish the request in flight (if any), then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
