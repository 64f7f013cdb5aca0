//! Whether Raft still runs on this node: a stop nobody asked for (a storage
//! error, a panic) fails `/healthz` and `/readyz`, is logged once, and turns
//! client errors into a plain "storage failed, restart the node".
//!
//! openraft treats every storage error as fatal: its core stops and every
//! later call fails with the same error, whose text carries Rust Debug dumps
//! (`LogId { leader_id: … }`). Clients get a clean message built here; the full
//! text goes to the log, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openraft::async_runtime::WatchReceiver;
use openraft::error::Fatal;
use openraft::{RaftMetrics, ServerState, StorageError};

use crate::api::error::ApiError;
use crate::raft::types::{Raft, TypeConfig};

/// `Ok` while Raft runs; otherwise the error clients should see.
/// `stopping` is set once the node itself asked Raft to shut down.
pub(super) fn raft_health(m: &RaftMetrics<TypeConfig>, stopping: bool) -> Result<(), ApiError> {
    match &m.running_state {
        Err(fatal) => Err(fatal_error(fatal, stopping)),
        Ok(()) if m.state == ServerState::Shutdown => Err(fatal_error(&Fatal::Stopped, stopping)),
        Ok(()) => Ok(()),
    }
}

/// Whether `m` shows a stop the node did not ask for (the `cairn_raft_fatal` gauge).
pub(super) fn is_fatal(m: &RaftMetrics<TypeConfig>, stopping: bool) -> bool {
    matches!(
        raft_health(m, stopping),
        Err(ApiError::StorageFailed(_) | ApiError::RaftStopped(_))
    )
}

/// The client-facing error for a stopped Raft.
pub(super) fn fatal_error(fatal: &Fatal<TypeConfig>, stopping: bool) -> ApiError {
    match fatal {
        Fatal::StorageError(e) => ApiError::StorageFailed(describe_storage_error(e)),
        Fatal::Panicked => ApiError::RaftStopped("its core panicked; see the node's log".into()),
        Fatal::Stopped if stopping => ApiError::Unavailable("the node is shutting down".into()),
        Fatal::Stopped => ApiError::RaftStopped("it was shut down".into()),
    }
}

/// "writing the Raft log: No space left on device (os error 28)": what failed
/// and the OS's reason, without openraft's Debug rendering of log ids.
///
/// openraft keeps the parts of a `StorageError` private; its serde form
/// (`{"subject", "verb", "source": {…{"typ", "msg"}}}`) is the stable way to
/// reach them. The message is the OS error's text; `typ` (a Rust type name) is left out.
fn describe_storage_error(e: &StorageError<TypeConfig>) -> String {
    let Ok(v) = serde_json::to_value(e) else {
        return "a storage operation failed; the node's log has the details".into();
    };
    let subject = match &v["subject"] {
        serde_json::Value::String(s) => s.as_str(),
        serde_json::Value::Object(o) => o.keys().next().map_or("", String::as_str),
        _ => "",
    };
    let what = match subject {
        "Log" | "Logs" | "LogIndex" => "the Raft log",
        "Vote" => "the vote",
        "Apply" | "StateMachine" => "the state machine",
        "Snapshot" => "a snapshot",
        _ => "the store",
    };
    let verb = match v["verb"].as_str() {
        Some("Read") => "reading",
        Some("Seek") => "seeking in",
        Some("Delete") => "deleting from",
        _ => "writing",
    };
    match find_msg(&v["source"], 4) {
        Some(msg) => format!("{verb} {what}: {msg}"),
        None => format!("{verb} {what} failed"),
    }
}

/// The first `"msg"` string in `v`, looking at most `depth` objects deep
/// (openraft wraps its `AnyError` source in another object).
fn find_msg(v: &serde_json::Value, depth: u32) -> Option<&str> {
    let obj = v.as_object()?;
    if let Some(msg) = obj.get("msg").and_then(|m| m.as_str()) {
        return Some(msg);
    }
    if depth == 0 {
        return None;
    }
    obj.values().find_map(|inner| find_msg(inner, depth - 1))
}

/// Waits until Raft stops and, unless the node asked it to, logs why at
/// `error` — once per node, however many requests fail afterwards.
pub(super) async fn report_fatal(raft: Raft, stopping: Arc<AtomicBool>) {
    let mut rx = raft.metrics();
    loop {
        let running = rx.borrow_watched().running_state.clone();
        if let Err(fatal) = running {
            let stopping = stopping.load(Ordering::Relaxed);
            if !matches!(fatal, Fatal::Stopped if stopping) {
                let err = fatal_error(&fatal, stopping);
                tracing::error!(
                    code = err.code(),
                    detail = %fatal,
                    "{err}"
                );
            }
            return;
        }
        // An error means the metrics sender is gone: the core task ended.
        if rx.changed().await.is_err() {
            if !stopping.load(Ordering::Relaxed) {
                tracing::error!(
                    code = "raft-stopped",
                    "Raft stopped without reporting why; the node must be restarted"
                );
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_read_plainly() {
        let io = std::io::Error::from_raw_os_error(28); // ENOSPC
        let e = StorageError::<TypeConfig>::from_io_error(
            openraft::ErrorSubject::Log(openraft::alias::LogIdOf::<TypeConfig> {
                leader_id: openraft::impls::leader_id_adv::LeaderId {
                    term: 3,
                    node_id: 1,
                },
                index: 42,
            }),
            openraft::ErrorVerb::Write,
            io,
        );
        // openraft's own text is what leaked before.
        assert!(e.to_string().contains("LogId"), "{e}");
        let err = fatal_error(&Fatal::StorageError(e), false);
        assert_eq!(err.code(), "storage-failed");
        assert_eq!(err.status().as_u16(), 503);
        let msg = err.to_string();
        assert!(msg.contains("writing the Raft log"), "{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        assert!(msg.contains("restarted"), "{msg}");
        for leak in ["LogId", "leader_id", "{", "std::io"] {
            assert!(!msg.contains(leak), "{leak} in {msg}");
        }
    }

    #[test]
    fn a_requested_stop_is_not_fatal() {
        assert_eq!(fatal_error(&Fatal::Stopped, true).code(), "unavailable");
        assert_eq!(fatal_error(&Fatal::Stopped, false).code(), "raft-stopped");
        assert_eq!(fatal_error(&Fatal::Panicked, true).code(), "raft-stopped");
    }
}
