//! The client port's connections: the shared accept loop with the
//! `max_connections` cap (a connection over it gets a `503` and is closed),
//! and each connection served by [`Api::handle`].

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Api;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::service::ClusterService;
use crate::http_serve::{self, Port};

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

/// Serves `api` on `listener` until `shutdown` turns `true`, then stops accepting,
/// lets in-flight requests finish (bounded by `shutdown_grace`) and returns.
pub async fn serve<S>(
    listener: TcpListener,
    api: Arc<Api<S>>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: ClusterService,
{
    let tls = api.tls.is_some();
    let port = Port {
        name: "client port",
        tls,
        max_connections: api.limits.max_connections,
        shutdown_grace: api.limits.shutdown_grace,
        stats: api.connections.clone(),
    };
    let refusal = refusal_bytes(api.limits.overload_retry_after_secs);
    let for_each = api.clone();
    http_serve::accept_loop(
        listener,
        port,
        shutdown,
        move |stream, peer, shutdown| serve_connection(stream, peer, for_each.clone(), shutdown),
        // One non-blocking write (a fresh socket's buffer always has room),
        // then close; a TLS client cannot read a plain answer, so it gets none.
        move |stream, _| {
            if !tls {
                let _ = stream.try_write(&refusal);
            }
        },
        || {
            api.streams_closing.send_replace(true);
        },
    )
    .await
}

/// One client connection.
async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    api: Arc<Api<S>>,
    shutdown: watch::Receiver<bool>,
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
