//! One small pooled HTTP/1 client shared by the Raft network, leader forwarding and the CLI.
//!
//! hyper-util's legacy client keeps idle keep-alive connections per host, so a
//! steady stream of append-entries reuses one TCP connection instead of paying a
//! handshake per RPC. Every call carries its own deadline and a response size cap.
//! `http://` and `https://` both work; `https://` servers are verified against
//! the CA certificates the client was built with (`--cacert`), nothing else.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The shared client type; cheap to clone (clones share the pool).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long an idle pooled connection is kept before it is closed. Below the
/// server's header read timeout (30 s), so the client drops an idle connection
/// before the server does instead of racing a request into a closing socket.
const POOL_IDLE_TIMEOUT_MS: u64 = 20_000;
/// Bound on TCP connect; a peer that does not answer SYNs is as good as down.
const CONNECT_TIMEOUT_MS: u64 = 1_000;

/// A failed HTTP exchange, classified so callers can tell "peer is down" from the rest.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or address could not be turned into a request URI.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// No connection could be made (refused, unroutable, connect timeout).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// Target.
        url: String,
        /// Cause.
        reason: String,
    },
    /// The deadline passed before a full response arrived.
    #[error("request to {url} timed out after {timeout_ms} ms")]
    Timeout {
        /// Target.
        url: String,
        /// The deadline that passed.
        timeout_ms: u128,
    },
    /// The connection broke mid-exchange or the response was not valid HTTP.
    #[error("transport error talking to {url}: {reason}")]
    Transport {
        /// Target.
        url: String,
        /// Cause.
        reason: String,
    },
    /// A bearer token that cannot be sent as a header.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Why.
        reason: String,
    },
    /// The response body exceeded the caller's cap.
    #[error("response from {url} exceeds {limit_bytes} bytes")]
    ResponseTooLarge {
        /// Target.
        url: String,
        /// The cap.
        limit_bytes: usize,
    },
}

impl ClientError {
    /// True when the request certainly never reached the server (nothing was
    /// sent), so sending it again cannot apply it twice.
    pub fn never_delivered(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidUrl { .. } | ClientError::Connect { .. }
        )
    }
}

/// Builds a pooled client that trusts no `https://` server (plain `http://` only, in effect).
pub fn new_client() -> HttpClient {
    // Building a config without CA files cannot fail.
    let tls = crate::tls::client_config(None).expect("an empty trust store builds");
    with_tls(tls)
}

/// Builds a pooled client whose `https://` servers must present a certificate
/// `tls` trusts.
pub fn with_tls(tls: std::sync::Arc<rustls::ClientConfig>) -> HttpClient {
    let mut connector = HttpConnector::new();
    // Raft RPCs are small request/response pairs; Nagle would add up to 40 ms each.
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)));
    // The TLS layer decides by scheme; the TCP connector must accept https URIs.
    connector.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
        .build(connector)
}

/// A client trusting the CA certificates in `ca` (PEM), or none.
pub fn client_with_ca(ca: Option<&std::path::Path>) -> Result<HttpClient, crate::tls::TlsError> {
    Ok(with_tls(crate::tls::client_config(ca)?))
}

/// Joins a base (`host:port` or `http://host:port[/]`) and an absolute path (with query) into a URI.
pub fn url(base: &str, path_and_query: &str) -> Result<Uri, ClientError> {
    let base = base.trim().trim_end_matches('/');
    let full = if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}{path_and_query}")
    } else {
        format!("http://{base}{path_and_query}")
    };
    let uri: Uri = full
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::InvalidUrl {
            url: full.clone(),
            reason: e.to_string(),
        })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ClientError::InvalidUrl {
            url: full,
            reason: "only http:// and https:// are supported".into(),
        });
    }
    Ok(uri)
}

/// Builds a request with a body and optional content type.
pub fn request(
    method: Method,
    uri: Uri,
    content_type: Option<&str>,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    // Infallible: method and uri are already typed values and the header value is static text.
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// Adds `Authorization: Bearer <token>` to `req`.
pub fn set_bearer(req: &mut Request<Full<Bytes>>, token: &str) -> Result<(), ClientError> {
    let value = http::HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
        ClientError::InvalidToken {
            reason: "a token is visible ASCII without spaces".into(),
        }
    })?;
    req.headers_mut().insert(http::header::AUTHORIZATION, value);
    Ok(())
}

/// Sends `req` and reads the whole response body, all within `timeout`.
pub async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    max_response_bytes: usize,
) -> Result<Response<Bytes>, ClientError> {
    let url = req.uri().to_string();
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| {
            let reason = error_chain(&e);
            if e.is_connect() {
                ClientError::Connect {
                    url: url.clone(),
                    reason,
                }
            } else {
                ClientError::Transport {
                    url: url.clone(),
                    reason,
                }
            }
        })?;
        let (parts, body) = resp.into_parts();
        let collected = Limited::new(body, max_response_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::ResponseTooLarge {
                        url: url.clone(),
                        limit_bytes: max_response_bytes,
                    }
                } else {
                    ClientError::Transport {
                        url: url.clone(),
                        reason: e.to_string(),
                    }
                }
            })?;
        Ok(Response::from_parts(parts, collected.to_bytes()))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout {
            url,
            timeout_ms: timeout.as_millis(),
        }),
    }
}

/// The error and its sources on one line; hyper's top-level messages alone are vague.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls_from_addresses_and_bases() {
        assert_eq!(
            url("127.0.0.1:7070", "/raft/vote").unwrap().to_string(),
            "http://127.0.0.1:7070/raft/vote"
        );
        assert_eq!(
            url("http://h:1/", "/v1/cluster?x=1").unwrap().to_string(),
            "http://h:1/v1/cluster?x=1"
        );
        assert_eq!(
            url("https://h:1", "/raft/vote").unwrap().to_string(),
            "https://h:1/raft/vote"
        );
        assert!(url("not a host", "/").is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = new_client();
        let req = request(
            Method::GET,
            url(&format!("127.0.0.1:{port}"), "/").unwrap(),
            None,
            Bytes::new(),
        );
        let err = send(&client, req, Duration::from_secs(2), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(err.never_delivered());
    }

    #[tokio::test]
    async fn a_connection_cut_after_the_request_is_not_a_connect_error() {
        // A server that reads the request and hangs up without answering.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
        });
        let req = request(
            Method::POST,
            url(&addr.to_string(), "/").unwrap(),
            None,
            Bytes::from_static(b"x"),
        );
        let err = send(&new_client(), req, Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Transport { .. }), "{err}");
        assert!(!err.never_delivered(), "it may have been processed");
        server.await.unwrap();
    }
}
