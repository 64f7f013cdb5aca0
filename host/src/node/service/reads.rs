//! The read path: linearizable reads (from the leader's lease when it
//! certainly holds, else a read index confirmed by a quorum), `min_index`
//! waits, and queries admitted to a slot and run on the query threads.

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::{Instant as _, ReadPolicy, ServerState};

use super::{NodeService, NotHere, leader_of, now_ms};
use crate::api::error::ApiError;
use crate::api::service::{Consistency, Deadline, QueryOutput};
use crate::raft::types::TypeConfig;
use crate::state::QueryError;

impl NodeService {
    /// A query (see [`ClusterService::query`]): made linearizable if asked,
    /// admitted to a query slot, run on a query thread.
    pub(super) async fn run_query(
        &self,
        name: String,
        input: Bytes,
        consistency: Consistency,
        min_index: Option<u64>,
        deadline: Deadline,
    ) -> Result<QueryOutput, ApiError> {
        let started = std::time::Instant::now();
        // On a leader with a certain lease, the applied state is already
        // linearizable: no round through openraft's core.
        let mut leased = None;
        if consistency == Consistency::Linearizable {
            leased = self.lease_read_state();
            match leased {
                Some(_) => self.inner.counters.linearizable_read("lease"),
                None => self.linearize(deadline).await?,
            }
        }
        if let Some(index) = min_index {
            self.wait_applied(index, deadline).await?;
            // A state taken before the wait may not hold `index` yet.
            leased = None;
        }
        // Wait briefly, then refuse: a short wait absorbs bursts, a long
        // queue would only grow under overload, and the client learns when
        // to come back.
        let slot = match self.inner.query_slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            // Only a busy pool pays for a timer.
            Err(_) => {
                let wait = self.inner.config.query_slot_wait();
                let acquire = self.inner.query_slots.clone().acquire_owned();
                tokio::time::timeout(wait, acquire)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(slot) = slot else {
            self.inner.counters.query_refused();
            return Err(ApiError::Overloaded {
                what: format!(
                    "all {} query slots are busy",
                    self.inner.config.query_instances()
                ),
                retry_after_secs: self.inner.config.overload_retry_after_secs,
            });
        };
        // A newer state than the leased one is as linearizable (it only adds
        // committed writes); the leased one saves a lock and a clone.
        let state = leased.unwrap_or_else(|| self.state());
        let runtime = self.inner.runtime.clone();
        let applied_index = state.applied_index();
        // The slot moves into the job: a request that times out stops
        // waiting, but its instance is busy until the call returns (a job
        // not yet started when its caller left never runs).
        // The runtime reads no clocks (DESIGN.md rule 5); the node hands it its own.
        let now = now_ms();
        let result = self
            .inner
            .query_pool
            .run(move || {
                let _slot = slot;
                state.query(&runtime, &name, &input, now)
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let counters = &self.inner.counters;
        counters.query(result.is_ok());
        counters
            .query_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(out) => Ok(QueryOutput {
                applied_index,
                output: out.output,
            }),
            Err(QueryError::Failed(e)) => Err(ApiError::Plugin(e)),
            // This node could not run it (pool busy, engine fault): not the
            // plugin's answer, so a retryable 503 rather than a 4xx.
            Err(QueryError::Host(fault)) => Err(ApiError::Unavailable(fault.to_string())),
        }
    }

    /// Makes this node's applied state linearizable. Only the leader can do
    /// it: from its lease when that certainly holds, else with a read index
    /// confirmed by a quorum.
    pub(super) async fn linearize(&self, deadline: Deadline) -> Result<(), ApiError> {
        if self.lease_holds_now() {
            // The read index is taken inside `ensure_linearizable`; the lease
            // must still hold *after* that moment, so it is checked again.
            // Any failure falls back to the quorum round below.
            if self
                .inner
                .raft
                .ensure_linearizable(ReadPolicy::LeaseRead)
                .await
                .is_ok()
                && self.lease_holds_now()
            {
                self.inner.counters.linearizable_read("lease");
                return Ok(());
            }
        }
        self.on_leader(deadline, || async {
            match self
                .inner
                .raft
                .ensure_linearizable(ReadPolicy::ReadIndex)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(match e.forward_to_leader() {
                    Some(f) => NotHere::Follower(leader_of(f)),
                    None => NotHere::Failed(self.read_refusal(&e)),
                }),
            }
        })
        .await?;
        self.inner.counters.linearizable_read("read_index");
        Ok(())
    }

    /// The applied state, when a linearizable read may be answered from it
    /// without asking openraft's core (the common case on a leader):
    /// - this node leads and its lease certainly holds *after* the state was
    ///   taken, so no other leader existed when it was; and
    /// - the state ends with an entry of the leader's own term, so it holds
    ///   everything earlier leaders committed (leader completeness).
    ///
    /// Every write this leader acknowledged was applied (and published)
    /// before its answer, so it is in the state too. `None`: go through
    /// [`Self::linearize`].
    fn lease_read_state(&self) -> Option<crate::state::State> {
        let (state, last_applied) = self.inner.sm.state_and_last_applied();
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let own_term = last_applied
            .as_ref()
            .is_some_and(|id| *id.committed_leader_id() == m.vote.leader_id);
        (own_term && self.lease_holds(&m)).then_some(state)
    }

    /// Whether this node leads with a read lease that certainly holds now:
    /// a quorum acknowledged a heartbeat or append *sent* less than
    /// [`crate::config::Config::read_lease`] ago (openraft's metrics lag its
    /// core, which only makes the acknowledgement look older). A single voter
    /// is its own quorum.
    fn lease_holds(&self, m: &openraft::RaftMetrics<TypeConfig>) -> bool {
        let Some(lease) = self.inner.config.read_lease() else {
            return false;
        };
        if m.current_leader != Some(self.inner.id) || m.state != ServerState::Leader {
            return false;
        }
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        if voters == 1 && membership.voter_ids().any(|id| id == self.inner.id) {
            return true;
        }
        m.last_quorum_acked
            .as_ref()
            .is_some_and(|acked| openraft::alias::InstantOf::<TypeConfig>::now() < **acked + lease)
    }

    /// [`Self::lease_holds`] on the current metrics.
    pub(super) fn lease_holds_now(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        self.lease_holds(&m)
    }

    pub(super) async fn wait_applied(
        &self,
        index: u64,
        deadline: Deadline,
    ) -> Result<(), ApiError> {
        let mut rx = self.inner.sm.subscribe_applied();
        let wait = rx.wait_for(|applied| *applied >= index);
        let until = deadline
            .instant()
            .min(tokio::time::Instant::now() + self.inner.config.min_index_wait());
        match tokio::time::timeout_at(until, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiError::Unavailable("state machine stopped".into())),
            Err(_) => Err(ApiError::Timeout(format!(
                "index {index} not applied within the wait limit"
            ))),
        }
    }
}
