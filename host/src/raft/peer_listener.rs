//! The peer listener: the one port that serves `/raft/…`, apart from the
//! client port, with its own connection cap, so a flood of clients cannot
//! lock the peers out (and a firewall can tell the two apart).
//!
//! Every request is authenticated before its body is read (`peer_auth`): a
//! request without a valid MAC, with a timestamp outside the window, or
//! seen before is answered `401` and changes nothing. Then the body is read
//! under the endpoint's derived cap, checked against its signed digest, and
//! handed to the Raft RPC handler (`peer_server`) or, for the two join
//! endpoints (`join`), answered here. Replies to authenticated requests are
//! signed. Every refusal is counted by endpoint and reason and logged as a
//! warning, throttled.
//!
//! With `--tls-cert` the port serves TLS like the client port; the MAC is
//! checked either way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::http_serve::{self, Port};
use crate::raft::join::{
    JOIN_MAX_BODY_BYTES, JOIN_TOKEN_EXPIRES_HEADER, JOIN_TOKEN_ID_HEADER, JoinRequest,
    NotLeaderReply, SecretReply,
};
use crate::raft::network::RAFT_CONTENT_TYPE;
use crate::raft::peer_auth::{
    AUTH_FROM_HEADER, AUTH_MAC_HEADER, AuthError, ClusterSecret, MacKey, NONCE_BYTES, ReplayGuard,
    now_ms, sign_reply, verify_request,
};
use crate::raft::peer_server::{RaftEndpoint, RaftRpcHandler};
use crate::raft::peer_stats::PeerRpcStats;

/// The limits of the peer port, from [`Config`].
#[derive(Clone, Debug)]
pub struct PeerLimits {
    /// Request headers (and the TLS handshake) must arrive within this.
    pub header_read_timeout: Duration,
    /// The body of an append, vote or join request must arrive within this.
    pub body_read_timeout: Duration,
    /// A snapshot chunk may take this long (the sender's whole budget).
    pub install_snapshot_timeout: Duration,
    /// Adding a member may take this long (it waits for the node to catch up).
    pub join_timeout: Duration,
    /// Peer connections served at once; more are closed at once.
    pub max_connections: u64,
    /// How long open connections get to finish after shutdown.
    pub shutdown_grace: Duration,
    /// Accepted distance between a request's timestamp and this node's clock.
    pub max_clock_skew_ms: u64,
    /// Most `(timestamp, nonce)` pairs the replay guard remembers.
    pub max_seen_nonces: u64,
}

impl PeerLimits {
    /// The limits `config` sets.
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(config.body_read_timeout_ms),
            install_snapshot_timeout: config.install_snapshot_timeout(),
            join_timeout: Duration::from_millis(config.join_timeout_ms),
            max_connections: config.peer_max_connections,
            shutdown_grace: config.shutdown_grace(),
            max_clock_skew_ms: config.peer_auth_max_clock_skew_ms,
            max_seen_nonces: config.peer_auth_max_seen_nonces,
        }
    }
}

/// Why the cluster did not add a node that asked to join.
#[derive(Debug)]
pub enum JoinRefusal {
    /// This member is not the leader; ask the leader (its peer address, if known).
    NotLeader {
        /// Where the leader's peer listener is.
        leader_peer_addr: Option<String>,
    },
    /// Adding it failed.
    Failed {
        /// The HTTP status to answer with.
        status: StatusCode,
        /// A stable error code.
        code: String,
        /// What happened.
        message: String,
    },
}

/// Adds an authenticated node to the cluster (`POST /raft/join`); the node
/// layer implements it with the same membership change as the client API.
pub trait JoinHandler: Send + Sync + 'static {
    /// Adds `request.id` as a learner, waits for it to catch up and promotes
    /// it, all before `deadline`.
    fn join(
        &self,
        request: JoinRequest,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Result<(), JoinRefusal>> + Send;
}

/// A matched peer path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerRoute {
    Rpc(RaftEndpoint),
    JoinSecret,
    Join,
}

impl PeerRoute {
    fn parse(path: &str) -> Option<Self> {
        let segment = path.strip_prefix("/raft/")?.trim_end_matches('/');
        match segment {
            "join-secret" => Some(Self::JoinSecret),
            "join" => Some(Self::Join),
            other => RaftEndpoint::from_segment(other).map(Self::Rpc),
        }
    }

    /// The label refusals are counted and logged under.
    fn name(self) -> &'static str {
        match self {
            Self::Rpc(endpoint) => endpoint.name(),
            Self::JoinSecret => "join-secret",
            Self::Join => "join",
        }
    }
}

/// A refused request: what the peer is told and what is counted.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn unauthenticated(e: AuthError) -> Self {
        let status = match e {
            AuthError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

/// A reply before signing.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

impl Answer {
    fn json(status: StatusCode, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: Bytes::from(value.to_string()),
        }
    }

    fn refusal(r: &Refusal) -> Self {
        Self::json(
            r.status,
            &serde_json::json!({"error": {"code": r.code, "message": r.message}}),
        )
    }
}

/// The key and nonce of an authenticated request, to sign its reply with.
type Signer = (MacKey, [u8; NONCE_BYTES]);

/// Everything the peer port needs; shared by all its connections.
pub struct PeerServer<H, J> {
    rpc: H,
    joins: J,
    secret: ClusterSecret,
    peer_key: MacKey,
    replay: ReplayGuard,
    limits: PeerLimits,
    tls: Option<TlsAcceptor>,
    stats: Arc<PeerRpcStats>,
}

impl<H: RaftRpcHandler, J: JoinHandler> PeerServer<H, J> {
    /// A peer server handing RPCs to `rpc` and joins to `joins`, accepting
    /// requests signed with `secret`; counts into `stats`.
    pub fn new(
        rpc: H,
        joins: J,
        secret: ClusterSecret,
        limits: PeerLimits,
        stats: Arc<PeerRpcStats>,
    ) -> Self {
        let capacity = usize::try_from(limits.max_seen_nonces).unwrap_or(usize::MAX);
        Self {
            rpc,
            joins,
            peer_key: secret.peer_key(),
            secret,
            replay: ReplayGuard::new(limits.max_clock_skew_ms, capacity),
            limits,
            tls: None,
            stats,
        }
    }

    /// Serves TLS with `acceptor`.
    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// The Raft RPC handler.
    pub fn rpc(&self) -> &H {
        &self.rpc
    }

    /// The counters refusals and connections go to.
    pub fn stats(&self) -> &Arc<PeerRpcStats> {
        &self.stats
    }

    /// Answers one request; never fails (every refusal is a JSON error).
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        remote: Option<SocketAddr>,
    ) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let Some(route) = PeerRoute::parse(path) else {
            let r = Refusal::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no route {path} on the peer port"),
            );
            return respond(Answer::refusal(&r), None);
        };
        if parts.method != Method::POST {
            let r = Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("{} is not allowed on {path}; use POST", parts.method),
            );
            let mut resp = respond(Answer::refusal(&r), None);
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or(path, |pq| pq.as_str())
            .to_string();
        let mut signer = None;
        let answer = match self
            .serve(route, &path_and_query, &parts.headers, body, &mut signer)
            .await
        {
            Ok(answer) => answer,
            Err(r) => {
                let from = parts
                    .headers
                    .get(AUTH_FROM_HEADER)
                    .and_then(|v| v.to_str().ok());
                self.refused(route, from, remote, &r, signer.is_some());
                Answer::refusal(&r)
            }
        };
        respond(answer, signer.as_ref())
    }

    /// Authenticates, reads and answers one request. `signer` is set as soon
    /// as the request is known authentic, so its reply (even a refusal) is signed.
    async fn serve<B>(
        &self,
        route: PeerRoute,
        path: &str,
        headers: &HeaderMap,
        body: B,
        signer: &mut Option<Signer>,
    ) -> Result<Answer, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (key, cap, read_timeout) = match route {
            PeerRoute::Rpc(endpoint) => {
                let timeout = match endpoint {
                    RaftEndpoint::Snapshot => self.limits.install_snapshot_timeout,
                    _ => self.limits.body_read_timeout,
                };
                (self.peer_key.clone(), endpoint.max_body_bytes(), timeout)
            }
            PeerRoute::JoinSecret => (
                self.join_key(headers)?,
                JOIN_MAX_BODY_BYTES,
                self.limits.body_read_timeout,
            ),
            PeerRoute::Join => (
                self.peer_key.clone(),
                JOIN_MAX_BODY_BYTES,
                self.limits.body_read_timeout,
            ),
        };
        let verified =
            verify_request(&key, "POST", path, headers).map_err(Refusal::unauthenticated)?;
        self.replay
            .admit(verified.ts_ms, verified.nonce, now_ms())
            .map_err(Refusal::unauthenticated)?;
        *signer = Some((key.clone(), verified.nonce));
        let body = tokio::time::timeout(read_timeout, read_capped(body, headers, cap))
            .await
            .map_err(|_| {
                Refusal::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    format!(
                        "the body did not arrive within {} ms",
                        read_timeout.as_millis()
                    ),
                )
            })??;
        verified
            .check_body(&body)
            .map_err(Refusal::unauthenticated)?;
        match route {
            PeerRoute::Rpc(endpoint) => {
                let reply = self
                    .rpc
                    .handle(endpoint, body)
                    .await
                    .map_err(|e| Refusal::new(e.status(), e.code(), e.to_string()))?;
                Ok(Answer {
                    status: StatusCode::OK,
                    content_type: RAFT_CONTENT_TYPE,
                    body: Bytes::from(reply),
                })
            }
            PeerRoute::JoinSecret => {
                let wrapped = key.wrap_secret(&verified.nonce, self.secret.bytes());
                tracing::info!(
                    token = headers
                        .get(JOIN_TOKEN_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                    "handing the cluster secret to a node with a valid join token"
                );
                let reply = SecretReply {
                    wrapped_secret: hex::encode(wrapped),
                };
                Ok(Answer::json(StatusCode::OK, &serde_json::json!(reply)))
            }
            PeerRoute::Join => self.join(&body).await,
        }
    }

    /// The key of the join token named in `headers`, if it has not expired.
    fn join_key(&self, headers: &HeaderMap) -> Result<MacKey, Refusal> {
        let field = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(Refusal::unauthenticated(AuthError::Missing(name)))
        };
        let id = field(JOIN_TOKEN_ID_HEADER)?;
        let expires: u64 = field(JOIN_TOKEN_EXPIRES_HEADER)?
            .parse()
            .map_err(|_| Refusal::unauthenticated(AuthError::Missing(JOIN_TOKEN_EXPIRES_HEADER)))?;
        if now_ms() / 1000 > expires {
            return Err(Refusal::unauthenticated(AuthError::TokenExpired {
                expires_unix_secs: expires,
            }));
        }
        Ok(self.secret.join_key(id, expires))
    }

    async fn join(&self, body: &[u8]) -> Result<Answer, Refusal> {
        let request: JoinRequest = serde_json::from_slice(body).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad-json",
                format!("expected {{\"id\",\"addr\",\"peer_addr\"}}: {e}"),
            )
        })?;
        let deadline = tokio::time::Instant::now() + self.limits.join_timeout;
        tracing::info!(id = request.id, addr = %request.addr, peer_addr = %request.peer_addr, "a node asks to join");
        match self.joins.join(request, deadline).await {
            Ok(()) => Ok(Answer::json(
                StatusCode::OK,
                &serde_json::json!({"joined": true}),
            )),
            Err(JoinRefusal::NotLeader { leader_peer_addr }) => {
                let mut value = serde_json::json!(NotLeaderReply { leader_peer_addr });
                value["error"] = serde_json::json!({
                    "code": "not-leader",
                    "message": "this member is not the leader; ask the leader",
                });
                Ok(Answer::json(StatusCode::CONFLICT, &value))
            }
            Err(JoinRefusal::Failed {
                status,
                code,
                message,
            }) => Ok(Answer::json(
                status,
                &serde_json::json!({"error": {"code": code, "message": message}}),
            )),
        }
    }

    /// Counts a refusal and logs it (throttled).
    fn refused(
        &self,
        route: PeerRoute,
        from: Option<&str>,
        remote: Option<SocketAddr>,
        r: &Refusal,
        authenticated: bool,
    ) {
        self.stats.record_refused(route.name(), r.code);
        let from = from.unwrap_or("unknown");
        // An unauthenticated sender picks the id it claims: throttle on what it cannot vary.
        let gate = if authenticated {
            format!("refuse:{}:{}:{from}", route.name(), r.code)
        } else {
            format!("refuse:{}:{}", route.name(), r.code)
        };
        if let Some(suppressed) = self.stats.should_log(&gate) {
            let remote = remote.map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(
                claimed_peer = from,
                %remote,
                authenticated,
                endpoint = route.name(),
                reason = r.code,
                error = %r.message,
                suppressed_since_last = suppressed,
                "refused a request on the peer port"
            );
        }
    }
}

fn respond(answer: Answer, signer: Option<&Signer>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(answer.body.clone()));
    *resp.status_mut() = answer.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    if let Some((key, nonce)) = signer {
        let mac = sign_reply(key, nonce, answer.status.as_u16(), &answer.body);
        if let Ok(value) = HeaderValue::from_str(&mac) {
            resp.headers_mut().insert(AUTH_MAC_HEADER, value);
        }
    }
    resp
}

/// Reads the whole body, refusing more than `limit` bytes (at once when
/// `Content-Length` says so).
async fn read_capped<B>(body: B, headers: &HeaderMap, limit: u64) -> Result<Bytes, Refusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad-body",
            format!("reading the request body: {e}"),
        )),
    }
}

/// Serves `server` on `listener` until `shutdown` turns `true`, then lets the
/// requests in flight finish (bounded by `shutdown_grace`).
pub async fn serve<H, J>(
    listener: TcpListener,
    server: Arc<PeerServer<H, J>>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    H: RaftRpcHandler,
    J: JoinHandler,
{
    let port = Port {
        name: "peer port",
        tls: server.tls.is_some(),
        max_connections: server.limits.max_connections,
        shutdown_grace: server.limits.shutdown_grace,
        stats: server.stats.connections().clone(),
    };
    http_serve::accept_loop(
        listener,
        port,
        shutdown,
        |stream, remote, shutdown| connection(stream, remote, server.clone(), shutdown),
        // Peers open a handful of connections each; closing at once makes the
        // sender back off and retry.
        |stream, _| drop(stream),
        || {},
    )
    .await
}

/// One connection: the TLS handshake (if any), then HTTP/1 until it closes or shutdown.
async fn connection<H, J>(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    server: Arc<PeerServer<H, J>>,
    shutdown: watch::Receiver<bool>,
) where
    H: RaftRpcHandler,
    J: JoinHandler,
{
    let (tls, header_read_timeout) = (server.tls.clone(), server.limits.header_read_timeout);
    let handle = move |req| {
        let server = server.clone();
        async move { server.handle(req, Some(remote)).await }
    };
    http_serve::serve_connection(
        stream,
        remote,
        tls,
        header_read_timeout,
        shutdown,
        "peer port",
        handle,
    )
    .await;
}
