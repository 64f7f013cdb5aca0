//! Server side of the Raft RPCs: decode a frame, hand it to openraft, encode
//! the reply. The peer listener (`peer_listener`) authenticates each request
//! and reads its body before it gets here; the sending side is `network`.
//!
//! Snapshot chunks are assembled in memory, one upload at a time, keyed by the
//! leader's vote and the sender's transfer id. A new transfer (offset 0)
//! replaces any partial one, an upload idle for longer than the install budget
//! is dropped, and the total size is capped, so a dead or confused sender can
//! never pin unbounded memory.
//!
//! Body caps are derived, not configured (see `config::PEER_RPC_MAX_BODY_BYTES`):
//! a follower accepts any entry the cluster can commit. The listener counts
//! every refused request by endpoint and reason and logs it (throttled).

use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use openraft::alias::VoteOf;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, SnapshotResponse, VoteRequest};
use openraft::storage::RaftStateMachine;

use crate::config::{Config, PEER_RPC_MAX_BODY_BYTES, SNAPSHOT_RPC_MAX_BODY_BYTES};
use crate::raft::codec::{self, CodecError};
use crate::raft::network::{SnapshotChunkHeader, SnapshotChunkReply, SnapshotFromBytes};
use crate::raft::peer_checks::{self, ImpossibleFrame};
use crate::raft::types::{NodeId, TypeConfig};

/// The four `/raft/…` endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftEndpoint {
    /// `POST /raft/append`
    Append,
    /// `POST /raft/vote`
    Vote,
    /// `POST /raft/pre-vote`
    PreVote,
    /// `POST /raft/snapshot`
    Snapshot,
}

impl RaftEndpoint {
    /// Maps the segment after `/raft/` to an endpoint.
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "append" => Some(Self::Append),
            "vote" => Some(Self::Vote),
            "pre-vote" => Some(Self::PreVote),
            "snapshot" => Some(Self::Snapshot),
            _ => None,
        }
    }

    /// The path segment, as used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Vote => "vote",
            Self::PreVote => "pre-vote",
            Self::Snapshot => "snapshot",
        }
    }

    /// Largest body this endpoint accepts: derived from what any cluster can
    /// commit or any node can send, never from a node's own flags.
    pub fn max_body_bytes(self) -> u64 {
        match self {
            Self::Append | Self::Vote | Self::PreVote => PEER_RPC_MAX_BODY_BYTES,
            Self::Snapshot => SNAPSHOT_RPC_MAX_BODY_BYTES,
        }
    }
}

/// A failed Raft RPC on the receiving side.
#[derive(Debug, thiserror::Error)]
pub enum RaftRpcError {
    /// The body is not a valid frame for this endpoint.
    #[error("malformed raft rpc body: {0}")]
    Decode(CodecError),
    /// The frame decodes but no correct peer sends it.
    #[error("impossible raft rpc: {0}")]
    Impossible(ImpossibleFrame),
    /// Our own reply could not be encoded (a bug).
    #[error("encoding raft rpc reply: {0}")]
    Encode(CodecError),
    /// Raft refused or is shutting down.
    #[error("raft: {0}")]
    Raft(String),
    /// A chunk that does not continue the current upload.
    #[error(
        "snapshot chunk out of order: expected offset {expected} of the current upload, got {got}"
    )]
    SnapshotOutOfOrder {
        /// Offset we would accept (0 when there is no upload in progress).
        expected: u64,
        /// Offset received.
        got: u64,
    },
    /// The snapshot is bigger than `max_snapshot_bytes`.
    #[error("snapshot exceeds {limit_bytes} bytes")]
    SnapshotTooLarge {
        /// The cap.
        limit_bytes: u64,
    },
    /// The assembled snapshot is unusable (missing metadata, inconsistent, unparsable).
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
}

impl RaftRpcError {
    /// The stable error code the peer is answered with (and the refusal is counted under).
    pub fn code(&self) -> &'static str {
        match self {
            RaftRpcError::Decode(_) => "bad-raft-body",
            RaftRpcError::Impossible(_) => "impossible-raft-rpc",
            RaftRpcError::InvalidSnapshot(_) => "invalid-snapshot",
            RaftRpcError::Encode(_) => "internal",
            RaftRpcError::Raft(_) => "unavailable",
            RaftRpcError::SnapshotOutOfOrder { .. } => "snapshot-out-of-order",
            RaftRpcError::SnapshotTooLarge { .. } => "body-too-large",
        }
    }

    /// The HTTP status of the answer. `503` tells the sender this node's Raft
    /// is not serving (it backs off); the rest are the request's fault.
    pub fn status(&self) -> StatusCode {
        match self {
            RaftRpcError::Decode(_)
            | RaftRpcError::Impossible(_)
            | RaftRpcError::InvalidSnapshot(_) => StatusCode::BAD_REQUEST,
            RaftRpcError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RaftRpcError::Raft(_) => StatusCode::SERVICE_UNAVAILABLE,
            RaftRpcError::SnapshotOutOfOrder { .. } => StatusCode::CONFLICT,
            RaftRpcError::SnapshotTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// What the peer listener calls for an authenticated `/raft/…` request;
/// independent of the state machine type.
pub trait RaftRpcHandler: Send + Sync + 'static {
    /// Handles one request body; returns the reply frame.
    fn handle(
        &self,
        endpoint: RaftEndpoint,
        body: Bytes,
    ) -> impl Future<Output = Result<Vec<u8>, RaftRpcError>> + Send;
}

/// A partially received snapshot.
struct Upload {
    vote: VoteOf<TypeConfig>,
    transfer_id: u64,
    data: Vec<u8>,
    last_chunk_at: Instant,
}

/// The `/raft/…` handlers for a node whose state machine is `SM`.
pub struct RaftRpc<SM: RaftStateMachine<TypeConfig>> {
    raft: openraft::Raft<TypeConfig, SM>,
    /// This node: no peer's frame may claim to come from it.
    node_id: NodeId,
    /// At most one upload: a follower only ever receives from the current leader.
    upload: Mutex<Option<Upload>>,
    max_snapshot_bytes: u64,
    /// An upload with no chunk for this long is abandoned.
    stale_upload_after: Duration,
    chunks_received: AtomicU64,
    snapshots_installed: AtomicU64,
}

impl<SM> RaftRpc<SM>
where
    SM: RaftStateMachine<TypeConfig>,
    SM::SnapshotData: SnapshotFromBytes + Send + 'static,
{
    /// Handlers for `raft`, limits from `config`.
    pub fn new(raft: openraft::Raft<TypeConfig, SM>, config: &Config) -> Self {
        Self {
            raft,
            node_id: config.node_id,
            upload: Mutex::new(None),
            max_snapshot_bytes: config.max_snapshot_bytes,
            stale_upload_after: config.install_snapshot_timeout(),
            chunks_received: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
        }
    }

    /// Snapshot chunks accepted since start (for tests and metrics).
    pub fn snapshot_chunks_received(&self) -> u64 {
        self.chunks_received.load(Ordering::Relaxed)
    }

    /// Snapshots handed to openraft since start.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    async fn append(&self, body: &[u8]) -> Result<Vec<u8>, RaftRpcError> {
        let req: AppendEntriesRequest<TypeConfig> =
            codec::decode(body).map_err(RaftRpcError::Decode)?;
        let committed = self.raft.metrics().borrow_watched().local_committed;
        peer_checks::check_append(&req, self.node_id, committed.as_ref())
            .map_err(RaftRpcError::Impossible)?;
        let resp = self
            .raft
            .append_entries(req)
            .await
            .map_err(|e| RaftRpcError::Raft(e.to_string()))?;
        codec::encode(&resp).map_err(RaftRpcError::Encode)
    }

    async fn vote(&self, body: &[u8], pre_vote: bool) -> Result<Vec<u8>, RaftRpcError> {
        let req: VoteRequest<TypeConfig> = codec::decode(body).map_err(RaftRpcError::Decode)?;
        let resp = if pre_vote {
            self.raft.pre_vote(req).await
        } else {
            self.raft.vote(req).await
        };
        let resp = resp.map_err(|e| RaftRpcError::Raft(e.to_string()))?;
        codec::encode(&resp).map_err(RaftRpcError::Encode)
    }

    async fn snapshot_chunk(&self, body: Bytes) -> Result<Vec<u8>, RaftRpcError> {
        let (header, data): (SnapshotChunkHeader, Bytes) =
            codec::decode_with_tail(body).map_err(RaftRpcError::Decode)?;
        peer_checks::check_snapshot_chunk(&header, self.node_id)
            .map_err(RaftRpcError::Impossible)?;
        let reply = self.accept_chunk(header, data).await?;
        codec::encode(&reply).map_err(RaftRpcError::Encode)
    }

    async fn accept_chunk(
        &self,
        header: SnapshotChunkHeader,
        data: Bytes,
    ) -> Result<SnapshotChunkReply, RaftRpcError> {
        if header.offset == 0 {
            // A leader with a stale vote would have its whole snapshot refused at install;
            // tell it now, before it streams megabytes.
            let my_vote = self.raft.metrics().borrow_watched().vote;
            if my_vote.partial_cmp(&header.vote) == Some(std::cmp::Ordering::Greater) {
                return Ok(SnapshotChunkReply::Finished(SnapshotResponse::new(my_vote)));
            }
        }
        self.chunks_received.fetch_add(1, Ordering::Relaxed);
        let complete = self.store_chunk(&header, &data)?;
        let Some(bytes) = complete else {
            return Ok(SnapshotChunkReply::Received {
                next_offset: header.offset + data.len() as u64,
            });
        };
        let meta = header.meta.ok_or_else(|| {
            RaftRpcError::InvalidSnapshot("last chunk carries no metadata".into())
        })?;
        self.check_consistent(&header.vote, &meta)?;
        // A checksum and a full decode: seconds for a large snapshot, so off the
        // async workers.
        let checked_meta = meta.clone();
        let snapshot_data = tokio::task::spawn_blocking(move || {
            SM::SnapshotData::from_snapshot_bytes(bytes, &checked_meta)
        })
        .await
        .map_err(|e| RaftRpcError::Raft(format!("snapshot check did not finish: {e}")))?
        .map_err(|e: io::Error| RaftRpcError::InvalidSnapshot(e.to_string()))?;
        let size = header.offset + data.len() as u64;
        tracing::info!(bytes = size, meta = %meta, "installing received snapshot");
        let snapshot = openraft::Snapshot {
            meta,
            snapshot: snapshot_data,
        };
        let resp = self
            .raft
            .install_full_snapshot(header.vote, snapshot)
            .await
            .map_err(|e| RaftRpcError::Raft(e.to_string()))?;
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        Ok(SnapshotChunkReply::Finished(resp))
    }

    /// Appends one chunk to the current upload; returns the whole snapshot once `done`.
    fn store_chunk(
        &self,
        header: &SnapshotChunkHeader,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, RaftRpcError> {
        // A poisoned lock only means a previous holder panicked mid-append; the
        // upload is then suspect, so start clean rather than propagate the panic.
        let mut slot = self.upload.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = None;
            guard
        });
        if slot
            .as_ref()
            .is_some_and(|u| u.last_chunk_at.elapsed() > self.stale_upload_after)
        {
            tracing::warn!("dropping stale partial snapshot upload");
            *slot = None;
        }
        if header.offset == 0 {
            if let Some(old) = slot.take() {
                tracing::info!(
                    bytes = old.data.len(),
                    "new snapshot transfer replaces a partial one"
                );
            }
            *slot = Some(Upload {
                vote: header.vote,
                transfer_id: header.transfer_id,
                data: Vec::new(),
                last_chunk_at: Instant::now(),
            });
        }
        let upload = match slot.as_mut() {
            Some(u) if u.vote == header.vote && u.transfer_id == header.transfer_id => u,
            _ => {
                return Err(RaftRpcError::SnapshotOutOfOrder {
                    expected: 0,
                    got: header.offset,
                });
            }
        };
        let have = upload.data.len() as u64;
        if have != header.offset {
            return Err(RaftRpcError::SnapshotOutOfOrder {
                expected: have,
                got: header.offset,
            });
        }
        if have + data.len() as u64 > self.max_snapshot_bytes {
            *slot = None;
            return Err(RaftRpcError::SnapshotTooLarge {
                limit_bytes: self.max_snapshot_bytes,
            });
        }
        upload.data.extend_from_slice(data);
        upload.last_chunk_at = Instant::now();
        if header.done {
            return Ok(slot.take().map(|u| u.data));
        }
        Ok(None)
    }

    /// openraft panics (in release too) on a snapshot a correct cluster cannot
    /// produce. A forged or corrupted upload must not take the node down, so refuse
    /// the cases we can see from here before handing it over.
    fn check_consistent(
        &self,
        vote: &VoteOf<TypeConfig>,
        meta: &openraft::alias::SnapshotMetaOf<TypeConfig>,
    ) -> Result<(), RaftRpcError> {
        let Some(last) = meta.last_log_id.as_ref() else {
            return Ok(());
        };
        if &last.leader_id > vote.leader_id() {
            return Err(RaftRpcError::InvalidSnapshot(format!(
                "snapshot last log id {last} is beyond the sender's leadership {vote}"
            )));
        }
        let committed = self.raft.metrics().borrow_watched().local_committed;
        if let Some(committed) = committed
            && *last > committed
            && last.index <= committed.index
        {
            return Err(RaftRpcError::InvalidSnapshot(format!(
                "snapshot last log id {last} conflicts with locally committed {committed}"
            )));
        }
        Ok(())
    }
}

impl<SM> RaftRpcHandler for RaftRpc<SM>
where
    SM: RaftStateMachine<TypeConfig>,
    SM::SnapshotData: SnapshotFromBytes + Send + 'static,
{
    async fn handle(&self, endpoint: RaftEndpoint, body: Bytes) -> Result<Vec<u8>, RaftRpcError> {
        match endpoint {
            RaftEndpoint::Append => self.append(&body).await,
            RaftEndpoint::Vote => self.vote(&body, false).await,
            RaftEndpoint::PreVote => self.vote(&body, true).await,
            RaftEndpoint::Snapshot => self.snapshot_chunk(body).await,
        }
    }
}
