//! `ApiError`: every failure the HTTP layer can report, each with a stable code and a status.
//!
//! Every error leaves the server as `{"error":{"code","message"}}`; clients and
//! tests match on `code`, never on the message text.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::state::ErrorBody;

/// Error code of a plugin lookup miss; the state layer records the same code.
pub const PLUGIN_NOT_FOUND: &str = "plugin-not-found";

/// An API failure. `ForwardToLeader` is not reported to the client: the handler
/// layer proxies the original request to that address instead.
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
    /// There is no known leader right now (election in progress).
    #[error("no leader is known; retry shortly")]
    NoLeader,
    /// Forwarding to the leader failed.
    #[error("forwarding to the leader failed: {0}")]
    ForwardFailed(String),
    /// The node is not ready (no leader yet, still catching up).
    #[error("not ready: {0}")]
    NotReady(String),
    /// A bounded wait ran out (e.g. `min_index` not reached in time).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node cannot serve right now (Raft stopping or starting).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected local failure.
    #[error("internal error: {0}")]
    Internal(String),
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
            ApiError::EntryTooLarge { .. } => "entry-too-large",
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::PluginNotFound { .. } => PLUGIN_NOT_FOUND,
            ApiError::Plugin(body) => &body.code,
            ApiError::ForwardToLeader { .. } => "not-leader",
            ApiError::NoLeader => "no-leader",
            ApiError::ForwardFailed(_) => "forward-failed",
            ApiError::NotReady(_) => "not-ready",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
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
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            // A plugin-level "not found" recorded by the state machine is still a 404.
            ApiError::Plugin(body) if body.code == PLUGIN_NOT_FOUND => StatusCode::NOT_FOUND,
            ApiError::Plugin(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::ForwardToLeader { .. }
            | ApiError::NoLeader
            | ApiError::ForwardFailed(_)
            | ApiError::NotReady(_)
            | ApiError::Timeout(_)
            | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
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
        let mut resp = json_response(self.status(), &ErrorEnvelope { error: self.body() });
        if let ApiError::MethodNotAllowed { allowed, .. } = &self {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
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
            (ApiError::Timeout("x".into()), "timeout", 503),
            (ApiError::Internal("x".into()), "internal", 500),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.code(), code);
            assert_eq!(err.status().as_u16(), status, "{code}");
            assert_eq!(err.body().code, code);
        }
    }
}
