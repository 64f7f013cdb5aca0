//! `LogStoreError`: what can go wrong opening or using the log store.
//!
//! openraft's storage traits speak `io::Error`; `From<LogStoreError> for io::Error` keeps
//! the kind (so callers can still tell "corrupt" from "disk full") and the message.

use std::io;
use std::path::PathBuf;

/// Errors from [`super::LogStore`].
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// A configuration value cannot work.
    #[error("invalid log store config: {field} {reason}")]
    InvalidConfig {
        /// The offending `LogStoreConfig` field.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The directory holds a log written in a format this build does not read.
    #[error(
        "log store at {dir} has format version {found:?}; this build reads version {supported}"
    )]
    UnsupportedFormat {
        /// The store directory.
        dir: PathBuf,
        /// The version found on disk (`None`: a raft-log directory without Cairn's marker).
        found: Option<u32>,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// An I/O or on-disk consistency error, with what the store was doing.
    #[error("log store {op}: {source}")]
    Io {
        /// The operation that failed, e.g. `"open"`, `"append"`.
        op: &'static str,
        /// The underlying error (raft-log reports corruption as `InvalidData`).
        #[source]
        source: io::Error,
    },
    /// The store's lock was poisoned by a panic in another thread.
    #[error("log store lock poisoned")]
    Poisoned,
}

impl LogStoreError {
    /// Wraps an `io::Error` with the operation that produced it.
    pub(super) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { op, source }
    }
}

impl From<LogStoreError> for io::Error {
    fn from(e: LogStoreError) -> Self {
        let kind = match &e {
            LogStoreError::InvalidConfig { .. } => io::ErrorKind::InvalidInput,
            LogStoreError::UnsupportedFormat { .. } => io::ErrorKind::InvalidData,
            LogStoreError::Io { source, .. } => source.kind(),
            LogStoreError::Poisoned => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
