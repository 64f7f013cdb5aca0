//! The client port's connections: the accept loop with its `max_connections`
//! cap (a connection over it gets a `503` and is closed), TLS, hyper's HTTP/1
//! per connection, and graceful shutdown.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::Api;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::service::ClusterService;
use crate::http_serve::{self, shutdown_signalled};

/// Client connections of one server, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    refused: AtomicU64,
}

impl ConnectionStats {
    /// Connections being served now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused because `max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Holds a connection's slot and keeps the open-connections gauge right,
/// however the connection task ends.
struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl ConnectionSlot {
    fn new(permit: OwnedSemaphorePermit, stats: Arc<ConnectionStats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            stats,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The whole answer to a connection over `max_connections`: written straight
/// to the socket (no request is read), then the connection is closed.
fn refusal_bytes(retry_after_secs: u64) -> Bytes {
    let err = ApiError::Overloaded {
        what: "too many open connections".into(),
        retry_after_secs,
    };
    let body = serde_json::to_string(&ErrorEnvelope { error: err.body() })
        .unwrap_or_else(|_| String::from(r#"{"error":{"code":"overloaded","message":""}}"#));
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: {retry_after_secs}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// Turns away a connection over the cap without stalling the accept loop: one
/// non-blocking write (a fresh socket's buffer always has room), then close.
fn refuse(stream: tokio::net::TcpStream, refusal: &[u8], stats: &ConnectionStats) {
    stats.refused.fetch_add(1, Ordering::Relaxed);
    let _ = stream.try_write(refusal);
    tracing::debug!("refused a connection: max_connections are open");
}

/// Serves `api` on `listener` until `shutdown` turns `true`, then stops accepting,
/// lets in-flight requests finish (bounded by `shutdown_grace`) and returns.
pub async fn serve<S>(
    listener: TcpListener,
    api: Arc<Api<S>>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: ClusterService,
{
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, tls = api.tls.is_some(), "http server listening");
    let mut connections = JoinSet::new();
    let cap = usize::try_from(api.limits.max_connections)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(cap));
    let refusal = refusal_bytes(api.limits.overload_retry_after_secs);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        let slot = ConnectionSlot::new(permit, api.connections.clone());
                        connections.spawn(serve_connection(stream, peer, api.clone(), shutdown.clone(), slot));
                    }
                    // A TLS client cannot read a plain answer: just close.
                    Err(_) if api.tls.is_some() => refuse(stream, b"", &api.connections),
                    Err(_) => refuse(stream, &refusal, &api.connections),
                },
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
    api.streams_closing.send_replace(true);
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

/// One client connection, holding its slot until it closes.
async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    api: Arc<Api<S>>,
    shutdown: watch::Receiver<bool>,
    _slot: ConnectionSlot,
) where
    S: ClusterService,
{
    let (tls, header_read_timeout) = (api.tls.clone(), api.limits.header_read_timeout);
    let handle = move |req| {
        let api = api.clone();
        async move { api.handle(req).await }
    };
    http_serve::serve_connection(
        stream,
        peer,
        tls,
        header_read_timeout,
        shutdown,
        "client port",
        handle,
    )
    .await;
}
