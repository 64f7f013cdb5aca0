//! Raft network client: openraft's `RaftNetworkV2` over HTTP/1 to the peers' `/raft/…` routes.
//!
//! Bodies are [`codec`] frames. Every request is signed with the cluster
//! secret and every `200` reply must carry a valid signature over the
//! request's nonce (`peer_auth`), so neither side acts on forged traffic. A snapshot goes out in chunks (the child
//! module `snapshot`). The pooled client opens a second connection when the first is
//! busy, so a long snapshot upload does not stall heartbeats behind it.
//!
//! Failures are classified for openraft: "cannot connect" and "peer is up but its
//! Raft is not serving" become `Unreachable` (openraft backs off instead of
//! hammering a dead node); deadlines become `Timeout`; everything else `Network`.
//! Every failure is counted per peer; a peer's refusal (an HTTP error answer)
//! is also logged as a warning, throttled per peer, because openraft resends
//! the same request for as long as it is refused.
//!
//! An append-entries batch larger than `max_append_bytes` is cut to its
//! longest prefix that fits (at least one entry) and reported to openraft as
//! `PartialSuccess`, so it sends the rest next; each request's deadline grows
//! with its size (`rpc_timeout_per_mib_ms`).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::http_client::{self, ClientError, HttpClient};
use crate::raft::codec::{self, CodecError};
use crate::raft::peer_auth::{self, AuthError, ClusterSecret, MacKey};
pub use crate::raft::peer_stats::PeerRpcStats;

mod snapshot;
use crate::raft::types::{Node, NodeId, TypeConfig};
pub use snapshot::{SnapshotChunkHeader, SnapshotChunkReply, SnapshotFromBytes, SnapshotSource};

/// Route for append-entries (also heartbeats).
pub const APPEND_PATH: &str = "/raft/append";
/// Route for request-vote.
pub const VOTE_PATH: &str = "/raft/vote";
/// Route for pre-vote (asks "would you vote for me" without changing terms).
pub const PRE_VOTE_PATH: &str = "/raft/pre-vote";
/// Route for one snapshot chunk.
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Content type of every `/raft/…` request and success response.
pub const RAFT_CONTENT_TYPE: &str = "application/x-cairn-raft";
/// Request header naming the sending node's id (covered by the MAC), so a
/// receiver that refuses a request can say whose it was.
pub const RAFT_FROM_HEADER: &str = peer_auth::AUTH_FROM_HEADER;

const MIB: u64 = 1024 * 1024;

/// Largest response a Raft RPC can legitimately produce (responses carry log ids, not entries).
const MAX_RPC_RESPONSE_BYTES: usize = 1024 * 1024;

/// What went wrong talking to one peer, before it is classified for openraft.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("peer answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("peer response: {0}")]
    Codec(#[from] CodecError),
    #[error("snapshot protocol: {0}")]
    Protocol(String),
    #[error("peer reply is not authentic: {0}")]
    Unauthentic(AuthError),
}

/// How a [`PeerError`] should be reported to openraft.
enum Class {
    Unreachable,
    Timeout,
    Network,
}

impl PeerError {
    /// The `reason` label this failure is counted under.
    fn reason(&self) -> &'static str {
        match self {
            PeerError::Status { .. } => "refused",
            PeerError::Client(ClientError::Timeout { .. }) => "timeout",
            PeerError::Client(ClientError::Connect { .. } | ClientError::InvalidUrl { .. }) => {
                "unreachable"
            }
            PeerError::Client(_) => "network",
            PeerError::Codec(_) | PeerError::Protocol(_) | PeerError::Unauthentic(_) => "bad-reply",
        }
    }

    fn class(&self) -> Class {
        match self {
            PeerError::Client(ClientError::Connect { .. } | ClientError::InvalidUrl { .. }) => {
                Class::Unreachable
            }
            PeerError::Client(ClientError::Timeout { .. }) => Class::Timeout,
            // 503 means the peer's HTTP is up but its Raft is starting or stopping: back off.
            PeerError::Status { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                Class::Unreachable
            }
            _ => Class::Network,
        }
    }
}

/// Creates one [`PeerClient`] per target; generic over the state machine's snapshot data `D`.
pub struct NetworkFactory<D> {
    node_id: NodeId,
    client: HttpClient,
    key: MacKey,
    rpc_timeout: Duration,
    rpc_timeout_per_mib: Duration,
    max_append_bytes: u64,
    snapshot_chunk_bytes: usize,
    transfer_seq: Arc<AtomicU64>,
    stats: Arc<PeerRpcStats>,
    _data: PhantomData<fn() -> D>,
}

impl<D> NetworkFactory<D> {
    /// A factory for node `config.node_id`, sharing `client`'s connection pool
    /// and signing with the cluster `secret`.
    pub fn new(config: &Config, client: HttpClient, secret: &ClusterSecret) -> Self {
        // Transfer ids only need to differ between transfers of this process and its
        // restarts; wall-clock nanos as the seed is enough (this is not replicated state).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            node_id: config.node_id,
            client,
            key: secret.peer_key(),
            rpc_timeout: config.rpc_timeout(),
            rpc_timeout_per_mib: config.rpc_timeout_per_mib(),
            max_append_bytes: config.max_append_bytes,
            snapshot_chunk_bytes: usize::try_from(config.snapshot_chunk_bytes)
                .unwrap_or(usize::MAX)
                .max(1),
            transfer_seq: Arc::new(AtomicU64::new(seed)),
            stats: Arc::default(),
            _data: PhantomData,
        }
    }

    /// Counts into `stats` (shared with the node's metrics and RPC handlers).
    pub fn with_stats(mut self, stats: Arc<PeerRpcStats>) -> Self {
        self.stats = stats;
        self
    }
}

impl<D: SnapshotSource> RaftNetworkFactory<TypeConfig> for NetworkFactory<D> {
    type Network = PeerClient<D>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            node_id: self.node_id,
            target,
            addr: node.peer_addr.clone(),
            client: self.client.clone(),
            key: self.key.clone(),
            rpc_timeout: self.rpc_timeout,
            rpc_timeout_per_mib: self.rpc_timeout_per_mib,
            max_append_bytes: self.max_append_bytes,
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            transfer_seq: self.transfer_seq.clone(),
            stats: self.stats.clone(),
            _data: PhantomData,
        }
    }
}

/// Sends Raft RPCs to one peer.
pub struct PeerClient<D> {
    node_id: NodeId,
    target: NodeId,
    /// The peer's listener (its `peer_addr`).
    addr: String,
    client: HttpClient,
    key: MacKey,
    rpc_timeout: Duration,
    rpc_timeout_per_mib: Duration,
    max_append_bytes: u64,
    snapshot_chunk_bytes: usize,
    transfer_seq: Arc<AtomicU64>,
    stats: Arc<PeerRpcStats>,
    _data: PhantomData<fn() -> D>,
}

/// The log-throttling key of refusals by `peer`.
fn refusal_gate(peer: NodeId) -> String {
    format!("send-refused:{peer}")
}

/// How many of the leading entries, with encoded sizes `sizes`, fit in
/// `target_bytes`: at least one (an entry larger than the target travels
/// alone), at most all of them.
fn fitting_prefix(sizes: impl IntoIterator<Item = u64>, target_bytes: u64) -> usize {
    let mut total = 0u64;
    let mut n = 0;
    for size in sizes {
        total = total.saturating_add(size);
        if n > 0 && total > target_bytes {
            break;
        }
        n += 1;
    }
    n
}

impl<D> PeerClient<D> {
    /// POSTs one signed frame, checks the reply's signature and decodes it.
    async fn call<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let uri = http_client::url(&self.addr, path)?;
        let signed = peer_auth::sign_request(
            &self.key,
            "POST",
            path,
            &self.node_id.to_string(),
            &body,
            peer_auth::now_ms(),
        )
        .map_err(PeerError::Unauthentic)?;
        let mut req = http_client::request(
            Method::POST,
            uri,
            Some(RAFT_CONTENT_TYPE),
            Bytes::from(body),
        );
        for (name, value) in &signed.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                req.headers_mut().insert(*name, value);
            }
        }
        req.headers_mut()
            .insert(RAFT_FROM_HEADER, HeaderValue::from(self.node_id));
        let started = std::time::Instant::now();
        let resp = http_client::send(&self.client, req, timeout, MAX_RPC_RESPONSE_BYTES).await?;
        self.stats.record_rpc(path, started.elapsed().as_secs_f64());
        if resp.status() != StatusCode::OK {
            let message = String::from_utf8_lossy(resp.body())
                .chars()
                .take(512)
                .collect();
            return Err(PeerError::Status {
                status: resp.status(),
                message,
            });
        }
        peer_auth::verify_reply(&self.key, &signed.nonce, 200, resp.headers(), resp.body())
            .map_err(PeerError::Unauthentic)?;
        Ok(codec::decode(resp.body())?)
    }

    fn timeout_error(&self, action: RPCTypes, timeout: Duration) -> Timeout<TypeConfig> {
        Timeout {
            action,
            id: self.node_id,
            target: self.target,
            timeout,
        }
    }

    fn rpc_error(&self, action: RPCTypes, timeout: Duration, e: PeerError) -> RPCError<TypeConfig> {
        let reason = e.reason();
        self.stats.record_error(self.target, reason);
        let gate = refusal_gate(self.target);
        match (&e, reason) {
            (PeerError::Status { status, .. }, "refused") => match self.stats.should_log(&gate) {
                Some(suppressed) => tracing::warn!(
                    peer = self.target,
                    addr = %self.addr,
                    ?action,
                    status = status.as_u16(),
                    error = %e,
                    suppressed_since_last = suppressed,
                    "peer refused a raft rpc; openraft will resend it"
                ),
                None => {
                    tracing::debug!(peer = self.target, ?action, error = %e, "peer refused a raft rpc")
                }
            },
            _ => {
                tracing::debug!(peer = self.target, addr = %self.addr, ?action, error = %e, "raft rpc failed")
            }
        }
        match e.class() {
            Class::Unreachable => RPCError::Unreachable(Unreachable::new(&e)),
            Class::Timeout => RPCError::Timeout(self.timeout_error(action, timeout)),
            Class::Network => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn streaming_error(&self, timeout: Duration, e: PeerError) -> StreamingError<TypeConfig> {
        match self.rpc_error(RPCTypes::InstallSnapshot, timeout, e) {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            RPCError::Network(n) => StreamingError::Network(n),
            RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
        }
    }

    async fn unary<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: RPCTypes,
        path: &str,
        rpc: &Req,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        // openraft hands us heartbeat_interval as the TTL even for replication batches,
        // which is too tight for a large batch plus fsync on a loaded box. We use our
        // own deadline, longer for a larger body; openraft still cancels heartbeats
        // and votes at its hard TTL.
        let body = codec::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mib = (body.len() as u64).div_ceil(MIB);
        let timeout = self.rpc_timeout + self.rpc_timeout_per_mib.saturating_mul(mib as u32);
        self.call(path, body, timeout)
            .await
            .map_err(|e| self.rpc_error(action, timeout, e))
    }
}

impl<D: SnapshotSource> RaftNetworkV2<TypeConfig> for PeerClient<D> {
    type SnapshotData = D;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let total = rpc.entries.len();
        let mut sizes = Vec::with_capacity(total);
        for entry in &rpc.entries {
            sizes.push(
                codec::encoded_len(entry).map_err(|e| RPCError::Network(NetworkError::new(&e)))?,
            );
        }
        let keep = fitting_prefix(sizes.iter().copied(), self.max_append_bytes);
        if keep < total {
            self.stats.record_split();
            tracing::debug!(
                peer = self.target,
                sending = keep,
                of = total,
                bytes = sizes[..keep].iter().sum::<u64>(),
                "append-entries batch over max_append_bytes; sending a prefix"
            );
            rpc.entries.truncate(keep);
        }
        let last_sent = rpc.entries.last().map(|e| e.log_id);
        let resp: AppendEntriesResponse<TypeConfig> = self
            .unary(RPCTypes::AppendEntries, APPEND_PATH, &rpc)
            .await?;
        // The follower took the prefix: tell openraft how far, so it sends the rest.
        Ok(match resp {
            AppendEntriesResponse::Success if keep < total => {
                AppendEntriesResponse::PartialSuccess(last_sent)
            }
            other => other,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(RPCTypes::Vote, VOTE_PATH, &rpc).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(RPCTypes::Vote, PRE_VOTE_PATH, &rpc).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, D>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.stream_snapshot(vote, snapshot, cancel, option).await
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::Vote;
    use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
    use openraft::raft::VoteRequest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{NetworkFactory, PeerRpcStats, fitting_prefix, refusal_gate};
    use crate::config::Config;
    use crate::raft::peer_auth::ClusterSecret;
    use crate::raft::types::{Node, TypeConfig};

    /// A peer that answers every request with `413` and closes the connection.
    async fn refusing_peer() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut buf).await;
                    let body = r#"{"error":{"code":"body-too-large","message":"no"}}"#;
                    let resp = format!(
                        "HTTP/1.1 413 Payload Too Large\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_refusal_is_counted_per_peer_and_its_log_throttled() {
        let stats = Arc::new(PeerRpcStats::default());
        let mut factory = NetworkFactory::<Cursor<Vec<u8>>>::new(
            &Config::default(),
            crate::http_client::new_client(),
            &ClusterSecret::generate().unwrap(),
        )
        .with_stats(stats.clone());
        let addr = refusing_peer().await;
        let mut peer = factory.new_client(9, &Node::new("", addr)).await;
        for _ in 0..3 {
            let req = VoteRequest::<TypeConfig> {
                vote: Vote::new(1, 1),
                last_log_id: None,
                leadership_transfer: false,
            };
            let res = peer.vote(req, RPCOption::new(Duration::from_secs(5))).await;
            assert!(res.is_err(), "a refusal is an error for openraft");
        }
        assert_eq!(stats.errors(), [((9, "refused"), 3)]);
        // The first refusal was logged; the next ones within the interval are held back.
        assert_eq!(stats.should_log(&refusal_gate(9)), None);
    }

    #[test]
    fn the_prefix_fits_the_target_and_is_never_empty() {
        assert_eq!(fitting_prefix([], 10), 0);
        assert_eq!(fitting_prefix([4, 4, 4], 10), 2);
        assert_eq!(fitting_prefix([4, 6, 4], 10), 2);
        assert_eq!(fitting_prefix([4, 4, 4], 12), 3);
        // One entry larger than the target still travels, alone.
        assert_eq!(fitting_prefix([50, 1], 10), 1);
        // A large entry behind small ones waits for the next request.
        assert_eq!(fitting_prefix([1, 1, 50, 1], 10), 2);
    }
}
