//! Serving a port, the client port and the peer port alike: the accept loop
//! with its connection cap and graceful shutdown, and each connection: the TLS
//! handshake when the port has a certificate, then HTTP/1 with a header
//! deadline until the other side closes or shutdown is signalled.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Pause after a failed `accept` (usually EMFILE) before the next one, so the
/// loop does not spin on the error.
const ACCEPT_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Connections of one port, for `/metrics`.
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

    /// Connections refused because the port's cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Counts a connection as open until it drops, however its task ends.
struct Open(Arc<ConnectionStats>);

impl Open {
    fn new(stats: Arc<ConnectionStats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an accept loop is told about its port.
pub(crate) struct Port {
    /// Names the port in logs ("client port", "peer port").
    pub name: &'static str,
    /// Whether it serves TLS (for the log).
    pub tls: bool,
    /// Connections served at once; one more is refused.
    pub max_connections: u64,
    /// How long open connections get to finish after shutdown.
    pub shutdown_grace: Duration,
    /// Where open and refused connections are counted.
    pub stats: Arc<ConnectionStats>,
}

/// Accepts connections on `listener` until `shutdown` turns `true`: each one
/// under the cap is served by the future `accepted` makes for it (given the
/// shutdown signal to watch), each one
/// over it is counted and handed to `refused` (which answers and closes it).
/// Then stops accepting, calls `closing`, lets the connections finish within
/// the grace period and closes the rest.
pub(crate) async fn accept_loop<A, F, R>(
    listener: TcpListener,
    port: Port,
    mut shutdown: watch::Receiver<bool>,
    mut accepted: A,
    mut refused: R,
    closing: impl FnOnce(),
) -> io::Result<()>
where
    A: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
    R: FnMut(TcpStream, SocketAddr),
{
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, tls = port.tls, "{}: listening", port.name);
    let cap = usize::try_from(port.max_connections)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(cap));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted_conn = listener.accept() => match accepted_conn {
                Ok((stream, remote)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        let open = Open::new(port.stats.clone());
                        let serve = accepted(stream, remote, shutdown.clone());
                        connections.spawn(async move {
                            serve.await;
                            drop((open, permit));
                        });
                    }
                    Err(_) => {
                        port.stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%remote, "{}: refused a connection, the cap is reached", port.name);
                        refused(stream, remote);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "{}: accept failed", port.name);
                    tokio::time::sleep(ACCEPT_RETRY_BACKOFF).await;
                }
            },
            _ = shutdown_signalled(&mut shutdown) => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    closing();
    tracing::info!(addr = %local, open = connections.len(), "{}: shutting down", port.name);
    let drained = tokio::time::timeout(port.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "{}: closing connections that outlived the shutdown grace period",
            port.name
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves when `shutdown` turns `true` or its sender is dropped.
pub(crate) async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves `stream` (over TLS when `tls` is set) with `handle` until the
/// connection closes. Headers (and the handshake) must arrive within
/// `header_read_timeout`; on shutdown the request in flight is finished and
/// the connection closed instead of kept alive. `what` names the port in the
/// debug logs of connections that end with an error.
pub(crate) async fn serve_connection<F, Fut, B>(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    header_read_timeout: Duration,
    shutdown: watch::Receiver<bool>,
    what: &'static str,
    handle: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let result = match tls {
        None => serve_http1(stream, header_read_timeout, shutdown, handle).await,
        Some(acceptor) => match crate::tls::accept(&acceptor, stream, header_read_timeout).await {
            Ok(tls) => serve_http1(tls, header_read_timeout, shutdown, handle).await,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "{what}: tls handshake failed");
                return;
            }
        },
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "{what}: connection ended with an error");
    }
}

async fn serve_http1<I, F, Fut, B>(
    stream: I,
    header_read_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = service_fn(move |req| {
        let answer = handle(req);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown_signalled(&mut shutdown) => {
            // Finish the request in flight (if any), then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    }
}
