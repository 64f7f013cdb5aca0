//! The hyper 1 server: a small router, capped and timed body reads,
//! per-request deadlines, and forwarding to the leader with safe resends; the
//! accept loop with its connection cap and graceful shutdown is in `accept`.
//!
//! This is the client port: `/v1/…` (JSON to [`ClusterService`]), `/metrics`,
//! `/healthz`, `/readyz` and the status page at `/`; over TLS when the node has
//! a certificate. The Raft RPCs are served on the peer port only (`/raft/…` is
//! a `404` here). Every error is a JSON `{"error":{"code","message"}}` body.
//! Client routes are authenticated before their body is read (`api/auth.rs`).
//! Every answer is a whole body except the event streams
//! (`GET /v1/plugins/{name}/events`, see `api::events`), so only [`Api::handle`]
//! deals in the streaming [`ResponseBody`].
//!
//! Nothing a client does can hold the node: headers (and the TLS handshake)
//! must arrive within `header_read_timeout_ms`, the body within
//! `body_read_timeout_ms`, the answer is due within `request_timeout_ms`
//! (`deploy_timeout_ms` for uploads), and at most `max_connections`
//! connections are served at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Body;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::api::auth;
use crate::api::client_api::{self, IDEMPOTENCY_KEY_HEADER};
use crate::api::dashboard;
use crate::api::error::{ApiError, json_response};
use crate::api::events::{self, EventStreamBody, StreamLimits};
use crate::api::forward::{self, FORWARDED_BY_HEADER, Forwarded};
use crate::api::service::{ClusterService, Deadline, NodeId};
use crate::config::Config;
use crate::http_client::HttpClient;

mod accept;

pub use crate::http_serve::ConnectionStats;
pub use accept::serve;

/// The limits the HTTP layer enforces, taken from [`Config`].
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// This node's id (stamped on forwarded requests to detect loops).
    pub node_id: NodeId,
    /// Cap on request bodies except plugin uploads (those follow the
    /// cluster's `max_plugin_bytes`, asked of the service per request).
    pub max_body_bytes: u64,
    /// Deadline of a client request, counted from when its body has arrived.
    pub request_timeout: Duration,
    /// Deadline of a plugin upload (compiles the component).
    pub deploy_timeout: Duration,
    /// Deadline of `GET /v1/backup` (copies and encodes the whole state).
    pub backup_timeout: Duration,
    /// Deadline of adding a member (waits until it has caught up, maybe by snapshot).
    pub join_timeout: Duration,
    /// A request body must have fully arrived within this time.
    pub body_read_timeout: Duration,
    /// Connections served at once; more are refused with `503 overloaded`.
    pub max_connections: u64,
    /// `Retry-After` of a `503 overloaded`.
    pub overload_retry_after_secs: u64,
    /// How long open connections get to finish after shutdown.
    pub shutdown_grace: Duration,
    /// Bytes of an oversized body read and discarded before the 413.
    pub max_drain_bytes: u64,
    /// Deadline for a client's request headers (a slow-loris guard).
    pub header_read_timeout: Duration,
    /// Event streams served at once; more are refused with `503 overloaded`.
    pub max_event_streams: u64,
    /// Idle time after which an event stream sends a heartbeat comment.
    pub sse_heartbeat_interval: Duration,
    /// Event bytes an event stream reads from the state per step.
    pub sse_batch_max_bytes: u64,
}

impl ApiLimits {
    /// Limits from the node configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            node_id: config.node_id,
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout(),
            deploy_timeout: Duration::from_millis(config.deploy_timeout_ms),
            backup_timeout: Duration::from_millis(config.backup_timeout_ms),
            join_timeout: Duration::from_millis(config.join_timeout_ms),
            body_read_timeout: Duration::from_millis(config.body_read_timeout_ms),
            max_connections: config.max_connections,
            overload_retry_after_secs: config.overload_retry_after_secs,
            shutdown_grace: config.shutdown_grace(),
            max_drain_bytes: config.max_drain_bytes,
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            max_event_streams: config.max_event_streams,
            sse_heartbeat_interval: Duration::from_millis(config.sse_heartbeat_interval_ms),
            sse_batch_max_bytes: config.sse_batch_max_bytes,
        }
    }
}

/// Everything a request handler needs; shared by all connections.
pub struct Api<S> {
    service: S,
    client: HttpClient,
    limits: ApiLimits,
    connections: Arc<ConnectionStats>,
    /// One permit per open event stream (`max_event_streams`).
    event_streams: Arc<Semaphore>,
    /// Turns `true` at shutdown: event streams end instead of holding their
    /// connections open for the whole grace period.
    streams_closing: watch::Sender<bool>,
    tls: Option<TlsAcceptor>,
}

/// The body of every answer: whole, or an event stream.
pub type ResponseBody = Either<Full<Bytes>, EventStreamBody>;

/// A matched path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `GET /`: the status page.
    Dashboard,
    Healthz,
    Readyz,
    Plugins,
    Plugin(&'a str),
    PluginApply(&'a str),
    PluginQuery(&'a str),
    PluginEvents(&'a str),
    PluginDryRun(&'a str),
    Cluster,
    Members,
    JoinToken,
    Member(&'a str),
    Settings,
    StateHash,
    Backup,
    Metrics,
    Tokens,
    Token(&'a str),
}

impl Route<'_> {
    /// Methods this route answers, as sent in `Allow`.
    fn allowed(&self) -> &'static str {
        match self {
            Route::Dashboard
            | Route::Healthz
            | Route::Readyz
            | Route::Plugins
            | Route::Cluster
            | Route::StateHash
            | Route::Backup
            | Route::Metrics
            | Route::PluginEvents(_) => "GET",
            Route::Plugin(_) => "GET, PUT, PATCH, DELETE",
            Route::Member(_) | Route::Token(_) => "DELETE",
            Route::Tokens => "GET, POST",
            Route::Settings => "GET, PATCH",
            Route::PluginApply(_)
            | Route::PluginQuery(_)
            | Route::PluginDryRun(_)
            | Route::Members
            | Route::JoinToken => "POST",
        }
    }
}

/// Matches a path (query string already stripped); trailing slashes are ignored.
pub(crate) fn route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let r = match segments.as_slice() {
        [] => Route::Dashboard,
        ["healthz"] => Route::Healthz,
        ["readyz"] => Route::Readyz,
        ["metrics"] => Route::Metrics,
        ["v1", "plugins"] => Route::Plugins,
        ["v1", "plugins", name] => Route::Plugin(name),
        ["v1", "plugins", name, "apply"] => Route::PluginApply(name),
        ["v1", "plugins", name, "query"] => Route::PluginQuery(name),
        ["v1", "plugins", name, "events"] => Route::PluginEvents(name),
        ["v1", "plugins", name, "dry-run"] => Route::PluginDryRun(name),
        ["v1", "cluster"] => Route::Cluster,
        ["v1", "cluster", "members"] => Route::Members,
        ["v1", "cluster", "members", id] => Route::Member(id),
        ["v1", "cluster", "join-token"] => Route::JoinToken,
        ["v1", "cluster", "settings"] => Route::Settings,
        ["v1", "state-hash"] => Route::StateHash,
        ["v1", "tokens"] => Route::Tokens,
        ["v1", "tokens", id] => Route::Token(id),
        ["v1", "backup"] => Route::Backup,
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

impl<S: ClusterService> Api<S> {
    /// Builds the handler state.
    pub fn new(service: S, client: HttpClient, limits: ApiLimits) -> Self {
        let streams = usize::try_from(limits.max_event_streams)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            service,
            client,
            limits,
            connections: Arc::default(),
            event_streams: Arc::new(Semaphore::new(streams)),
            streams_closing: watch::channel(false).0,
            tls: None,
        }
    }

    /// Serves TLS with `acceptor` (the handshake is bounded by `header_read_timeout`).
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Counts connections into `stats` (shared with whoever renders metrics).
    pub fn with_connection_stats(mut self, stats: Arc<ConnectionStats>) -> Self {
        self.connections = stats;
        self
    }

    /// This server's connection counts.
    pub fn connection_stats(&self) -> &Arc<ConnectionStats> {
        &self.connections
    }

    /// The service behind `/v1/…`.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// Answers one request. Never fails: every error becomes a JSON error response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
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
        // The one streamed answer: served here from applied state, no body to read.
        let watch = match route(head.uri.path()) {
            Some(Route::PluginEvents(name)) if head.method == Method::GET => {
                Some(self.watch_events(name, &head))
            }
            _ => None,
        };
        let answer = match watch {
            Some(Ok(stream)) => return stream.map(Either::Right),
            Some(Err(e)) => Err(e),
            None => self.dispatch(&head, body).await,
        };
        let resp = match answer {
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
        resp.map(Either::Left)
    }

    /// `GET /v1/plugins/{name}/events`, within `max_event_streams`.
    fn watch_events(
        &self,
        name: &str,
        head: &RequestHead,
    ) -> Result<Response<EventStreamBody>, ApiError> {
        // Reading a plugin's events is reading the plugin: a query's permission.
        auth::check(&self.service, &Route::PluginEvents(name), head)?;
        let permit = self
            .event_streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded {
                what: format!(
                    "all {} event streams are in use",
                    self.limits.max_event_streams
                ),
                retry_after_secs: self.limits.overload_retry_after_secs,
            })?;
        let limits = StreamLimits {
            heartbeat: self.limits.sse_heartbeat_interval,
            batch_max_bytes: self.limits.sse_batch_max_bytes,
        };
        let closing = self.streams_closing.subscribe();
        events::open(&self.service, name, head, limits, permit, closing)
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
            Route::PluginDryRun(_) => self.service.max_upload_bytes(),
            _ => self.limits.max_body_bytes,
        };
        let read_timeout = self.limits.body_read_timeout;
        let read = read_body(body, &head.headers, limit, self.limits.max_drain_bytes);
        let body = tokio::time::timeout(read_timeout, read)
            .await
            .map_err(|_| ApiError::BodyTimeout {
                timeout_ms: read_timeout.as_millis() as u64,
            })??;
        match route {
            // Static, holds no cluster data: the page's script asks the API for it.
            Route::Dashboard => Ok(dashboard::page()),
            Route::Healthz => {
                self.service.health().await?;
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ok"}),
                ))
            }
            _ => {
                let budget = match route {
                    Route::Plugin(_) if head.method == Method::PUT => self.limits.deploy_timeout,
                    Route::PluginDryRun(_) => self.limits.deploy_timeout,
                    Route::Members => self.limits.join_timeout,
                    Route::Backup => self.limits.backup_timeout,
                    _ => self.limits.request_timeout,
                };
                let deadline = Deadline::after(budget);
                let answer = self.serve_client(route, head, body, deadline);
                tokio::time::timeout_at(deadline.instant(), answer)
                    .await
                    .unwrap_or_else(|_| Err(deadline_passed(&route, &head.method, budget)))
            }
        }
    }

    /// Runs a `/v1/…` request here, or forwards it to the leader. A hop that
    /// certainly did not reach a leader is sent again once this node sees the
    /// leader change; one that may have reached it only if sending it twice
    /// cannot apply it twice. The caller's deadline bounds all of it.
    async fn serve_client(
        &self,
        route: Route<'_>,
        head: &RequestHead,
        body: Bytes,
        deadline: Deadline,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let resend_safe = resend_is_safe(&route, head);
        // Each pass answers, fails, or waits for the leader to change; the
        // deadline ends the loop.
        loop {
            let leader_addr = match client_api::handle(
                &self.service,
                route,
                head,
                body.clone(),
                deadline,
            )
            .await
            {
                Err(ApiError::ForwardToLeader { leader_addr }) => leader_addr,
                other => return other,
            };
            if head.headers.contains_key(FORWARDED_BY_HEADER) {
                // One hop only. Nothing was proposed here: the forwarding node
                // hears `not-leader` and tries again once it sees the new leader.
                return Err(ApiError::ForwardToLeader { leader_addr });
            }
            let hop = forward::proxy(
                &self.client,
                self.limits.node_id,
                &leader_addr,
                head,
                body.clone(),
                deadline,
            );
            // A leader that died or was cut off keeps the forwarded request
            // hanging; once this node sees another leader (or none), stop waiting.
            let forwarded = tokio::select! {
                hop = hop => hop?,
                () = self.service.leader_moved(leader_addr.clone()) => Forwarded::MaybeDelivered(
                    format!("leader {leader_addr} was replaced while the request was forwarded")
                ),
            };
            match forwarded {
                Forwarded::Answered(resp) => return Ok(resp),
                Forwarded::NotDelivered(why) => {
                    tracing::debug!(%leader_addr, reason = %why, "forward not delivered; retrying once the leader changes");
                    let moved = self.service.leader_moved(leader_addr.clone());
                    if tokio::time::timeout_at(deadline.instant(), moved)
                        .await
                        .is_err()
                    {
                        tracing::debug!(%leader_addr, reason = %why, "no other leader before the deadline");
                        return Err(ApiError::NoLeader);
                    }
                }
                Forwarded::MaybeDelivered(why) if resend_safe => {
                    tracing::debug!(%leader_addr, reason = %why, "forward may have been delivered; resending (idempotent) once the leader changes");
                    self.service.leader_moved(leader_addr).await;
                }
                Forwarded::MaybeDelivered(why) => {
                    return Err(ApiError::ForwardFailed(format!(
                        "{why}; the request may have reached it, so its outcome is unknown: \
                         retry with an Idempotency-Key"
                    )));
                }
            }
        }
    }
}

/// Whether sending the request twice cannot apply it twice: reads, and applies
/// carrying an `Idempotency-Key` (the state machine applies a key once).
fn resend_is_safe(route: &Route<'_>, head: &RequestHead) -> bool {
    match route {
        Route::PluginQuery(_) => true,
        Route::PluginApply(_) => head.headers.contains_key(IDEMPOTENCY_KEY_HEADER),
        _ => head.method == Method::GET,
    }
}

/// The `504` for a request whose deadline passed; a write is told it may have happened.
fn deadline_passed(route: &Route<'_>, method: &Method, budget: Duration) -> ApiError {
    let ms = budget.as_millis();
    let is_write = *method != Method::GET && !matches!(route, Route::PluginQuery(_));
    ApiError::Timeout(if is_write {
        format!(
            "no answer within {ms} ms; the write may still have been applied: \
             retry with the same Idempotency-Key"
        )
    } else {
        format!("no answer within {ms} ms")
    })
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
