//! `ApiError`: every failure the HTTP layer can report, each with a stable code and a status.
//!
//! Every error leaves the server as `{"error":{"code","message"}}`; clients and
//! tests match on `code`, never on the message text.
//!
//! | status | code | meaning |
//! |---|---|---|
//! | 400 | `bad-json`, `bad-query`, `bad-sample-queries`, `not-wasm`, … | malformed request; nothing changed |
//! | 400 | `migrate-failed` | an upgrade's `migrate` failed: recorded, the old version keeps running, its data untouched |
//! | 404 | `not-found`, `plugin-not-found` | no such route or plugin |
//! | 405 | `method-not-allowed` | wrong method (`Allow` lists the right ones) |
//! | 408 | `body-timeout` | the request body did not fully arrive within `body_read_timeout_ms`; nothing changed |
//! | 409 | `snapshot-out-of-order`, … | conflicts with current state |
//! | 410 | `gone` | the events asked for were dropped by retention; `oldest_index` says where the log starts now |
//! | 413 | `body-too-large` | over `max_body_bytes` / `max_plugin_bytes` |
//! | 422 | the plugin's own code, `out-of-fuel`, … | the plugin or runtime refused the command |
//! | 500 | `internal` | a bug |
//! | 503 | `no-leader` | no leader was elected within the request's deadline; nothing was proposed |
//! | 503 | `not-leader` | a forwarded request reached a node that is not the leader (it does not forward twice); nothing was proposed |
//! | 503 | `forward-failed` | forwarding to the leader failed after the request may have reached it; outcome unknown |
//! | 503 | `outcome-unknown` | the leader lost its entry to a new leader; it may still commit |
//! | 503 | `overloaded` | no query slot or connection free right now; `Retry-After` says when to retry; nothing changed |
//! | 503 | `not-ready`, `unavailable` | the node is starting, catching up or stopping |
//! | 504 | `timeout` | the request's deadline (`request_timeout_ms`, `deploy_timeout_ms`) passed; a write may still have been applied |

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::state::ErrorBody;

/// Error code of a plugin lookup miss; the state layer records the same code.
pub const PLUGIN_NOT_FOUND: &str = "plugin-not-found";

/// An API failure. `ForwardToLeader` normally is not reported to the client:
/// the handler layer proxies the original request to that address instead
/// (only a request that was already forwarded once gets it, as `not-leader`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// No route matches the path.
    #[error("no route for {path}")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// The route exists but not with this method.
    #[error("method {method} not allowed; allowed: {allowed}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// Comma-separated allowed methods (also sent as `Allow`).
        allowed: &'static str,
    },
    /// The request body is over the route's cap.
    #[error("request body exceeds {limit_bytes} bytes")]
    BodyTooLarge {
        /// The cap.
        limit_bytes: u64,
    },
    /// The request body did not fully arrive in time.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    BodyTimeout {
        /// The read deadline.
        timeout_ms: u64,
    },
    /// The command would become a log entry above the cluster's `max_entry_bytes`.
    #[error(
        "the command would be a log entry of {size_bytes} bytes; the cluster's max_entry_bytes is {limit_bytes}"
    )]
    EntryTooLarge {
        /// The entry's encoded size.
        size_bytes: u64,
        /// The cluster setting.
        limit_bytes: u64,
    },
    /// The request is malformed; `code` says how (`bad-json`, `invalid-wasm`, …).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: String,
        /// Human explanation.
        message: String,
    },
    /// Events asked for were dropped by the cluster's event retention.
    #[error(
        "events before log index {oldest_index} were dropped by retention; resume from_index={oldest_index} (or later)"
    )]
    Gone {
        /// The oldest log index whose events are still held.
        oldest_index: u64,
    },
    /// The named plugin is not deployed.
    #[error("plugin {name:?} is not deployed")]
    PluginNotFound {
        /// The plugin name.
        name: String,
    },
    /// The plugin (or the runtime running it) refused the input: plugin error,
    /// trap, out of fuel, memory limit. Carries the plugin's own code.
    #[error("{0}")]
    Plugin(ErrorBody),
    /// The request conflicts with current state (e.g. out-of-order snapshot chunk).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: String,
        /// Human explanation.
        message: String,
    },
    /// This node is not the leader; the handler proxies to `leader_addr`.
    #[error("not the leader; leader is at {leader_addr}")]
    ForwardToLeader {
        /// `host:port` (or `http://host:port`) of the leader.
        leader_addr: String,
    },
    /// No reachable leader within the request's deadline; nothing was proposed.
    #[error(
        "no reachable leader within the request's deadline; nothing was applied: retry shortly"
    )]
    NoLeader,
    /// Forwarding to the leader failed after the request may have reached it.
    #[error("forwarding to the leader failed: {0}")]
    ForwardFailed(String),
    /// The write's entry was dropped by a leader change; it may or may not commit.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// No capacity right now (query slots, connections); retry after `retry_after_secs`.
    #[error("overloaded: {what}; retry in {retry_after_secs} s")]
    Overloaded {
        /// What ran out.
        what: String,
        /// Sent as `Retry-After`.
        retry_after_secs: u64,
    },
    /// The node is not ready (no leader yet, still catching up).
    #[error("not ready: {0}")]
    NotReady(String),
    /// A deadline passed: the request's own, or a bounded wait inside it
    /// (e.g. `min_index` not reached in time).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node cannot serve right now (Raft stopping or starting).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node's disk alarm is raised: too little free space on the data
    /// dir's filesystem to accept writes. Reads still work; writes resume by
    /// themselves once space is freed.
    #[error(
        "insufficient storage: {free_bytes} bytes free on the filesystem of data dir {data_dir}, \
         below min_free_disk_bytes ({min_free_bytes}); writes are refused until space is freed, \
         reads still work"
    )]
    InsufficientStorage {
        /// Free bytes measured.
        free_bytes: u64,
        /// The configured watermark.
        min_free_bytes: u64,
        /// The node's data dir.
        data_dir: String,
    },
    /// Raft stopped because this node's storage failed (a log, vote or
    /// snapshot write or read returned an error). Nothing more can be written
    /// or read through Raft until the node is restarted.
    #[error(
        "this node's storage failed ({0}); Raft has stopped and the node must be restarted \
         once the cause is fixed"
    )]
    StorageFailed(String),
    /// Raft stopped for another reason than a storage error or a requested shutdown.
    #[error("Raft has stopped on this node ({0}); the node must be restarted")]
    RaftStopped(String),
    /// A bug or an unexpected local failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// No valid bearer token (missing, malformed, unknown or revoked).
    #[error("{0}")]
    Unauthenticated(String),
    /// The token is valid but its role or plugin list does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// A token id names no token (revoke).
    #[error("{0}")]
    TokenNotFound(String),
}

impl ApiError {
    /// A `400` with the given code.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            ApiError::NotFound { .. } => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::BodyTooLarge { .. } => "body-too-large",
            ApiError::BodyTimeout { .. } => "body-timeout",
            ApiError::EntryTooLarge { .. } => "entry-too-large",
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::PluginNotFound { .. } => PLUGIN_NOT_FOUND,
            ApiError::Gone { .. } => "gone",
            ApiError::Plugin(body) => &body.code,
            ApiError::ForwardToLeader { .. } => "not-leader",
            ApiError::NoLeader => "no-leader",
            ApiError::ForwardFailed(_) => "forward-failed",
            ApiError::OutcomeUnknown(_) => "outcome-unknown",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::NotReady(_) => "not-ready",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InsufficientStorage { .. } => "insufficient-storage",
            ApiError::StorageFailed(_) => "storage-failed",
            ApiError::RaftStopped(_) => "raft-stopped",
            ApiError::Internal(_) => "internal",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TokenNotFound(_) => crate::state::tokens::TOKEN_NOT_FOUND,
        }
    }

    /// The HTTP status this error is reported with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::PluginNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } | ApiError::EntryTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            // A plugin-level "not found" recorded by the state machine is still a 404.
            ApiError::Plugin(body) if body.code == PLUGIN_NOT_FOUND => StatusCode::NOT_FOUND,
            ApiError::Plugin(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::ForwardToLeader { .. }
            | ApiError::NoLeader
            | ApiError::ForwardFailed(_)
            | ApiError::OutcomeUnknown(_)
            | ApiError::Overloaded { .. }
            | ApiError::NotReady(_)
            | ApiError::Unavailable(_)
            | ApiError::StorageFailed(_)
            | ApiError::RaftStopped(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TokenNotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// Whether the server logs this error for each request that gets it.
    /// The node states behind the disk alarm and a stopped Raft are logged
    /// once, when they begin; a line per refused request would flood the log.
    pub fn logged_per_request(&self) -> bool {
        !matches!(
            self,
            ApiError::InsufficientStorage { .. }
                | ApiError::StorageFailed(_)
                | ApiError::RaftStopped(_)
                // Expected and frequent under overload: counted, not logged each.
                | ApiError::Overloaded { .. }
        )
    }

    /// The JSON body `{"error":{"code","message"}}`.
    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Plugin(body) => body.clone(),
            other => ErrorBody::new(other.code(), other.to_string()),
        }
    }

    /// The full HTTP response for this error.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut resp = match &self {
            // The oldest index also as a field, so a client can resume without parsing text.
            ApiError::Gone { oldest_index } => {
                let body = self.body();
                json_response(
                    self.status(),
                    &serde_json::json!({"error": {
                        "code": body.code,
                        "message": body.message,
                        "oldest_index": oldest_index,
                    }}),
                )
            }
            _ => json_response(self.status(), &ErrorEnvelope { error: self.body() }),
        };
        match &self {
            ApiError::MethodNotAllowed { allowed, .. } => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allowed));
            }
            ApiError::Overloaded {
                retry_after_secs, ..
            } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            // The rest of the body is still on the wire: the connection cannot be reused.
            ApiError::BodyTimeout { .. } => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        if let ApiError::Unauthenticated(_) = &self {
            // RFC 6750: a 401 names the scheme the client should use.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cairn\""),
            );
        }
        resp
    }
}

/// Wire shape of every error response.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

impl ErrorEnvelope {
    /// The error a response body carries, if it is one of ours.
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        serde_json::from_slice::<ErrorEnvelope>(body)
            .ok()
            .map(|e| e.error)
    }
}

/// A JSON response; serialisation of our own response types cannot fail, but if it
/// ever did the client still gets a JSON 500 rather than a dropped connection.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (status, body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(r#"{{"error":{{"code":"internal","message":"encoding response: {e}"}}}}"#)
                .into_bytes(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_are_stable() {
        let cases: Vec<(ApiError, &str, u16)> = vec![
            (ApiError::NotFound { path: "/x".into() }, "not-found", 404),
            (
                ApiError::MethodNotAllowed {
                    method: "PUT".into(),
                    allowed: "GET",
                },
                "method-not-allowed",
                405,
            ),
            (
                ApiError::BodyTooLarge { limit_bytes: 1 },
                "body-too-large",
                413,
            ),
            (
                ApiError::EntryTooLarge {
                    size_bytes: 2,
                    limit_bytes: 1,
                },
                "entry-too-large",
                413,
            ),
            (ApiError::bad_request("bad-json", "x"), "bad-json", 400),
            (
                ApiError::PluginNotFound { name: "c".into() },
                "plugin-not-found",
                404,
            ),
            (
                ApiError::Plugin(ErrorBody::new("out-of-fuel", "x")),
                "out-of-fuel",
                422,
            ),
            (
                ApiError::Plugin(ErrorBody::new(PLUGIN_NOT_FOUND, "x")),
                "plugin-not-found",
                404,
            ),
            (ApiError::NoLeader, "no-leader", 503),
            (ApiError::Gone { oldest_index: 9 }, "gone", 410),
            (
                ApiError::ForwardToLeader {
                    leader_addr: "h:1".into(),
                },
                "not-leader",
                503,
            ),
            (ApiError::ForwardFailed("x".into()), "forward-failed", 503),
            (ApiError::OutcomeUnknown("x".into()), "outcome-unknown", 503),
            (
                ApiError::Overloaded {
                    what: "x".into(),
                    retry_after_secs: 1,
                },
                "overloaded",
                503,
            ),
            (ApiError::BodyTimeout { timeout_ms: 1 }, "body-timeout", 408),
            (ApiError::Timeout("x".into()), "timeout", 504),
            (ApiError::Internal("x".into()), "internal", 500),
            (
                ApiError::InsufficientStorage {
                    free_bytes: 1,
                    min_free_bytes: 2,
                    data_dir: "/d".into(),
                },
                "insufficient-storage",
                507,
            ),
            (ApiError::StorageFailed("x".into()), "storage-failed", 503),
            (ApiError::RaftStopped("x".into()), "raft-stopped", 503),
            (
                ApiError::Unauthenticated("x".into()),
                "unauthenticated",
                401,
            ),
            (ApiError::Forbidden("x".into()), "forbidden", 403),
            (ApiError::TokenNotFound("x".into()), "token-not-found", 404),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.code(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
            assert_eq!(err.body().code, code);
        }
        let resp = ApiError::Overloaded {
            what: "query slots".into(),
            retry_after_secs: 3,
        }
        .into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        let resp = ApiError::Unauthenticated("x".into()).into_response();
        assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"cairn\"");
    }
}
