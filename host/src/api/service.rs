//! `ClusterService`: what the client API needs from a node, and the JSON shapes it answers with.
//!
//! The HTTP layer depends on this trait, not on Raft (rqlite's split): `node`
//! implements it over Raft and the state machine, and tests can implement it
//! with a stub. Methods return [`ApiError`]; returning
//! [`ApiError::ForwardToLeader`] makes the HTTP layer proxy the original request.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::auth::AuthService;
use crate::api::error::ApiError;
use crate::state::{ClusterSettings, CommandResult, Event, EventId, PluginInfo};

/// A node's id, as the API names members.
pub type NodeId = u64;

/// When a request must be answered by. The HTTP layer gives up at this
/// instant; the service bounds its own waits (for a leader, for an index)
/// with it so that it can answer with a precise error first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(tokio::time::Instant);

impl Deadline {
    /// The deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(tokio::time::Instant::now() + budget)
    }

    /// The instant itself (for `tokio::time::timeout_at`).
    pub fn instant(&self) -> tokio::time::Instant {
        self.0
    }

    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// How fresh a query's answer must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Read index on the leader, then answer from applied state (the default).
    #[default]
    Linearizable,
    /// Answer from this node's applied state now; may be behind.
    Stale,
}

/// Per-plugin limits chosen at deploy (`PUT /v1/plugins/{name}?fuel_per_call=N&memory_limit_bytes=M`;
/// `None` takes the cluster's default) or changed later (`PATCH`; `None` keeps
/// the current one). They are recorded in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeployOptions {
    /// Fuel budget of each call.
    pub fuel_per_call: Option<u64>,
    /// Linear-memory cap of each instance.
    pub memory_limit_bytes: Option<u64>,
}

/// Body of `PUT` (`201` when it made a new version, `200` when it changed
/// nothing) and `PATCH` (`200`) of `/v1/plugins/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployResponse {
    /// Plugin name.
    pub name: String,
    /// Version in force after the request (1 for a new name).
    pub version: u64,
    /// Hex sha256 of the component.
    pub sha256: String,
    /// Log index at which that version took effect.
    pub log_index: u64,
    /// Whether this request made that version (`false`: the same code and
    /// limits were already in force, nothing was written).
    pub changed: bool,
}

/// `200` body of `DELETE /v1/plugins/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveResponse {
    /// Plugin name.
    pub name: String,
    /// Log index the removal took effect at.
    pub log_index: u64,
}

/// `200` body of `GET /v1/plugins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginList {
    /// Deployed plugins, ordered by name.
    pub plugins: Vec<PluginInfo>,
}

/// A committed `apply`: where it landed and what the state machine returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Log index of the command (for an idempotent retry: of the original).
    pub log_index: u64,
    /// `Applied(output)` → 200 with the output as body; `Failed(err)` → 422 (404 for
    /// `plugin-not-found`) with `err`; anything else is a node bug → 500.
    pub result: CommandResult,
}

/// A query answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryOutput {
    /// Index of the last entry applied to the state that answered.
    pub applied_index: u64,
    /// The plugin's output bytes (the response body).
    pub output: Vec<u8>,
}

/// Whether a member votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// Counts toward quorum.
    Voter,
    /// Receives the log but does not vote.
    Learner,
}

/// One cluster member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Its client API address (`host:port`, or `https://host:port`).
    pub addr: String,
    /// Its peer listener address, where the others send Raft RPCs.
    pub peer_addr: String,
    /// Voter or learner.
    pub role: MemberRole,
    /// Last log index the leader knows this member holds. Only the leader
    /// tracks replication, so a follower's answer leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
    /// Entries this member is behind the leader's last log index (leader only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_entries: Option<u64>,
    /// Milliseconds since this member last acknowledged the leader (leader only;
    /// a growing value suggests it is down or cut off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ack_ms_ago: Option<u64>,
}

/// `200` body of `GET /v1/cluster` (and of membership changes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub id: NodeId,
    /// This node's role: `leader`, `follower`, `candidate`, `learner`, `shutdown`.
    pub state: String,
    /// Current leader, if known.
    pub leader_id: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Index of the last entry applied on this node.
    pub last_applied: Option<u64>,
    /// Index of the last entry known committed on this node.
    pub committed: Option<u64>,
    /// Index of the last entry in this node's log (may be ahead of `committed`).
    #[serde(default)]
    pub last_log_index: Option<u64>,
    /// Members of the effective configuration.
    pub members: Vec<Member>,
}

/// Body of `POST /v1/cluster/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMemberRequest {
    /// New node's id.
    pub id: NodeId,
    /// New node's advertised client address.
    pub addr: String,
    /// New node's advertised peer address. The node must already hold the
    /// cluster secret (a node started with `--join-token` joins by itself).
    /// Missing: refused as `bad-member-addr`.
    #[serde(default)]
    pub peer_addr: String,
}

/// Body of `POST /v1/cluster/join-token` (may be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// Lifetime of the token; the node's default when absent.
    pub ttl_secs: Option<u64>,
}

/// `200` body of `POST /v1/cluster/join-token`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenResponse {
    /// The token for `cairn serve --join-token`; shown once, stored nowhere.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at_unix_secs: u64,
    /// The members' peer addresses it names (leader first).
    pub peers: Vec<String>,
}

/// `200` body of `GET /v1/state-hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHash {
    /// Index of the last entry reflected in the hash.
    pub applied_index: u64,
    /// Hex hash over the registry and all plugin KV.
    pub hash: String,
}

/// `200` of `GET /v1/backup`: the applied state in the snapshot file format.
#[derive(Debug, Clone)]
pub struct Backup {
    /// Index of the last entry reflected (header `cairn-applied-index`).
    pub applied_index: u64,
    /// Hex state hash of the backed-up state (header `cairn-state-hash`).
    pub state_hash: String,
    /// Versioned, checksummed snapshot bytes (the body).
    pub bytes: Bytes,
}

/// A read of a plugin's event log from this node's applied state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventBatch {
    /// The events from the requested position on, in id order.
    pub events: Vec<(EventId, std::sync::Arc<Event>)>,
    /// Whether more events were held past these (the read's byte cap cut it).
    pub more: bool,
    /// Applied index of the state read: every event of a later entry has a
    /// larger index, so waiting for the applied index to pass it misses none.
    pub applied_index: u64,
}

/// The node operations behind `/v1/…`, `/healthz` and `/readyz`; the token
/// operations and authentication are in [`AuthService`] (`api/auth.rs`).
///
/// Implementations write `async fn`; the `+ Send` bound lets the server spawn
/// handlers. `Clone` (cheap: a shared handle) lets a long-lived response, an
/// event stream, own its service.
pub trait ClusterService: AuthService + Clone + Send + Sync + 'static {
    /// Validates and replicates a deploy (upgrade if the name exists). Code
    /// the cluster already holds goes into the log by sha256 only; the same
    /// code and limits as in force answer the current version unchanged. With
    /// an idempotency key, a retry gets the first answer and another request
    /// under the key `409 idempotency-key-reused`.
    ///
    /// Every write and linearizable read below waits (until `deadline`) for a
    /// leader while none is known, then runs here on the leader or answers
    /// [`ApiError::ForwardToLeader`] naming a leader this node's view agrees
    /// on (so [`ClusterService::leader_moved`] can tell when it changes).
    fn deploy(
        &self,
        name: String,
        wasm: Bytes,
        options: DeployOptions,
        idempotency_key: Option<String>,
        deadline: Deadline,
    ) -> impl Future<Output = Result<DeployResponse, ApiError>> + Send;

    /// Replicates new limits for a deployed plugin (a new version with the
    /// same code); at least one of `options` is set.
    fn set_limits(
        &self,
        name: String,
        options: DeployOptions,
        deadline: Deadline,
    ) -> impl Future<Output = Result<DeployResponse, ApiError>> + Send;

    /// Replicates removal of a plugin and its KV.
    fn remove(
        &self,
        name: String,
        deadline: Deadline,
    ) -> impl Future<Output = Result<RemoveResponse, ApiError>> + Send;

    /// Lists deployed plugins (local applied state).
    fn list_plugins(&self) -> impl Future<Output = Result<Vec<PluginInfo>, ApiError>> + Send;

    /// One plugin's registry entry, or [`ApiError::PluginNotFound`].
    fn get_plugin(&self, name: String)
    -> impl Future<Output = Result<PluginInfo, ApiError>> + Send;

    /// Replicates one command for plugin `name` and waits for it to apply.
    fn apply(
        &self,
        name: String,
        input: Bytes,
        idempotency_key: Option<String>,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Applied, ApiError>> + Send;

    /// Runs the plugin's `query` at the requested consistency; with `min_index`, first
    /// waits (bounded by `min_index_wait_ms`) until this node applied that index.
    /// Plugin failures are [`ApiError::Plugin`]; with every query slot busy,
    /// [`ApiError::Overloaded`].
    fn query(
        &self,
        name: String,
        input: Bytes,
        consistency: Consistency,
        min_index: Option<u64>,
        deadline: Deadline,
    ) -> impl Future<Output = Result<QueryOutput, ApiError>> + Send;

    /// This node's view of the cluster.
    fn cluster_status(&self) -> impl Future<Output = Result<ClusterStatus, ApiError>> + Send;

    /// Adds a learner, waits for it to catch up, promotes it to voter.
    fn add_member(
        &self,
        id: NodeId,
        addr: String,
        peer_addr: String,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ClusterStatus, ApiError>> + Send;

    /// Makes a join token valid for `ttl_secs` (the node's default when `None`).
    fn join_token(
        &self,
        ttl_secs: Option<u64>,
    ) -> impl Future<Output = Result<JoinTokenResponse, ApiError>> + Send;

    /// Removes a member from the configuration.
    fn remove_member(
        &self,
        id: NodeId,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ClusterStatus, ApiError>> + Send;

    /// Hash of this node's applied state.
    fn state_hash(&self) -> impl Future<Output = Result<StateHash, ApiError>> + Send;

    /// A consistent backup of this node's applied state (`GET /v1/backup`).
    fn backup(&self) -> impl Future<Output = Result<Backup, ApiError>> + Send;

    /// Resolves once this node no longer believes `leader_addr` is the
    /// leader (another was elected, or it lost contact); never resolves
    /// while it still does. Lets a forwarded request give up early, and a
    /// failed forward wait for a new leader before it is tried again.
    fn leader_moved(&self, leader_addr: String) -> impl Future<Output = ()> + Send;

    /// Operational metrics in the Prometheus text format (`GET /metrics`).
    fn metrics(&self) -> impl Future<Output = Result<String, ApiError>> + Send;

    /// `Ok` when the node has a leader and has caught up; otherwise [`ApiError::NotReady`]
    /// (or what [`ClusterService::health`] reports).
    fn readiness(&self) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The largest plugin upload the cluster accepts now (`max_plugin_bytes`);
    /// the server refuses a larger body before reading it.
    fn max_upload_bytes(&self) -> u64;

    /// Validates `wasm` as deploy `name` would, then applies the deploy (with
    /// the new code's `migrate`) to a copy of this node's applied state and
    /// runs `queries` against the running version and the new one. Commits
    /// nothing, proposes nothing; answers from the node reached.
    fn dry_run(
        &self,
        name: String,
        wasm: Bytes,
        options: DeployOptions,
        queries: Vec<serde_json::Value>,
    ) -> impl Future<Output = Result<crate::state::DryRunReport, ApiError>> + Send;

    /// The cluster settings this node has applied.
    fn settings(&self) -> impl Future<Output = Result<ClusterSettings, ApiError>> + Send;

    /// Merges `changes` (a JSON object of fields to change) into the current
    /// settings and replicates the result; answers the settings in force after it.
    fn update_settings(
        &self,
        changes: serde_json::Value,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ClusterSettings, ApiError>> + Send;

    /// Plugin `name`'s events from `from` on (inclusive; about `max_bytes` of
    /// them, at least one when any), from this node's applied state (no
    /// forwarding: every node holds the same log). [`ApiError::PluginNotFound`]
    /// for an unknown plugin, [`ApiError::Gone`] when retention dropped some.
    fn events_since(
        &self,
        name: &str,
        from: EventId,
        max_bytes: u64,
    ) -> Result<EventBatch, ApiError>;

    /// Watches this node's applied index: a stream reads again when it moves.
    fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<u64>;

    /// `Ok` while the node can do its job (`GET /healthz`); an error once it
    /// cannot without a restart, e.g. [`ApiError::StorageFailed`] when Raft
    /// stopped on a storage error. A raised disk alarm is not unhealthy.
    fn health(&self) -> impl Future<Output = Result<(), ApiError>> + Send;
}
