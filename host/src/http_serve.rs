//! Serving one accepted connection, for the client port and the peer port
//! alike: the TLS handshake when the port has a certificate, then HTTP/1 with
//! a header deadline until the other side closes or shutdown is signalled.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

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
