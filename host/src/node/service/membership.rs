//! Membership: adding a node (as a learner that catches up, then a voter),
//! removing one, and issuing the join tokens new nodes present.

use std::collections::BTreeSet;

use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;

use super::{NodeService, now_ms, write_refusal};
use crate::api::error::ApiError;
use crate::api::service::{ClusterService, ClusterStatus, Deadline, JoinTokenResponse};
use crate::raft::join::JoinToken;
use crate::raft::types::{Node, NodeId};

impl NodeService {
    /// Adds node `id` (see [`ClusterService::add_member`]): as a learner first,
    /// promoted to voter once it holds the log up to its own addition.
    pub(super) async fn add_voter(
        &self,
        id: NodeId,
        addr: String,
        peer_addr: String,
        deadline: Deadline,
    ) -> Result<ClusterStatus, ApiError> {
        self.admit_write()?;
        for (what, value) in [("addr", &addr), ("peer_addr", &peer_addr)] {
            if crate::http_client::url(value, "/").is_err() {
                return Err(ApiError::bad_request(
                    "bad-member-addr",
                    format!("{what} {value:?} is not host:port or an http(s) URL"),
                ));
            }
        }
        let raft = &self.inner.raft;
        let added = self
            .on_leader(deadline, || async {
                let node = Node::new(addr.clone(), peer_addr.clone());
                raft.add_learner(id, node, true)
                    .await
                    .map_err(|e| write_refusal(e, false, self.stopping()))
            })
            .await?;
        // openraft's "blocking" add only waits until the learner is within
        // `replication_lag_threshold` entries, which an empty learner already
        // is. Promote it only once it holds everything up to its own addition
        // (possibly via a snapshot), so a new voter never weakens the quorum.
        let target = added.log_id.index;
        let catch_up = deadline
            .remaining()
            .min(self.inner.config.install_snapshot_timeout());
        raft.wait(Some(catch_up))
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
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), deadline)
            .await?;
        self.cluster_status().await
    }

    /// A join token valid for `ttl_secs` (or the configured default).
    pub(super) fn issue_join_token(
        &self,
        ttl_secs: Option<u64>,
    ) -> Result<JoinTokenResponse, ApiError> {
        let config = &self.inner.config;
        let ttl = ttl_secs.unwrap_or(config.join_token_ttl_secs);
        if ttl == 0 || ttl > config.max_join_token_ttl_secs {
            return Err(ApiError::bad_request(
                "bad-ttl",
                format!(
                    "ttl_secs must be 1..={} (max_join_token_ttl_secs)",
                    config.max_join_token_ttl_secs
                ),
            ));
        }
        // This node can hand out the secret and point at the leader, so it is
        // named even before its metrics show the membership (right after init).
        let mut peers = self.member_peer_addrs();
        if !peers.contains(&config.peer_advertise_addr) {
            peers.push(config.peer_advertise_addr.clone());
        }
        let expires = now_ms() / 1000 + ttl;
        let token = JoinToken::issue(&self.inner.secret, peers.clone(), expires)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        tracing::info!(token = %token.id, expires_unix_secs = expires, "issued a join token");
        Ok(JoinTokenResponse {
            token: token.encode(),
            expires_at_unix_secs: expires,
            peers,
        })
    }

    /// Removes node `id`: from the voters first if it is one, then from the nodes.
    pub(super) async fn remove_from_membership(
        &self,
        id: NodeId,
        deadline: Deadline,
    ) -> Result<ClusterStatus, ApiError> {
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
            let voters = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            self.change_membership(voters, deadline).await?;
        }
        let nodes = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
        self.change_membership(nodes, deadline).await?;
        self.cluster_status().await
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, Node>,
        deadline: Deadline,
    ) -> Result<(), ApiError> {
        self.on_leader(deadline, || async {
            self.inner
                .raft
                .change_membership(change.clone(), false)
                .await
                .map(|_| ())
                .map_err(|e| write_refusal(e, false, self.stopping()))
        })
        .await
    }
}
