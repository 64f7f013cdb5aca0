//! Sending a snapshot to a peer in chunks, and the chunk types both sides share.
//!
//! A snapshot goes out as a sequence of `POST /raft/snapshot` requests of at
//! most `snapshot_chunk_bytes` of data each, so no HTTP body ever holds the
//! whole snapshot and each chunk fits a receiver's derived body cap.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::errors::{ErrorSource, NetworkError, ReplicationClosed, StreamingError};
use openraft::network::RPCOption;
use openraft::raft::SnapshotResponse;
use openraft::{OptionalSend, RPCTypes, StorageError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};

use super::{PeerClient, PeerError, SNAPSHOT_PATH};
use crate::raft::codec;
use crate::raft::types::TypeConfig;

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

impl<D: SnapshotSource> PeerClient<D> {
    /// Streams `snapshot` to the peer chunk by chunk; the body of
    /// `RaftNetworkV2::full_snapshot`.
    pub(super) async fn stream_snapshot(
        &self,
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
