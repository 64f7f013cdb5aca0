//! `Proposer`: hands concurrent writes to openraft together, one message for all
//! that are waiting, instead of one message (and one log append) each.
//!
//! Why: openraft's core runs its commands after every message it takes, so with
//! one `client_write` per request the leader appended, flushed and notified once
//! per entry under load. Nothing waits for company: the proposer yields once
//! (so requests already running on this worker can queue theirs) and then takes
//! whatever is queued; a lone write goes alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use tokio::sync::{mpsc, oneshot};

use crate::raft::types::{Raft, TypeConfig};
use crate::state::{Command, CommandResult};

/// What a write gets back: its log index and result, or openraft's refusal.
pub(super) type Written =
    Result<(u64, CommandResult), RaftError<TypeConfig, ClientWriteError<TypeConfig>>>;

/// Most writes handed over in one message, and most of their encoded bytes
/// (a batch always takes at least one): bounds one log append.
const MAX_BATCH_WRITES: usize = 1024;
const MAX_BATCH_BYTES: u64 = 8 * 1024 * 1024;

/// How long a cut-off batch waits for the stopped core to publish why it
/// stopped (it does so as it exits; past this the answer is just "stopped").
const STOP_CAUSE_WAIT: Duration = Duration::from_secs(1);

struct Proposal {
    cmd: Command,
    /// The command's encoded size (the caller has it from its size check).
    bytes: u64,
    reply: oneshot::Sender<Written>,
}

/// How much batching happens, for `/metrics`.
#[derive(Default)]
pub(super) struct ProposerStats {
    /// Messages handed to openraft.
    pub(super) batches: AtomicU64,
    /// Writes in them.
    pub(super) writes: AtomicU64,
}

/// Feeds one node's Raft; clones share the task. The task ends with the last clone.
#[derive(Clone)]
pub(super) struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
    stats: Arc<ProposerStats>,
}

impl Proposer {
    pub(super) fn start(raft: Raft) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ProposerStats::default());
        tokio::spawn(run(raft, rx, stats.clone()));
        Proposer { tx, stats }
    }

    pub(super) fn stats(&self) -> &ProposerStats {
        &self.stats
    }

    /// Proposes `cmd` (`bytes` encoded) and waits until it is applied here
    /// (or refused).
    pub(super) async fn write(&self, cmd: Command, bytes: u64) -> Written {
        let (reply, rx) = oneshot::channel();
        let stopped = || RaftError::Fatal(Fatal::Stopped);
        if self.tx.send(Proposal { cmd, bytes, reply }).is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>, stats: Arc<ProposerStats>) {
    while let Some(first) = rx.recv().await {
        // Let the requests already runnable on this worker queue theirs first.
        tokio::task::yield_now().await;
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let (cmds, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        match raft.client_write_many(cmds).await {
            // Results come in order, each once its entry is applied: answer them
            // on their own task so the next batch is not held up.
            Ok(results) => {
                let raft = raft.clone();
                tokio::spawn(async move {
                    let mut results = results;
                    let mut cause = None;
                    for reply in replies {
                        let written = match results.next().await {
                            Some(Ok(Ok(w))) => Ok((w.log_id.index, w.response)),
                            Some(Ok(Err(e))) => Err(RaftError::APIError(e)),
                            Some(Err(_)) | None => {
                                if cause.is_none() {
                                    cause = Some(stop_cause(&raft).await);
                                }
                                Err(RaftError::Fatal(cause.clone().expect("just set")))
                            }
                        };
                        // A caller that gave up has nothing to hear.
                        let _ = reply.send(written);
                    }
                });
            }
            Err(_) => {
                let cause = stop_cause(&raft).await;
                for reply in replies {
                    let _ = reply.send(Err(RaftError::Fatal(cause.clone())));
                }
            }
        }
    }
}

/// Why the core stopped. The batch API only says "stopped"; what stopped it
/// (a failed disk, a panic) is in the metrics once the core has exited, and
/// the client is told that, as `client_write` would.
async fn stop_cause(raft: &Raft) -> Fatal<TypeConfig> {
    let stopped = raft
        .wait(Some(STOP_CAUSE_WAIT))
        .metrics(|m| m.running_state.is_err(), "the raft core stopped")
        .await;
    match stopped {
        Ok(m) => m.running_state.err().unwrap_or(Fatal::Stopped),
        Err(_) => Fatal::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::test_support::start_node;

    fn apply_to(plugin: String) -> Command {
        Command::Apply {
            plugin,
            input: Vec::new(),
            timestamp_ms: 1,
            idempotency_key: None,
        }
    }

    // A current-thread runtime: every write below is queued before the proposer
    // task first runs, so what it does with a full queue is deterministic.
    #[tokio::test]
    async fn writes_waiting_together_go_as_one_and_each_gets_its_own_answer() {
        let node = start_node(1, |_| {}).await;
        let members = [(node.id, node.member())]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>();
        node.raft.initialize(members).await.expect("initialize");
        node.raft
            .wait(Some(std::time::Duration::from_secs(10)))
            .current_leader(node.id, "self-elected")
            .await
            .expect("leader");
        let p = Proposer::start(node.raft.clone());

        // A lone write goes alone.
        let (first, _) = p.write(apply_to("solo".into()), 64).await.expect("written");
        assert_eq!(1, p.stats().batches.load(Ordering::Relaxed));

        // Each answer names its own command (no plugin is deployed, so each is
        // refused by name), in submission order at consecutive indexes.
        let answers = futures_util::future::join_all(
            (0..50).map(|i| p.write(apply_to(format!("p-{i}")), 64)),
        )
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            let (index, result) = answer.expect("written");
            assert_eq!(first + 1 + i as u64, index);
            let text = result.to_string();
            assert!(text.contains(&format!("\"p-{i}\"")), "answer {i}: {text}");
        }
        assert_eq!(2, p.stats().batches.load(Ordering::Relaxed));
        assert_eq!(51, p.stats().writes.load(Ordering::Relaxed));
        node.stop().await;
    }

    #[tokio::test]
    async fn a_node_that_does_not_lead_refuses_every_write_of_a_batch() {
        let node = start_node(1, |_| {}).await;
        let p = Proposer::start(node.raft.clone());
        let answers =
            futures_util::future::join_all((0..3).map(|i| p.write(apply_to(format!("p-{i}")), 64)))
                .await;
        for answer in answers {
            assert!(
                matches!(
                    answer,
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
                ),
                "{answer:?}"
            );
        }
        node.stop().await;
    }
}
