//! The client API of one node over openraft and the state machine: proposing
//! commands, linearizable and bounded-staleness reads, membership changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ReadPolicy, ServerState};

use crate::api::error::ApiError;
use crate::api::service::{
    Applied, ClusterService, ClusterStatus, Consistency, DeployOptions, DeployResponse, Member,
    MemberRole, QueryOutput, RemoveResponse, StateHash,
};
use crate::config::Config;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{NodeId, Raft, TypeConfig};
use crate::runtime::{Runtime, ValidateError};
use crate::state::{
    ClusterSettings, Command, CommandResult, PluginInfo, SETTINGS_CONFLICT, SettingsError,
    validate_plugin_name,
};

/// One running node's shared parts.
pub(super) struct Inner {
    pub(super) id: NodeId,
    pub(super) raft: Raft,
    pub(super) sm: StateMachine,
    pub(super) runtime: Arc<Runtime>,
    pub(super) config: Config,
    pub(super) counters: super::metrics::Counters,
    /// Free space of the data dir's filesystem; refuses writes below the watermark.
    pub(super) disk: Arc<super::disk::DiskWatch>,
    /// Set when the node asks Raft to shut down, so that stop is not reported as a failure.
    pub(super) stopping: Arc<AtomicBool>,
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
        self.inner.sm.applied().state
    }

    /// Maps an openraft write error: a follower answers "forward to the leader".
    fn write_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ApiError {
        if let Some(f) = e.forward_to_leader() {
            return match &f.leader_node {
                Some(node) => ApiError::ForwardToLeader {
                    leader_addr: node.addr.clone(),
                },
                None => ApiError::NoLeader,
            };
        }
        match e {
            // Logged once, with openraft's detail, by `health::report_fatal`.
            RaftError::Fatal(f) => super::health::fatal_error(&f, self.stopping()),
            RaftError::APIError(e) => ApiError::bad_request("membership-error", e.to_string()),
        }
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

    pub(super) async fn propose(&self, cmd: Command) -> Result<(u64, CommandResult), ApiError> {
        self.admit_write()?;
        match self.inner.raft.client_write(cmd).await {
            Ok(resp) => Ok((resp.log_id.index, resp.data)),
            Err(e) => Err(self.write_error(e)),
        }
    }

    /// Makes this node's applied state linearizable: a read index confirmed by
    /// a quorum, then applied locally. Only the leader can do it.
    async fn linearize(&self) -> Result<(), ApiError> {
        match self
            .inner
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(f) = e.forward_to_leader() {
                    return Err(match &f.leader_node {
                        Some(node) => ApiError::ForwardToLeader {
                            leader_addr: node.addr.clone(),
                        },
                        None => ApiError::NoLeader,
                    });
                }
                if let RaftError::Fatal(f) = &e {
                    return Err(super::health::fatal_error(f, self.stopping()));
                }
                // openraft's text renders membership with Debug; keep it for the log.
                tracing::warn!(error = %e, "linearizable read: leadership not confirmed");
                Err(ApiError::Unavailable(
                    "this node could not confirm its leadership with a quorum; retry shortly"
                        .into(),
                ))
            }
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), ApiError> {
        let mut rx = self.inner.sm.subscribe_applied();
        let wait = rx.wait_for(|applied| *applied >= index);
        match tokio::time::timeout(self.inner.config.min_index_wait(), wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiError::Unavailable("state machine stopped".into())),
            Err(_) => Err(ApiError::Timeout(format!(
                "index {index} not applied within the wait limit"
            ))),
        }
    }
}

impl ClusterService for NodeService {
    async fn deploy(
        &self,
        name: String,
        wasm: Bytes,
        options: DeployOptions,
    ) -> Result<DeployResponse, ApiError> {
        validate_plugin_name(&name).map_err(|e| ApiError::bad_request(e.code, e.message))?;
        // Refuse before compiling; `propose` checks again right before proposing.
        self.admit_write()?;
        // Checked here for a prompt answer; the state machine checks again
        // against the settings in force when the deploy applies.
        let settings = self.state().settings().clone();
        let fuel_per_call = options
            .fuel_per_call
            .unwrap_or(settings.default_fuel_per_call);
        if fuel_per_call > settings.max_fuel_per_call {
            return Err(ApiError::bad_request(
                "fuel-too-large",
                format!(
                    "fuel_per_call may be at most {} (the cluster's max_fuel_per_call)",
                    settings.max_fuel_per_call
                ),
            ));
        }
        let memory_limit_bytes = options
            .memory_limit_bytes
            .unwrap_or(settings.default_memory_limit_bytes);
        if memory_limit_bytes > settings.max_memory_limit_bytes {
            return Err(ApiError::bad_request(
                "memory-limit-too-large",
                format!(
                    "memory_limit_bytes may be at most {} (the cluster's max_memory_limit_bytes)",
                    settings.max_memory_limit_bytes
                ),
            ));
        }
        let runtime = self.inner.runtime.clone();
        let wasm2 = wasm.clone();
        // Validation compiles the component: CPU work, off the async workers.
        tokio::task::spawn_blocking(move || {
            runtime.validate(
                &wasm2,
                settings.engine_params(),
                settings.max_plugin_bytes as usize,
            )
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            ValidateError::TooLarge { max_bytes, .. } => ApiError::BodyTooLarge {
                limit_bytes: max_bytes as u64,
            },
            ValidateError::Host(m) => ApiError::Unavailable(m),
            e => ApiError::bad_request(e.code(), e.to_string()),
        })?;
        let cmd = Command::Deploy {
            name,
            wasm: wasm.to_vec(),
            fuel_per_call,
            memory_limit_bytes,
            timestamp_ms: now_ms(),
        };
        match self.propose(cmd).await? {
            (log_index, CommandResult::Deployed(info)) => Ok(DeployResponse {
                name: info.name,
                version: info.version,
                sha256: info.sha256,
                log_index,
            }),
            (_, CommandResult::Failed(e)) => Err(ApiError::bad_request(e.code, e.message)),
            (_, other) => Err(ApiError::Internal(format!(
                "unexpected deploy result {other}"
            ))),
        }
    }

    async fn remove(&self, name: String) -> Result<RemoveResponse, ApiError> {
        match self.propose(Command::Remove { name: name.clone() }).await? {
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
    ) -> Result<Applied, ApiError> {
        // A retry whose first attempt is already applied here needs no new log entry.
        if let Some(key) = &idempotency_key
            && let Some(rec) = self.state().idempotent_result(&name, key)
        {
            return Ok(Applied {
                log_index: rec.index,
                result: rec.result,
            });
        }
        let cmd = Command::Apply {
            plugin: name.clone(),
            input: input.to_vec(),
            timestamp_ms: now_ms(),
            idempotency_key: idempotency_key.clone(),
        };
        let (log_index, result) = self.propose(cmd).await?;
        self.inner
            .counters
            .apply(matches!(result, CommandResult::Applied(_)));
        // A retry that raced its first attempt through the log reports the
        // first attempt's index, like a retry that arrives later.
        let log_index = match &idempotency_key {
            Some(key) => self
                .state()
                .idempotent_result(&name, key)
                .map_or(log_index, |r| r.index),
            None => log_index,
        };
        Ok(Applied { log_index, result })
    }

    async fn query(
        &self,
        name: String,
        input: Bytes,
        consistency: Consistency,
        min_index: Option<u64>,
    ) -> Result<QueryOutput, ApiError> {
        if consistency == Consistency::Linearizable {
            self.linearize().await?;
        }
        if let Some(index) = min_index {
            self.wait_applied(index).await?;
        }
        let state = self.state();
        let runtime = self.inner.runtime.clone();
        let applied_index = state.applied_index();
        let result = tokio::task::spawn_blocking(move || state.query(&runtime, &name, &input))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        self.inner.counters.query(result.is_ok());
        match result {
            Ok(out) => Ok(QueryOutput {
                applied_index,
                output: out.output,
            }),
            Err(e) => Err(ApiError::Plugin(e)),
        }
    }

    async fn cluster_status(&self) -> Result<ClusterStatus, ApiError> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                role: if voters.contains(id) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                },
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
            members,
        })
    }

    async fn add_member(&self, id: NodeId, addr: String) -> Result<ClusterStatus, ApiError> {
        self.admit_write()?;
        let raft = &self.inner.raft;
        let added = raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(|e| self.write_error(e))?;
        // openraft's "blocking" add only waits until the learner is within
        // `replication_lag_threshold` entries, which an empty learner already
        // is. Promote it only once it holds everything up to its own addition
        // (possibly via a snapshot), so a new voter never weakens the quorum.
        let target = added.log_id.index;
        raft.wait(Some(self.inner.config.install_snapshot_timeout()))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .and_then(|matched| matched.as_ref())
                        .is_some_and(|l| l.index >= target)
                },
                format!("learner {id} catches up to index {target}"),
            )
            .await
            .map_err(|e| ApiError::Timeout(format!("learner {id} did not catch up: {e}")))?;
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.write_error(e))?;
        self.cluster_status().await
    }

    async fn remove_member(&self, id: NodeId) -> Result<ClusterStatus, ApiError> {
        self.admit_write()?;
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow_watched().clone();
        let is_voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id);
        let known = m
            .membership_config
            .membership()
            .nodes()
            .any(|(n, _)| *n == id);
        if !known {
            return Err(ApiError::bad_request(
                "unknown-member",
                format!("node {id} is not a member"),
            ));
        }
        if is_voter {
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(|e| self.write_error(e))?;
        }
        raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.write_error(e))?;
        self.cluster_status().await
    }

    async fn leader_moved(&self, leader_addr: String) {
        // openraft's metrics trail its core by a moment: right after an
        // election they may still name the previous leader. So first wait
        // until they name the leader we forwarded to, then until they stop.
        let named = |m: &openraft::RaftMetrics<TypeConfig>| {
            m.current_leader
                .and_then(|id| m.membership_config.membership().get_node(&id))
                .is_some_and(|n| n.addr == leader_addr)
        };
        let wait = self.inner.raft.wait(None);
        let moved = async {
            wait.metrics(|m| named(m), "metrics name the leader")
                .await?;
            wait.metrics(|m| !named(m), "the leader moved").await
        };
        // An error means Raft shut down; the forward's own timeout then decides.
        if moved.await.is_err() {
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
        ))
    }

    async fn state_hash(&self) -> Result<StateHash, ApiError> {
        let state = self.state();
        Ok(StateHash {
            applied_index: state.applied_index(),
            hash: state.hash_hex(),
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

    async fn settings(&self) -> Result<ClusterSettings, ApiError> {
        Ok(self.state().settings().clone())
    }

    async fn update_settings(
        &self,
        changes: serde_json::Value,
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
        match self.propose(cmd).await? {
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

    async fn health(&self) -> Result<(), ApiError> {
        self.raft_health()
    }
}
