//! Raft network client: openraft's `RaftNetworkV2` over HTTP/1 to the peers' `/raft/…` routes.
//!
//! Bodies are [`codec`] frames. A snapshot goes out as a sequence of
//! `POST /raft/snapshot` requests of at most `snapshot_chunk_bytes` each, so no
//! HTTP body ever holds the whole snapshot and each chunk fits the receiver's
//! body cap. The pooled client opens a second connection when the first is
//! busy, so a long snapshot upload does not stall heartbeats behind it.
//!
//! Failures are classified for openraft: "cannot connect" and "peer is up but its
//! Raft is not serving" become `Unreachable` (openraft backs off instead of
//! hammering a dead node); deadlines become `Timeout`; everything else `Network`.

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::errors::{
    ErrorSource, NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes, StorageError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};

use crate::config::Config;
use crate::http_client::{self, ClientError, HttpClient};
use crate::raft::codec::{self, CodecError};
use crate::raft::types::{Node, NodeId, TypeConfig};

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

/// Largest response a Raft RPC can legitimately produce (responses carry log ids, not entries).
const MAX_RPC_RESPONSE_BYTES: usize = 1024 * 1024;

/// Header of one `/raft/snapshot` request; the chunk's data is the frame's tail.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotChunkHeader {
    /// The sending leader's vote; the receiver installs with it.
    pub vote: VoteOf<TypeConfig>,
    /// Chosen by the sender per transfer; with `vote` it names one upload, so a
    /// retried transfer never splices onto the remains of an abandoned one.
    pub transfer_id: u64,
    /// Byte offset of this chunk's data within the snapshot.
    pub offset: u64,
    /// This is the last chunk: after it, install.
    pub done: bool,
    /// The snapshot's metadata, sent with the last chunk.
    pub meta: Option<SnapshotMetaOf<TypeConfig>>,
}

/// Reply to one `/raft/snapshot` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SnapshotChunkReply {
    /// Chunk stored; send the one starting at `next_offset`.
    Received {
        /// Bytes received so far in this upload.
        next_offset: u64,
    },
    /// The transfer is over: either installed, or refused because the receiver
    /// has a higher vote (which `vote` tells the leader).
    Finished(SnapshotResponse<TypeConfig>),
}

/// Snapshot data that can be streamed out: read from the start to EOF.
pub trait SnapshotSource: AsyncRead + AsyncSeek + Unpin + OptionalSend + 'static {}
impl<T: AsyncRead + AsyncSeek + Unpin + OptionalSend + 'static> SnapshotSource for T {}

/// Snapshot data that can be rebuilt from the bytes a follower received.
pub trait SnapshotFromBytes: Sized {
    /// Wraps (or parses) the received bytes, refusing any that the state machine
    /// could not install as `meta`. Blocking: may checksum and decode them.
    fn from_snapshot_bytes(bytes: Vec<u8>, meta: &SnapshotMetaOf<TypeConfig>) -> io::Result<Self>;
}

/// The state machine's snapshot data: its own format, checked up front.
impl SnapshotFromBytes for io::Cursor<Vec<u8>> {
    fn from_snapshot_bytes(bytes: Vec<u8>, meta: &SnapshotMetaOf<TypeConfig>) -> io::Result<Self> {
        crate::raft::state_machine::check_installable(&bytes, meta)?;
        Ok(io::Cursor::new(bytes))
    }
}

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
}

/// How a [`PeerError`] should be reported to openraft.
enum Class {
    Unreachable,
    Timeout,
    Network,
}

impl PeerError {
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
    rpc_timeout: Duration,
    snapshot_chunk_bytes: usize,
    transfer_seq: Arc<AtomicU64>,
    _data: PhantomData<fn() -> D>,
}

impl<D> NetworkFactory<D> {
    /// A factory for node `config.node_id`, sharing `client`'s connection pool.
    pub fn new(config: &Config, client: HttpClient) -> Self {
        // Transfer ids only need to differ between transfers of this process and its
        // restarts; wall-clock nanos as the seed is enough (this is not replicated state).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            node_id: config.node_id,
            client,
            rpc_timeout: config.rpc_timeout(),
            snapshot_chunk_bytes: usize::try_from(config.snapshot_chunk_bytes)
                .unwrap_or(usize::MAX)
                .max(1),
            transfer_seq: Arc::new(AtomicU64::new(seed)),
            _data: PhantomData,
        }
    }
}

impl<D: SnapshotSource> RaftNetworkFactory<TypeConfig> for NetworkFactory<D> {
    type Network = PeerClient<D>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            node_id: self.node_id,
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
            rpc_timeout: self.rpc_timeout,
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            transfer_seq: self.transfer_seq.clone(),
            _data: PhantomData,
        }
    }
}

/// Sends Raft RPCs to one peer.
pub struct PeerClient<D> {
    node_id: NodeId,
    target: NodeId,
    addr: String,
    client: HttpClient,
    rpc_timeout: Duration,
    snapshot_chunk_bytes: usize,
    transfer_seq: Arc<AtomicU64>,
    _data: PhantomData<fn() -> D>,
}

impl<D> PeerClient<D> {
    /// POSTs one frame and decodes the frame that comes back.
    async fn call<Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let uri = http_client::url(&self.addr, path)?;
        let req = http_client::request(
            Method::POST,
            uri,
            Some(RAFT_CONTENT_TYPE),
            Bytes::from(body),
        );
        let resp = http_client::send(&self.client, req, timeout, MAX_RPC_RESPONSE_BYTES).await?;
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
        tracing::debug!(target_node = self.target, addr = %self.addr, ?action, error = %e, "raft rpc failed");
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
        // own deadline; openraft still cancels heartbeats and votes at its hard TTL.
        let timeout = self.rpc_timeout;
        let body = codec::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call(path, body, timeout)
            .await
            .map_err(|e| self.rpc_error(action, timeout, e))
    }
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

impl<D: SnapshotSource> RaftNetworkV2<TypeConfig> for PeerClient<D> {
    type SnapshotData = D;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(RPCTypes::AppendEntries, APPEND_PATH, &rpc).await
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
        // openraft's TTL here is install_snapshot_timeout: one budget for the whole
        // transfer plus the install; aim to fail before its hard limit.
        let budget = option.soft_ttl();
        let deadline = Instant::now() + budget;
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(self.snapshot_chunk_bytes)
            .max(1);
        let transfer_id = self.transfer_seq.fetch_add(1, Ordering::Relaxed);
        let meta = snapshot.meta;
        let mut data = snapshot.snapshot;
        let read_error = |e: io::Error| {
            StreamingError::StorageError(StorageError::read_snapshot(
                Some(meta.signature()),
                ErrorSource::from_error(&e),
            ))
        };
        data.rewind().await.map_err(read_error)?;
        tokio::pin!(cancel);

        let started = Instant::now();
        let mut buf = vec![0u8; chunk_bytes];
        let mut offset = 0u64;
        let mut chunks = 0u64;
        loop {
            let n = read_chunk(&mut data, &mut buf).await.map_err(read_error)?;
            // A short read means EOF; an exactly-full last chunk is followed by an empty `done` one.
            let done = n < chunk_bytes;
            let header = SnapshotChunkHeader {
                vote,
                transfer_id,
                offset,
                done,
                meta: done.then(|| meta.clone()),
            };
            let body = codec::encode_with_tail(&header, &buf[..n])
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(StreamingError::Timeout(
                    self.timeout_error(RPCTypes::InstallSnapshot, budget),
                ));
            }
            let reply = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                reply = self.call::<SnapshotChunkReply>(SNAPSHOT_PATH, body, remaining) => reply,
            };
            chunks += 1;
            match reply.map_err(|e| self.streaming_error(budget, e))? {
                SnapshotChunkReply::Finished(resp) => {
                    tracing::info!(
                        target_node = self.target,
                        bytes = offset + n as u64,
                        chunks,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "snapshot transfer finished"
                    );
                    return Ok(resp);
                }
                SnapshotChunkReply::Received { next_offset } => {
                    let expected = offset + n as u64;
                    if done || next_offset != expected {
                        let e = PeerError::Protocol(format!(
                            "peer acknowledged offset {next_offset}, expected {expected} (done={done})"
                        ));
                        return Err(self.streaming_error(budget, e));
                    }
                    offset = next_offset;
                }
            }
        }
    }
}
