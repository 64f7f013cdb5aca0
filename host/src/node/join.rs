//! The node's side of joining: where its cluster secret comes from (made at
//! init, stored, or fetched with a join token), asking the cluster to add it,
//! and admitting others that ask ([`Joins`], behind `POST /raft/join`).

use std::path::Path;
use std::time::Duration;

use crate::api::ClusterService;
use crate::api::error::ApiError;
use crate::api::service::Deadline;
use crate::config::Config;
use crate::http_client::HttpClient;
use crate::raft::join::{self, JoinPolicy, JoinRequest, JoinToken};
use crate::raft::peer_auth::ClusterSecret;
use crate::raft::peer_listener::{JoinHandler, JoinRefusal};

use super::{NodeError, NodeService};

/// How the joining node asks: `join_max_attempts` rounds, `join_timeout_ms` per request.
fn policy(config: &Config) -> JoinPolicy {
    JoinPolicy {
        attempts: config.join_max_attempts,
        retry_interval: Duration::from_millis(config.join_retry_interval_ms),
        request_timeout: Duration::from_millis(config.join_timeout_ms),
    }
}

/// The members to ask: `--join` first, then those the token names.
fn member_addrs(config: &Config, token: &JoinToken) -> Vec<String> {
    let mut addrs: Vec<String> = config.join_url.iter().cloned().collect();
    for peer in &token.peers {
        if !addrs.contains(peer) {
            addrs.push(peer.clone());
        }
    }
    addrs
}

fn join_error(config: &Config, e: join::JoinError) -> NodeError {
    NodeError::Join {
        url: config
            .join_url
            .clone()
            .unwrap_or_else(|| "the members the join token names".into()),
        reason: e.to_string(),
    }
}

/// This node's cluster secret: the stored one; else, with a join token, the
/// cluster's (fetched, then stored); else, for a fresh log, a new one (the
/// node is about to initialise a cluster). A node with a log but no secret
/// cannot talk to its peers and refuses to start.
pub(super) async fn cluster_secret(
    config: &Config,
    client: &HttpClient,
    fresh_log: bool,
) -> Result<ClusterSecret, NodeError> {
    let dir = &config.data_dir;
    if let Some(secret) = ClusterSecret::load(dir)? {
        return Ok(secret);
    }
    match &config.join_token {
        Some(text) => {
            let token = JoinToken::parse(text.expose()).map_err(|e| join_error(config, e))?;
            let addrs = member_addrs(config, &token);
            tracing::info!(members = ?addrs, "asking the cluster for its secret with the join token");
            let secret = join::fetch_secret(client, config.node_id, &token, &addrs, policy(config))
                .await
                .map_err(|e| join_error(config, e))?;
            store(&secret, dir)?;
            Ok(secret)
        }
        None if fresh_log => {
            let secret = ClusterSecret::generate()?;
            store(&secret, dir)?;
            Ok(secret)
        }
        None => Err(NodeError::MissingSecret {
            path: ClusterSecret::path(dir),
        }),
    }
}

fn store(secret: &ClusterSecret, dir: &Path) -> Result<(), NodeError> {
    secret.store(dir)?;
    // The path, never the secret.
    tracing::info!(path = %ClusterSecret::path(dir).display(), "stored the cluster secret");
    Ok(())
}

/// Asks the cluster (through the members the token names) to add this node,
/// and returns once it is a voter.
pub(super) async fn request_membership(
    client: &HttpClient,
    config: &Config,
    secret: &ClusterSecret,
) -> Result<(), NodeError> {
    let token = config
        .join_token
        .as_ref()
        .map(|t| t.expose())
        .ok_or(NodeError::Config(
            crate::config::ConfigError::JoinWithoutToken,
        ))?;
    let token = JoinToken::parse(token).map_err(|e| join_error(config, e))?;
    let request = JoinRequest {
        id: config.node_id,
        addr: config.advertise_addr.clone(),
        peer_addr: config.peer_advertise_addr.clone(),
    };
    join::request_membership(
        client,
        secret,
        &request,
        &member_addrs(config, &token),
        policy(config),
    )
    .await
    .map_err(|e| join_error(config, e))
}

/// Admits nodes that ask on the peer port (already authenticated with the
/// cluster secret there), with the client API's membership change.
pub(super) struct Joins(pub(super) NodeService);

impl JoinHandler for Joins {
    async fn join(
        &self,
        request: JoinRequest,
        deadline: tokio::time::Instant,
    ) -> Result<(), JoinRefusal> {
        let budget = deadline.saturating_duration_since(tokio::time::Instant::now());
        let added = self
            .0
            .add_member(
                request.id,
                request.addr,
                request.peer_addr,
                Deadline::after(budget),
            )
            .await;
        match added {
            Ok(_) => Ok(()),
            Err(ApiError::ForwardToLeader { .. }) => Err(JoinRefusal::NotLeader {
                leader_peer_addr: self.0.leader_peer_addr(),
            }),
            Err(e) => Err(JoinRefusal::Failed {
                status: e.status(),
                code: e.code().to_string(),
                message: e.to_string(),
            }),
        }
    }
}
