//! Transparent proxying of a client request to the leader, and what a failed hop means.
//!
//! When the service answers [`ApiError::ForwardToLeader`], the same method, path,
//! query, relevant headers and body are sent to the leader and its response is
//! returned as-is, so a client never has to find the leader itself. A request
//! that was already forwarded once is not forwarded again (the server answers
//! `not-leader` instead of bouncing it around).
//!
//! A hop that fails is classified for the caller, which decides whether it may
//! send the request again: [`Forwarded::NotDelivered`] (could not connect, or
//! the node reached said it is not the leader: nothing was proposed) is always
//! safe to resend; [`Forwarded::MaybeDelivered`] (the connection broke after
//! the request went out) only for requests that cannot apply twice.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::server::RequestHead;
use crate::api::service::{Deadline, NodeId};
use crate::http_client::{self, HttpClient};

/// Set on a forwarded request to the forwarding node's id.
pub const FORWARDED_BY_HEADER: &str = "cairn-forwarded-by";

/// Request headers that carry meaning for the API and must survive the hop.
/// `authorization`: the leader checks the client's token again.
const FORWARDED_REQUEST_HEADERS: [&str; 4] =
    ["content-type", "idempotency-key", "accept", "authorization"];
/// Response headers copied back to the client.
const FORWARDED_RESPONSE_HEADERS: [&str; 6] = [
    "content-type",
    "cairn-log-index",
    "cairn-applied-index",
    "allow",
    "retry-after",
    "www-authenticate",
];
/// The leader's answer is bounded like any body we accept (a plugin list or output).
const MAX_FORWARDED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Error codes with which a node says it proposed nothing because it is not the leader.
const NOT_PROCESSED_CODES: [&str; 2] = ["not-leader", "no-leader"];

/// How one hop to the leader ended.
#[derive(Debug)]
pub(crate) enum Forwarded {
    /// The leader answered; relay this response.
    Answered(Response<Full<Bytes>>),
    /// Nothing was processed (no connection, or the node was not the leader);
    /// the reason, for the log.
    NotDelivered(String),
    /// The request may have been processed but no answer came back.
    MaybeDelivered(String),
}

/// Sends `head` + `body` to the leader at `leader_addr` (within `deadline`) and
/// classifies the outcome. `Err` only for a leader address that is not a URL.
pub(crate) async fn proxy(
    client: &HttpClient,
    node_id: NodeId,
    leader_addr: &str,
    head: &RequestHead,
    body: Bytes,
    deadline: Deadline,
) -> Result<Forwarded, ApiError> {
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
        HeaderValue::from(node_id),
    );
    let resp = match http_client::send(
        client,
        req,
        deadline.remaining(),
        MAX_FORWARDED_RESPONSE_BYTES,
    )
    .await
    {
        Ok(resp) => resp,
        Err(e) if e.never_delivered() => return Ok(Forwarded::NotDelivered(e.to_string())),
        Err(e) => return Ok(Forwarded::MaybeDelivered(e.to_string())),
    };
    let (parts, bytes) = resp.into_parts();
    if parts.status == StatusCode::SERVICE_UNAVAILABLE
        && let Some(err) = ErrorEnvelope::parse(&bytes)
        && NOT_PROCESSED_CODES.contains(&err.code.as_str())
    {
        return Ok(Forwarded::NotDelivered(format!(
            "{leader_addr} answered {}: {}",
            err.code, err.message
        )));
    }
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
    Ok(Forwarded::Answered(out))
}
