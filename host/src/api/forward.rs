//! Transparent proxying of a client request to the leader.
//!
//! When the service answers [`ApiError::ForwardToLeader`], the same method, path,
//! query, relevant headers and body are sent to the leader and its response is
//! returned as-is, so a client never has to find the leader itself. A request
//! that was already forwarded once is not forwarded again: leadership moved while
//! it was in flight, and the client is told to retry rather than bounce around.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, header};
use http_body_util::Full;

use crate::api::error::ApiError;
use crate::api::server::{ApiLimits, RequestHead};
use crate::http_client::{self, HttpClient};

/// Set on a forwarded request to the forwarding node's id.
pub const FORWARDED_BY_HEADER: &str = "cairn-forwarded-by";

/// Request headers that carry meaning for the API and must survive the hop.
/// `authorization`: the leader checks the client's token again.
const FORWARDED_REQUEST_HEADERS: [&str; 4] =
    ["content-type", "idempotency-key", "accept", "authorization"];
/// Response headers copied back to the client.
const FORWARDED_RESPONSE_HEADERS: [&str; 5] = [
    "content-type",
    "cairn-log-index",
    "cairn-applied-index",
    "allow",
    "www-authenticate",
];
/// The leader's answer is bounded like any body we accept (a plugin list or output).
const MAX_FORWARDED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Sends `head` + `body` to the leader at `leader_addr` and relays the answer.
pub(crate) async fn proxy(
    client: &HttpClient,
    limits: &ApiLimits,
    leader_addr: &str,
    head: &RequestHead,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if head.headers.contains_key(FORWARDED_BY_HEADER) {
        return Err(ApiError::NoLeader);
    }
    let path_and_query = head
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let uri = http_client::url(leader_addr, path_and_query)
        .map_err(|e| ApiError::ForwardFailed(e.to_string()))?;
    tracing::debug!(method = %head.method, %uri, "forwarding to leader");
    let mut req = http_client::request(head.method.clone(), uri, None, body);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = head.headers.get(name) {
            req.headers_mut()
                .insert(HeaderName::from_static(name), value.clone());
        }
    }
    req.headers_mut().insert(
        HeaderName::from_static(FORWARDED_BY_HEADER),
        HeaderValue::from(limits.node_id),
    );
    let resp = http_client::send(
        client,
        req,
        limits.forward_timeout,
        MAX_FORWARDED_RESPONSE_BYTES,
    )
    .await
    .map_err(|e| ApiError::ForwardFailed(e.to_string()))?;
    let (parts, bytes) = resp.into_parts();
    let mut out = Response::new(Full::new(bytes));
    *out.status_mut() = parts.status;
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            out.headers_mut()
                .insert(HeaderName::from_static(name), value.clone());
        }
    }
    if !out.headers().contains_key(header::CONTENT_TYPE) {
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    Ok(out)
}
