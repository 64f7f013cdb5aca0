//! What one plugin call produces: its output and events, or an error with a
//! stable code. The runtime makes these; the replicated state stores them
//! (re-exported from `state`), so their serde shape is part of the log and
//! snapshot formats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A failure with a stable machine-readable code and a human message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code, e.g. `plugin-not-found`, `out-of-fuel`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// An event emitted by a successful `apply`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Topic chosen by the plugin.
    pub topic: String,
    /// Payload bytes (`serde_bytes`: one slice copy, same bincode encoding).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// The successful output of a plugin call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Bytes returned by the plugin.
    pub output: Vec<u8>,
    /// Events emitted during the call (always empty for queries).
    pub events: Vec<Event>,
}
