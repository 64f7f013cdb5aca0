//! The client API of one node over openraft and the state machine: proposing
//! commands, reads (`reads`: linearizable, bounded-staleness, queries),
//! deploys (`registry`), membership changes and join tokens (`membership`).
//!
//! Leader-only calls (writes, read index) made while no leader is known wait
//! for one within the request's deadline instead of failing, so a request
//! that arrives during an election is answered once it is over. Queries take
//! a slot of the Wasm instance pool; a reserve stays free for applying
//! committed entries, so queries can never starve replication.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{Instant as _, ServerState};
use tokio::sync::Semaphore;

use crate::api::error::ApiError;
use crate::api::service::{
    Applied, Backup, ClusterService, ClusterStatus, Consistency, Deadline, DeployOptions,
    DeployResponse, EventBatch, JoinTokenResponse, Member, MemberRole, QueryOutput, RemoveResponse,
    StateHash,
};
use crate::config::Config;
use crate::raft::peer_auth::ClusterSecret;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{NodeId, Raft, TypeConfig};
use crate::runtime::Runtime;
use crate::state::{
    ClusterSettings, Command, CommandResult, IDEMPOTENCY_KEY_REUSED, PluginInfo, Prior,
    SETTINGS_CONFLICT, SettingsError, apply_fingerprint, key_reused,
};

mod membership;
mod reads;
mod registry;

use registry::refusal;

/// One running node's shared parts.
pub(super) struct Inner {
    pub(super) id: NodeId,
    pub(super) raft: Raft,
    pub(super) sm: StateMachine,
    pub(super) runtime: Arc<Runtime>,
    pub(super) config: Config,
    pub(super) counters: super::metrics::Counters,
    /// Query admission: `config.query_instances()` permits of the instance pool.
    pub(super) query_slots: Arc<Semaphore>,
    /// Hands writes to Raft, those waiting together in one message.
    pub(super) proposer: super::proposer::Proposer,
    /// The threads queries run on (`config.query_thread_count()`).
    pub(super) query_pool: crate::worker_pool::WorkerPool,
    /// Free space of the data dir's filesystem; refuses writes below the watermark.
    pub(super) disk: Arc<super::disk::DiskWatch>,
    /// Set when the node asks Raft to shut down, so that stop is not reported as a failure.
    pub(super) stopping: Arc<AtomicBool>,
    /// The cluster secret (join tokens are derived from it).
    pub(super) secret: ClusterSecret,
}

/// Why a leader-only Raft call did not run on this node.
enum NotHere {
    /// This node is not the leader; the leader it knows of (id, address), if any.
    Follower(Option<(NodeId, String)>),
    /// Any other failure, already in API terms.
    Failed(ApiError),
}

fn leader_of(f: &ForwardToLeader<TypeConfig>) -> Option<(NodeId, String)> {
    f.leader_id
        .zip(f.leader_node.as_ref().map(|n| n.addr.clone()))
}

/// Maps an openraft write error. An entry dropped by a leader change may still
/// commit; it is resent only if `resend_safe` (the state machine deduplicates it).
fn write_refusal(
    e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    resend_safe: bool,
    stopping: bool,
) -> NotHere {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            NotHere::Follower(leader_of(&f))
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) if resend_safe => {
            NotHere::Follower(leader_of(&f))
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            NotHere::Failed(ApiError::OutcomeUnknown(
                "the leader changed before the write committed and it may still commit: \
                 retry with an Idempotency-Key"
                    .into(),
            ))
        }
        RaftError::APIError(e) => {
            NotHere::Failed(ApiError::bad_request("membership-error", e.to_string()))
        }
        // Logged once, with openraft's detail, by `health::report_fatal`.
        RaftError::Fatal(f) => NotHere::Failed(super::health::fatal_error(&f, stopping)),
    }
}

/// The client-API service of one node; clones share the node.
#[derive(Clone)]
pub struct NodeService {
    pub(super) inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeService {
    /// This node's Raft handle (for tests and embedding).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// A consistent copy of this node's applied state.
    pub fn state(&self) -> crate::state::State {
        // Not `applied()`: that also clones the membership, a map, per call.
        self.inner.sm.state_and_last_applied().0
    }

    /// The peer addresses of the members: the leader first, then the voters, then the learners.
    pub(super) fn member_peer_addrs(&self) -> Vec<String> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut nodes: Vec<(u8, NodeId, String)> = membership
            .nodes()
            .map(|(id, node)| {
                let rank = if Some(*id) == m.current_leader {
                    0
                } else if voters.contains(id) {
                    1
                } else {
                    2
                };
                (rank, *id, node.peer_addr.clone())
            })
            .collect();
        nodes.sort();
        nodes.into_iter().map(|(_, _, addr)| addr).collect()
    }

    /// The leader's peer address, if this node knows the leader.
    pub(super) fn leader_peer_addr(&self) -> Option<String> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.peer_addr.clone())
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// `Ok` if Raft runs; otherwise why it does not (storage failed, stopped).
    fn raft_health(&self) -> Result<(), ApiError> {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        super::health::raft_health(&m, self.stopping())
    }

    /// Refuses a write this node would propose when Raft has stopped or the
    /// disk alarm is raised. A node that knows another leader lets the write
    /// through: openraft answers "forward to the leader", and the leader
    /// applies its own disk check.
    fn admit_write(&self) -> Result<(), ApiError> {
        self.raft_health()?;
        let other_leader = {
            let m = self.inner.raft.metrics();
            let m = m.borrow_watched();
            m.current_leader.is_some_and(|l| l != self.inner.id)
        };
        if other_leader {
            return Ok(());
        }
        self.inner.disk.admit_write()
    }

    /// A read index that failed for a reason other than "not the leader".
    fn read_refusal(
        &self,
        e: &RaftError<TypeConfig, openraft::error::LinearizableReadError<TypeConfig>>,
    ) -> ApiError {
        if let RaftError::Fatal(f) = e {
            return super::health::fatal_error(f, self.stopping());
        }
        // openraft's text renders membership with Debug; keep it for the log.
        tracing::warn!(error = %e, "linearizable read: leadership not confirmed");
        ApiError::Unavailable(
            "this node could not confirm its leadership with a quorum; retry shortly".into(),
        )
    }

    /// Runs `call`, a leader-only Raft call, until it runs here or names a
    /// leader; while no leader is known, waits (until `deadline`) for one.
    ///
    /// openraft's metrics trail its core by a moment, and the HTTP layer
    /// watches the metrics ([`ClusterService::leader_moved`]) to notice a
    /// leader change. So a leader is only named once the metrics name it too;
    /// until then (and while there is none) each metrics change is a cue to
    /// ask again.
    async fn on_leader<T, F, Fut>(&self, deadline: Deadline, mut call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NotHere>>,
    {
        let mut metrics = self.inner.raft.metrics();
        // Bounded by the deadline: every pass but the last waits for a metrics change.
        loop {
            let leader = match call().await {
                Ok(v) => return Ok(v),
                Err(NotHere::Failed(e)) => return Err(e),
                Err(NotHere::Follower(leader)) => leader,
            };
            let named = metrics.borrow_and_update().current_leader;
            if let Some((id, addr)) = leader
                && named == Some(id)
                && id != self.inner.id
            {
                return Err(ApiError::ForwardToLeader { leader_addr: addr });
            }
            match tokio::time::timeout_at(deadline.instant(), metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ApiError::Unavailable("raft has stopped".into())),
                Err(_) => return Err(ApiError::NoLeader),
            }
        }
    }

    pub(super) async fn propose(
        &self,
        cmd: Command,
        deadline: Deadline,
    ) -> Result<(u64, CommandResult), ApiError> {
        let resend_safe = matches!(
            &cmd,
            Command::Apply {
                idempotency_key: Some(_),
                ..
            }
        );
        let size_bytes = self.check_entry_size(&cmd)?;
        self.admit_write()?;
        self.on_leader(deadline, || async {
            let started = std::time::Instant::now();
            match self.inner.proposer.write(cmd.clone(), size_bytes).await {
                Ok(written) => {
                    self.inner
                        .counters
                        .client_write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    Ok(written)
                }
                Err(e) => Err(write_refusal(e, resend_safe, self.stopping())),
            }
        })
        .await
    }

    /// Refuses a command whose log entry would exceed the cluster's
    /// `max_entry_bytes` (checked on the node the client reached, before any
    /// forwarding; the node's HTTP body cap is a different, local limit).
    /// Returns the command's encoded size.
    fn check_entry_size(&self, cmd: &Command) -> Result<u64, ApiError> {
        let limit_bytes = self.state().settings().max_entry_bytes;
        let size_bytes =
            crate::raft::codec::entry_bytes(cmd).map_err(|e| ApiError::Internal(e.to_string()))?;
        if size_bytes > limit_bytes {
            return Err(ApiError::EntryTooLarge {
                size_bytes,
                limit_bytes,
            });
        }
        Ok(size_bytes)
    }
}

impl ClusterService for NodeService {
    async fn deploy(
        &self,
        name: String,
        wasm: Bytes,
        options: DeployOptions,
        idempotency_key: Option<String>,
        deadline: Deadline,
    ) -> Result<DeployResponse, ApiError> {
        self.deploy_plugin(name, wasm, options, idempotency_key, deadline)
            .await
    }

    async fn set_limits(
        &self,
        name: String,
        options: DeployOptions,
        deadline: Deadline,
    ) -> Result<DeployResponse, ApiError> {
        self.set_plugin_limits(name, options, deadline).await
    }

    async fn remove(&self, name: String, deadline: Deadline) -> Result<RemoveResponse, ApiError> {
        let cmd = Command::Remove { name: name.clone() };
        match self.propose(cmd, deadline).await? {
            (log_index, CommandResult::Removed { name }) => Ok(RemoveResponse { name, log_index }),
            (_, CommandResult::Failed(e)) if e.code == "plugin-not-found" => {
                Err(ApiError::PluginNotFound { name })
            }
            (_, CommandResult::Failed(e)) => Err(ApiError::Plugin(e)),
            (_, other) => Err(ApiError::Internal(format!(
                "unexpected remove result {other}"
            ))),
        }
    }

    async fn list_plugins(&self) -> Result<Vec<PluginInfo>, ApiError> {
        Ok(self.state().plugins())
    }

    async fn get_plugin(&self, name: String) -> Result<PluginInfo, ApiError> {
        self.state()
            .plugin(&name)
            .ok_or(ApiError::PluginNotFound { name })
    }

    async fn apply(
        &self,
        name: String,
        input: Bytes,
        idempotency_key: Option<String>,
        deadline: Deadline,
    ) -> Result<Applied, ApiError> {
        let started = std::time::Instant::now();
        // A retry whose first attempt is already applied here needs no new
        // log entry; a different request under the key is refused here too.
        if let Some(key) = &idempotency_key {
            let fp = apply_fingerprint(&name, &input);
            match self.state().idempotency_prior(&name, key, &fp) {
                Prior::Same(rec) => {
                    return Ok(Applied {
                        log_index: rec.index,
                        result: rec.result,
                    });
                }
                Prior::Reused => return Err(refusal(key_reused(key))),
                Prior::Fresh => {}
            }
        }
        let cmd = Command::Apply {
            plugin: name.clone(),
            input: input.to_vec(),
            timestamp_ms: now_ms(),
            idempotency_key,
        };
        let (log_index, result) = match self.propose(cmd, deadline).await? {
            // A retry that raced its first attempt through the log reports the
            // first attempt's index and result, like a retry that arrives later.
            (_, CommandResult::Duplicate { index, result }) => (index, *result),
            (_, CommandResult::Failed(e)) if e.code == IDEMPOTENCY_KEY_REUSED => {
                return Err(refusal(e));
            }
            answer => answer,
        };
        let counters = &self.inner.counters;
        counters.apply(matches!(result, CommandResult::Applied(_)));
        counters
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Applied { log_index, result })
    }

    async fn query(
        &self,
        name: String,
        input: Bytes,
        consistency: Consistency,
        min_index: Option<u64>,
        deadline: Deadline,
    ) -> Result<QueryOutput, ApiError> {
        self.run_query(name, input, consistency, min_index, deadline)
            .await
    }

    async fn cluster_status(&self) -> Result<ClusterStatus, ApiError> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        // Replication progress exists only on the leader (openraft's
        // `replication`/`heartbeat` are `None` elsewhere).
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).copied())
                .map(|l| l.map_or(0, |l| l.index))
        };
        let last_ack_ms_ago = |id: &NodeId| {
            m.heartbeat
                .as_ref()
                .and_then(|h| h.get(id).copied().flatten())
                .map(|at| at.elapsed().as_millis() as u64)
        };
        let last_log = m.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = matched(id);
                Member {
                    id: *id,
                    addr: node.addr.clone(),
                    peer_addr: node.peer_addr.clone(),
                    role: if voters.contains(id) {
                        MemberRole::Voter
                    } else {
                        MemberRole::Learner
                    },
                    matched_index,
                    lag_entries: matched_index.map(|i| last_log.saturating_sub(i)),
                    last_ack_ms_ago: last_ack_ms_ago(id),
                }
            })
            .collect();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        Ok(ClusterStatus {
            id: self.inner.id,
            state: state.to_string(),
            leader_id: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            committed: m.local_committed.map(|l| l.index),
            last_log_index: m.last_log_index,
            members,
        })
    }

    async fn add_member(
        &self,
        id: NodeId,
        addr: String,
        peer_addr: String,
        deadline: Deadline,
    ) -> Result<ClusterStatus, ApiError> {
        self.add_voter(id, addr, peer_addr, deadline).await
    }

    async fn join_token(&self, ttl_secs: Option<u64>) -> Result<JoinTokenResponse, ApiError> {
        self.issue_join_token(ttl_secs)
    }

    async fn remove_member(
        &self,
        id: NodeId,
        deadline: Deadline,
    ) -> Result<ClusterStatus, ApiError> {
        self.remove_from_membership(id, deadline).await
    }

    async fn leader_moved(&self, leader_addr: String) {
        // `on_leader` names a leader only once the metrics name it too, so
        // waiting until they stop naming it cannot mistake stale metrics for
        // a change.
        let named = |m: &openraft::RaftMetrics<TypeConfig>| {
            m.current_leader
                .and_then(|id| m.membership_config.membership().get_node(&id))
                .is_some_and(|n| n.addr == leader_addr)
        };
        let moved = self
            .inner
            .raft
            .wait(None)
            .metrics(|m| !named(m), "the leader moved")
            .await;
        // An error means Raft shut down; the request's deadline then decides.
        if moved.is_err() {
            std::future::pending::<()>().await;
        }
    }

    async fn metrics(&self) -> Result<String, ApiError> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let node = super::metrics::NodeGauges {
            disk: self.inner.disk.status(),
            raft_fatal: super::health::is_fatal(&m, self.stopping()),
        };
        Ok(super::metrics::render(
            &m,
            &self.state(),
            &self.inner.counters,
            &node,
            &super::metrics::Sources {
                state_machine: self.inner.sm.stats(),
                calls: self.inner.runtime.call_counters(),
                proposer: self.inner.proposer.stats(),
            },
        ))
    }

    async fn state_hash(&self) -> Result<StateHash, ApiError> {
        let state = self.state();
        Ok(StateHash {
            applied_index: state.applied_index(),
            hash: state.hash_hex(),
        })
    }

    async fn backup(&self) -> Result<Backup, ApiError> {
        let sm = self.inner.sm.clone();
        // The copy is O(1); encoding the whole state is not, so it runs off
        // the async workers.
        let image = tokio::task::spawn_blocking(move || sm.backup())
            .await
            .map_err(|e| ApiError::Internal(format!("backup task failed: {e}")))?
            .map_err(|e| ApiError::Internal(format!("encoding the backup failed: {e}")))?;
        Ok(Backup {
            applied_index: image.applied_index,
            state_hash: image.state_hash,
            bytes: Bytes::from(image.bytes),
        })
    }

    async fn readiness(&self) -> Result<(), ApiError> {
        self.raft_health()?;
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let Some(_) = m.current_leader else {
            return Err(ApiError::NotReady("no leader known".into()));
        };
        // Under load the applied index always trails the committed one by
        // the batch being applied; only a real backlog (a restart replaying
        // its log, a follower catching up) makes the node not ready.
        let applied = m.last_applied.map_or(0, |l| l.index);
        let committed = m.local_committed.map_or(0, |l| l.index);
        let lag = committed.saturating_sub(applied);
        if lag > self.inner.config.ready_max_lag_entries {
            return Err(ApiError::NotReady(format!(
                "applied {applied} of {committed} committed entries (more than {} behind)",
                self.inner.config.ready_max_lag_entries
            )));
        }
        Ok(())
    }

    fn max_upload_bytes(&self) -> u64 {
        self.inner.sm.applied().state.settings().max_plugin_bytes
    }

    async fn dry_run(
        &self,
        name: String,
        wasm: Bytes,
        options: DeployOptions,
        queries: Vec<serde_json::Value>,
    ) -> Result<crate::state::DryRunReport, ApiError> {
        self.dry_run_deploy(name, wasm, options, queries).await
    }

    async fn settings(&self) -> Result<ClusterSettings, ApiError> {
        Ok(self.state().settings().clone())
    }

    async fn update_settings(
        &self,
        changes: serde_json::Value,
        deadline: Deadline,
    ) -> Result<ClusterSettings, ApiError> {
        let state = self.state();
        let expected_index = state.settings_index();
        let settings = state
            .settings()
            .merged(&changes)
            .map_err(|e| ApiError::bad_request(SettingsError::CODE, e.to_string()))?;
        settings
            .validate()
            .map_err(|e| ApiError::bad_request(SettingsError::CODE, e.to_string()))?;
        let cmd = Command::UpdateSettings {
            settings,
            expected_index,
        };
        match self.propose(cmd, deadline).await? {
            (_, CommandResult::SettingsUpdated(s)) => Ok(s),
            (_, CommandResult::Failed(e)) if e.code == SETTINGS_CONFLICT => {
                Err(ApiError::Conflict {
                    code: e.code,
                    message: e.message,
                })
            }
            (_, CommandResult::Failed(e)) => Err(ApiError::bad_request(e.code, e.message)),
            (_, other) => Err(ApiError::Internal(format!(
                "unexpected settings result {other}"
            ))),
        }
    }

    fn events_since(
        &self,
        name: &str,
        from: crate::state::EventId,
        max_bytes: u64,
    ) -> Result<EventBatch, ApiError> {
        let state = self.state();
        match state.read_events(name, from, max_bytes) {
            None => Err(ApiError::PluginNotFound {
                name: name.to_string(),
            }),
            Some(Err(gone)) => Err(ApiError::Gone {
                oldest_index: gone.oldest_index,
            }),
            Some(Ok(read)) => Ok(EventBatch {
                events: read.events,
                more: read.more,
                applied_index: state.applied_index(),
            }),
        }
    }

    fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.sm.subscribe_applied()
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.raft_health()
    }
}
