//! One `Config` for a node: identity, addresses, and every limit and timeout, each named with its unit.
//!
//! Nothing else in the host reads configuration from the environment; the CLI
//! (clap) is the only place that turns flags and env vars into a `Config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::raft::types::NodeId;
use crate::state::{ENTRY_OVERHEAD_BYTES, MAX_ENTRY_BYTES_CEILING};

/// Node configuration. Build with [`Config::default`] and override fields, then [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's Raft id; stable for the life of its data dir.
    pub node_id: NodeId,
    /// Socket the client API binds (never serves `/raft/…`).
    pub listen_addr: SocketAddr,
    /// Where other nodes forward clients' requests to this node: `host:port`,
    /// or `https://host:port` when it serves TLS; differs from `listen_addr`
    /// when binding `0.0.0.0` or behind NAT.
    pub advertise_addr: String,
    /// Socket the peer listener binds: `/raft/…` only, every request
    /// authenticated with the cluster secret, its own connection cap.
    pub peer_listen_addr: SocketAddr,
    /// Where the other nodes send this node Raft RPCs (`peer_listen_addr` as
    /// they reach it), in the same forms as `advertise_addr`. Recorded in the
    /// membership with `advertise_addr`.
    pub peer_advertise_addr: String,
    /// Directory holding the Raft log, vote, snapshots and the cluster secret.
    pub data_dir: PathBuf,
    /// A member's peer address to ask first when joining (the join token names
    /// the members too); only with `join_token`.
    pub join_url: Option<String>,
    /// A backup file (`GET /v1/backup`) to initialise a new single-node
    /// cluster from; the data dir must be empty. `None`: start normally.
    pub restore_from: Option<PathBuf>,
    /// Join the cluster this token (`cairn join-token`) belongs to, if the data
    /// dir is fresh; `None` (and no `join_url`) means "initialise a
    /// single-node cluster if the data dir is fresh".
    pub join_token: Option<Secret>,
    /// PEM certificate chain the client and peer ports serve TLS with (with `tls_key_path`).
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key of `tls_cert_path`.
    pub tls_key_path: Option<PathBuf>,
    /// PEM CA certificates this node trusts when it connects to `https://`
    /// members (forwarding, Raft RPCs, joining).
    pub ca_cert_path: Option<PathBuf>,
    /// Allows listening on a non-loopback address without TLS (logged as a
    /// warning at every start). Peer requests are authenticated either way,
    /// but nothing is encrypted.
    pub insecure: bool,

    /// Leader heartbeat period. Hundreds of ms, not openraft's 50: a heartbeat
    /// round trip includes HTTP and, on a loaded 2-core box, a scheduler tick.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// Serve linearizable reads on the leader from a lease instead of a
    /// ReadIndex round to a quorum (see `read_lease_ms`). Off: every
    /// linearizable read confirms leadership with a quorum first.
    pub lease_reads: bool,
    /// How much shorter than `election_timeout_min_ms` the leader's read lease
    /// is. The lease runs from the *send* time of the last heartbeat or append
    /// a quorum acknowledged; a follower refuses to vote for another leader
    /// until `election_timeout_max_ms` after it *received* it. The margin is
    /// the clock-drift bound: leases stay safe while the members' monotonic
    /// clocks run at rates that differ by less than
    /// `read_lease_margin_ms / election_timeout_min_ms` (10% by default; NTP
    /// slews by at most 0.05%), and while every member's
    /// `election_timeout_max_ms` is at least the leader's
    /// `election_timeout_min_ms` (true when members share these flags).
    pub read_lease_margin_ms: u64,
    /// Deadline for sending *and* installing one whole snapshot; large because a
    /// 100 MB snapshot must get through (openraft's 200 ms default retries forever).
    pub install_snapshot_timeout_ms: u64,
    /// Bytes of snapshot data per `/raft/snapshot` request.
    pub snapshot_chunk_bytes: u64,
    /// Largest snapshot a follower will buffer while receiving; bounds memory.
    pub max_snapshot_bytes: u64,
    /// Largest request body accepted on any client route except plugin upload
    /// → 413. A node-local HTTP cap; the cluster's `max_entry_bytes` decides
    /// what can become a log entry, and `/raft/…` bodies have derived caps
    /// ([`PEER_RPC_MAX_BODY_BYTES`], [`SNAPSHOT_RPC_MAX_BODY_BYTES`]).
    pub max_body_bytes: u64,
    /// Transport deadline for one append-entries or vote RPC (of a small body;
    /// see `rpc_timeout_per_mib_ms`).
    pub rpc_timeout_ms: u64,
    /// Deadline for answering one client request once its body has arrived
    /// (waiting for a leader, forwarding, replicating, running a query)
    /// → `504 timeout`. Above the longest election, so a write sent while a
    /// leader is being elected waits for it instead of failing.
    pub request_timeout_ms: u64,
    /// Deadline of `PUT /v1/plugins/{name}`, which compiles the component
    /// before replicating it (large interpreters take tens of seconds).
    pub deploy_timeout_ms: u64,
    /// Deadline of `GET /v1/backup`: copying and encoding the whole state.
    pub backup_timeout_ms: u64,
    /// A request body must have fully arrived within this time → `408 body-timeout`.
    pub body_read_timeout_ms: u64,
    /// Most connections open at once on the client port; more are answered
    /// `503 overloaded` and closed. Peers have their own cap.
    pub max_connections: u64,
    /// Most connections open at once on the peer port; more are closed at once.
    /// Each peer uses a few (a second one while a snapshot streams).
    pub peer_max_connections: u64,
    /// A peer request whose signed timestamp is further than this from this
    /// node's clock is refused (`401 stale-request`); the nodes' clocks must
    /// agree within it. Also how long a request's nonce is remembered.
    pub peer_auth_max_clock_skew_ms: u64,
    /// Most recent peer request nonces remembered to refuse replays; when
    /// full, the oldest is forgotten and requests as old are refused.
    pub peer_auth_max_seen_nonces: u64,
    /// Lifetime of a join token when the request does not give one.
    pub join_token_ttl_secs: u64,
    /// Longest lifetime a join token may be given.
    pub max_join_token_ttl_secs: u64,
    /// Wasm instance slots (of `runtime.pooled_instances`) that queries may
    /// never take, so committed entries always find one to apply with.
    pub apply_reserved_instances: u32,
    /// `Retry-After` (seconds) sent with `503 overloaded`.
    pub overload_retry_after_secs: u64,
    /// How long a query may wait for a free query slot before `503
    /// overloaded`. Short: it absorbs a burst (64 clients released together
    /// by one read index) without letting a queue grow under overload.
    pub query_slot_wait_ms: u64,
    /// Threads that run queries (plugin calls for reads); 0: one per core.
    /// Queries beyond them wait their turn in order, holding their slot.
    pub query_threads: u64,
    /// Extra deadline per MiB of request body for append-entries, so that one
    /// large entry (a plugin deploy) is not timed out and resent forever on a
    /// slower link: 100 ms/MiB assumes at least 10 MiB/s to the peer.
    pub rpc_timeout_per_mib_ms: u64,
    /// Byte target of one append-entries request: a batch whose entries are
    /// larger is split, sending the longest prefix that fits (always at least
    /// one entry, so an entry bigger than this still travels, alone).
    pub max_append_bytes: u64,
    /// How long a query with `min_index` waits for this node to apply that index.
    pub min_index_wait_ms: u64,
    /// How long in-flight HTTP connections get to finish after shutdown is signalled.
    pub shutdown_grace_ms: u64,
    /// Build a snapshot after this many entries were applied since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries already in a snapshot kept in the log so slightly lagging
    /// followers catch up from the log instead of a full snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Purge the log in batches of at least this many entries (one purge per entry is wasteful).
    pub purge_batch_size: u64,
    /// Size of one Raft log segment file. Segments are zero-filled ahead of use, so a
    /// log write never grows a file; purging frees disk a segment at a time.
    pub log_segment_bytes: u64,
    /// Most entries sent in one append-entries RPC.
    pub max_entries_per_append: u64,
    /// `/readyz` answers 503 while the applied index trails the committed
    /// one by more than this many entries.
    pub ready_max_lag_entries: u64,
    /// How long one join request may take: the cluster answers only once this
    /// node has caught up, which for a large state means a snapshot transfer.
    pub join_timeout_ms: u64,
    /// Pause between join attempts while the cluster has no leader.
    pub join_retry_interval_ms: u64,
    /// Join attempts before `--join` gives up.
    pub join_max_attempts: u32,
    /// How much of an oversized request body is read and discarded before
    /// the 413, so a client still sending sees the answer, not a reset.
    pub max_drain_bytes: u64,
    /// A client must send its request headers within this time.
    pub header_read_timeout_ms: u64,
    /// Below this much free space on the data dir's filesystem the node raises
    /// its disk alarm: it refuses new writes (`507 insufficient-storage`) and
    /// keeps serving reads, until space returns. 0 disables the alarm. Leave
    /// room for the writes in flight and for one snapshot of the whole state.
    pub min_free_disk_bytes: u64,
    /// How often free space is measured in the background (for the gauges and
    /// the alarm on a node that takes no writes); a write measures it anew.
    pub disk_check_interval_ms: u64,
    /// An idle event stream (`GET /v1/plugins/{name}/events`) sends a
    /// `: heartbeat` comment this often, so proxies and clients can tell a
    /// quiet stream from a dead connection.
    pub sse_heartbeat_interval_ms: u64,
    /// Event streams this node serves at once; more get `503 overloaded`.
    pub max_event_streams: u64,
    /// Bytes of events (topics plus payloads) an event stream reads from the
    /// state per step; a slow consumer holds at most about this much.
    pub sse_batch_max_bytes: u64,
    /// This node's Wasm runtime resources (instance pool, guest log cap).
    pub runtime: crate::runtime::RuntimeConfig,
    /// The cluster settings this node proposes when the cluster has none yet
    /// (at init). Once the cluster has a settings record every node follows
    /// it, and a node whose flags differ says so in its log.
    pub cluster: crate::state::ClusterSettings,
}

impl Default for Config {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            node_id: 1,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            advertise_addr: "127.0.0.1:7070".to_string(),
            peer_listen_addr: SocketAddr::from(([127, 0, 0, 1], 7071)),
            peer_advertise_addr: "127.0.0.1:7071".to_string(),
            data_dir: PathBuf::from("./cairn-data"),
            join_url: None,
            join_token: None,
            restore_from: None,
            tls_cert_path: None,
            tls_key_path: None,
            ca_cert_path: None,
            insecure: false,
            heartbeat_interval_ms: 150,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            lease_reads: true,
            read_lease_margin_ms: 100,
            // 100 MB at even 10 MB/s plus an install that rebuilds state: minutes, not ms.
            install_snapshot_timeout_ms: 10 * 60 * 1000,
            snapshot_chunk_bytes: 4 * MIB,
            max_snapshot_bytes: 1024 * MIB,
            max_body_bytes: 8 * MIB,
            rpc_timeout_ms: 3000,
            // About twice the longest election timeout, plus margin.
            request_timeout_ms: 5000,
            deploy_timeout_ms: 120_000,
            backup_timeout_ms: 120_000,
            body_read_timeout_ms: 30_000,
            max_connections: 1024,
            peer_max_connections: 256,
            peer_auth_max_clock_skew_ms: 30_000,
            // ~8 MiB; at 30 s of memory that is ~8,700 peer requests a second
            // before the floor starts refusing the oldest.
            peer_auth_max_seen_nonces: 262_144,
            join_token_ttl_secs: 3600,
            max_join_token_ttl_secs: 7 * 24 * 3600,
            apply_reserved_instances: 2,
            overload_retry_after_secs: 1,
            query_slot_wait_ms: 100,
            query_threads: 0,
            rpc_timeout_per_mib_ms: 100,
            max_append_bytes: 16 * MIB,
            min_index_wait_ms: 5000,
            shutdown_grace_ms: 5000,
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            purge_batch_size: 256,
            log_segment_bytes: 16 * 1024 * 1024,
            max_entries_per_append: 300,
            ready_max_lag_entries: 1000,
            join_timeout_ms: 10 * 60 * 1000,
            join_retry_interval_ms: 500,
            join_max_attempts: 60,
            max_drain_bytes: 64 * MIB,
            header_read_timeout_ms: 30_000,
            min_free_disk_bytes: 256 * MIB,
            disk_check_interval_ms: 1000,
            sse_heartbeat_interval_ms: 15_000,
            max_event_streams: 256,
            sse_batch_max_bytes: 256 * 1024,
            runtime: crate::runtime::RuntimeConfig::default(),
            cluster: crate::state::ClusterSettings::default(),
        }
    }
}

/// A secret string (a join token) that `Debug` output never shows, so
/// logging a [`Config`] cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a [`Config`] was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Node id 0 is reserved: openraft and our CLI treat it as "unset".
    #[error("node_id must be > 0")]
    ZeroNodeId,
    /// The advertise address is empty.
    #[error("advertise_addr must not be empty")]
    EmptyAdvertiseAddr,
    /// The peer advertise address is empty.
    #[error("peer_advertise_addr must not be empty")]
    EmptyPeerAdvertiseAddr,
    /// The client and peer listeners would share a socket.
    #[error("the client port and the peer port must differ (both {0})")]
    SamePorts(SocketAddr),
    /// A certificate without a key or the reverse.
    #[error("--tls-cert and --tls-key go together")]
    TlsPair,
    /// Plain HTTP on an address others can reach.
    #[error(
        "refusing to listen on {addr} without TLS: give --tls-cert and --tls-key, \
         or --insecure to serve plain HTTP on a network you trust"
    )]
    PlaintextNonLoopback {
        /// The non-loopback address.
        addr: SocketAddr,
    },
    /// Joining needs a join token.
    #[error("joining a cluster needs --join-token (run `cairn join-token` against a member)")]
    JoinWithoutToken,
    /// A value that must be positive is zero.
    #[error("{field} must be > 0")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// Election timeouts must form a non-empty range above the heartbeat.
    #[error(
        "need heartbeat_interval_ms ({heartbeat}) < election_timeout_min_ms ({min}) < election_timeout_max_ms ({max})"
    )]
    ElectionTimeouts {
        /// heartbeat_interval_ms
        heartbeat: u64,
        /// election_timeout_min_ms
        min: u64,
        /// election_timeout_max_ms
        max: u64,
    },
    /// One limit must fit inside another.
    #[error("{small} ({small_value}) must be <= {large} ({large_value})")]
    Order {
        /// Name of the smaller field.
        small: &'static str,
        /// Its value.
        small_value: u64,
        /// Name of the larger field.
        large: &'static str,
        /// Its value.
        large_value: u64,
    },
    /// The initial cluster settings contradict themselves.
    #[error("cluster settings: {0}")]
    Cluster(String),
    /// openraft rejected the derived configuration.
    #[error("openraft config: {0}")]
    Openraft(String),
}

/// Room left in a `/raft/snapshot` body for the chunk header next to the data.
pub const SNAPSHOT_CHUNK_HEADER_ALLOWANCE_BYTES: u64 = 64 * 1024;

/// Room in an append-entries body beside its entries: the frame prefix, vote,
/// previous and committed log ids, and each entry's log id and tag. The
/// entries themselves are bounded by `max_append_bytes` or, for a single
/// entry, by [`MAX_ENTRY_BYTES_CEILING`].
pub const APPEND_FRAMING_ALLOWANCE_BYTES: u64 = 64 * 1024;

/// Body cap of `/raft/append`, `/raft/vote` and `/raft/pre-vote`. Derived from
/// the ceiling of the cluster setting `max_entry_bytes`, never configured: a
/// follower accepts any entry any cluster can commit, whatever its own flags
/// or the settings are changed to later, so no entry can wedge replication.
pub const PEER_RPC_MAX_BODY_BYTES: u64 = MAX_ENTRY_BYTES_CEILING + APPEND_FRAMING_ALLOWANCE_BYTES;

/// Largest `snapshot_chunk_bytes` a node may use. Receivers accept chunks up
/// to this (not up to their own setting), so nodes configured differently
/// still accept each other's snapshots.
pub const MAX_SNAPSHOT_CHUNK_BYTES: u64 = 64 * 1024 * 1024;

/// Body cap of `/raft/snapshot`: the largest chunk any node may send, plus its header.
pub const SNAPSHOT_RPC_MAX_BODY_BYTES: u64 =
    MAX_SNAPSHOT_CHUNK_BYTES + SNAPSHOT_CHUNK_HEADER_ALLOWANCE_BYTES;

impl Config {
    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.advertise_addr.trim().is_empty() {
            return Err(ConfigError::EmptyAdvertiseAddr);
        }
        self.validate_network()?;
        let positive = [
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            (
                "install_snapshot_timeout_ms",
                self.install_snapshot_timeout_ms,
            ),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("max_snapshot_bytes", self.max_snapshot_bytes),
            ("max_body_bytes", self.max_body_bytes),
            ("rpc_timeout_ms", self.rpc_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("deploy_timeout_ms", self.deploy_timeout_ms),
            ("backup_timeout_ms", self.backup_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("max_connections", self.max_connections),
            ("peer_max_connections", self.peer_max_connections),
            (
                "peer_auth_max_clock_skew_ms",
                self.peer_auth_max_clock_skew_ms,
            ),
            ("peer_auth_max_seen_nonces", self.peer_auth_max_seen_nonces),
            ("join_token_ttl_secs", self.join_token_ttl_secs),
            (
                "apply_reserved_instances",
                u64::from(self.apply_reserved_instances),
            ),
            ("overload_retry_after_secs", self.overload_retry_after_secs),
            ("max_append_bytes", self.max_append_bytes),
            ("min_index_wait_ms", self.min_index_wait_ms),
            ("snapshot_logs_since_last", self.snapshot_logs_since_last),
            ("purge_batch_size", self.purge_batch_size),
            ("max_entries_per_append", self.max_entries_per_append),
            ("disk_check_interval_ms", self.disk_check_interval_ms),
            ("sse_heartbeat_interval_ms", self.sse_heartbeat_interval_ms),
            ("max_event_streams", self.max_event_streams),
            ("sse_batch_max_bytes", self.sse_batch_max_bytes),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if !(self.heartbeat_interval_ms < self.election_timeout_min_ms
            && self.election_timeout_min_ms < self.election_timeout_max_ms)
        {
            return Err(ConfigError::ElectionTimeouts {
                heartbeat: self.heartbeat_interval_ms,
                min: self.election_timeout_min_ms,
                max: self.election_timeout_max_ms,
            });
        }
        // A lease no heartbeat can renew in time would never be used.
        if self.lease_reads
            && self.heartbeat_interval_ms + self.read_lease_margin_ms
                >= self.election_timeout_min_ms
        {
            return Err(ConfigError::Order {
                small: "heartbeat_interval_ms + read_lease_margin_ms",
                small_value: self.heartbeat_interval_ms + self.read_lease_margin_ms,
                large: "election_timeout_min_ms",
                large_value: self.election_timeout_min_ms,
            });
        }
        self.validate_sizes()?;
        // A segment holds at least its header and one checkpoint: one page.
        if self.log_segment_bytes < 4096 {
            return Err(ConfigError::Order {
                small: "4096 (one page)",
                small_value: 4096,
                large: "log_segment_bytes",
                large_value: self.log_segment_bytes,
            });
        }
        if self.join_token_ttl_secs > self.max_join_token_ttl_secs {
            return Err(ConfigError::Order {
                small: "join_token_ttl_secs",
                small_value: self.join_token_ttl_secs,
                large: "max_join_token_ttl_secs",
                large_value: self.max_join_token_ttl_secs,
            });
        }
        self.cluster
            .validate()
            .map_err(|e| ConfigError::Cluster(e.to_string()))?;
        // A request must be able to outlast an election (it waits for the new leader).
        if self.election_timeout_max_ms >= self.request_timeout_ms {
            return Err(ConfigError::Order {
                small: "election_timeout_max_ms",
                small_value: self.election_timeout_max_ms,
                large: "request_timeout_ms",
                large_value: self.request_timeout_ms,
            });
        }
        // Queries get the pool minus the reserve; at least one slot each way.
        let pool = self.runtime.pooled_instances;
        if self.apply_reserved_instances >= pool {
            return Err(ConfigError::Order {
                small: "apply_reserved_instances",
                small_value: u64::from(self.apply_reserved_instances),
                large: "runtime.pooled_instances - 1",
                large_value: u64::from(pool.saturating_sub(1)),
            });
        }
        self.openraft_config().map(|_| ())
    }

    /// Addresses, TLS and joining: two distinct listeners, TLS files in pairs,
    /// plain HTTP only on loopback unless `insecure`, and a token to join with.
    fn validate_network(&self) -> Result<(), ConfigError> {
        if self.peer_advertise_addr.trim().is_empty() {
            return Err(ConfigError::EmptyPeerAdvertiseAddr);
        }
        if self.listen_addr == self.peer_listen_addr && self.listen_addr.port() != 0 {
            return Err(ConfigError::SamePorts(self.listen_addr));
        }
        if self.tls_cert_path.is_some() != self.tls_key_path.is_some() {
            return Err(ConfigError::TlsPair);
        }
        if !self.insecure && !self.serves_tls() {
            for addr in [self.listen_addr, self.peer_listen_addr] {
                if !addr.ip().is_loopback() {
                    return Err(ConfigError::PlaintextNonLoopback { addr });
                }
            }
        }
        if self.join_url.is_some() && self.join_token.is_none() {
            return Err(ConfigError::JoinWithoutToken);
        }
        Ok(())
    }

    /// Whether the client and peer ports serve TLS.
    pub fn serves_tls(&self) -> bool {
        self.tls_cert_path.is_some() && self.tls_key_path.is_some()
    }

    /// The size limits must agree: whatever this node sends to a peer fits the
    /// peer's derived body caps, and whatever a client may send fits an entry
    /// the cluster could commit.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        let order = |small, small_value, large, large_value| {
            if small_value > large_value {
                Err(ConfigError::Order {
                    small,
                    small_value,
                    large,
                    large_value,
                })
            } else {
                Ok(())
            }
        };
        // A batch of entries up to the target, plus framing, fits a peer's append cap.
        order(
            "max_append_bytes + framing allowance",
            self.max_append_bytes
                .saturating_add(APPEND_FRAMING_ALLOWANCE_BYTES),
            "the peer rpc body limit",
            PEER_RPC_MAX_BODY_BYTES,
        )?;
        // A chunk travels as one HTTP body, so it must fit a peer's snapshot cap.
        order(
            "snapshot_chunk_bytes + header allowance",
            self.snapshot_chunk_bytes
                .saturating_add(SNAPSHOT_CHUNK_HEADER_ALLOWANCE_BYTES),
            "the peer snapshot body limit",
            SNAPSHOT_RPC_MAX_BODY_BYTES,
        )?;
        order(
            "snapshot_chunk_bytes",
            self.snapshot_chunk_bytes,
            "max_snapshot_bytes",
            self.max_snapshot_bytes,
        )?;
        // A client body this node accepts must be able to become an entry some
        // cluster can commit; above the ceiling it could never be replicated.
        order(
            "max_body_bytes + entry overhead",
            self.max_body_bytes.saturating_add(ENTRY_OVERHEAD_BYTES),
            "the entry ceiling",
            MAX_ENTRY_BYTES_CEILING,
        )
    }

    /// The openraft configuration derived from this one (validated by openraft).
    pub fn openraft_config(&self) -> Result<openraft::Config, ConfigError> {
        let cfg = openraft::Config {
            cluster_name: "cairn".to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            purge_batch_size: self.purge_batch_size,
            max_payload_entries: self.max_entries_per_append,
            // openraft advises a lag threshold above the snapshot interval, otherwise a
            // snapshot may not be enough to bring a follower back into log range.
            replication_lag_threshold: self.snapshot_logs_since_last.saturating_mul(2),
            ..openraft::Config::default()
        };
        cfg.validate()
            .map_err(|e| ConfigError::Openraft(e.to_string()))
    }

    /// [`Config::rpc_timeout_ms`] as a duration.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }

    /// [`Config::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`Config::rpc_timeout_per_mib_ms`] as a duration.
    pub fn rpc_timeout_per_mib(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_per_mib_ms)
    }

    /// Wasm instance slots queries may use at once: the pool minus the apply reserve.
    pub fn query_instances(&self) -> u32 {
        self.runtime
            .pooled_instances
            .saturating_sub(self.apply_reserved_instances)
    }

    /// [`Config::install_snapshot_timeout_ms`] as a duration.
    pub fn install_snapshot_timeout(&self) -> Duration {
        Duration::from_millis(self.install_snapshot_timeout_ms)
    }

    /// How long after the send time of the last quorum-acknowledged heartbeat
    /// the leader may serve reads from its lease; `None` when lease reads are
    /// off (see [`Config::read_lease_margin_ms`] for why this is safe).
    pub fn read_lease(&self) -> Option<Duration> {
        self.lease_reads.then(|| {
            Duration::from_millis(
                self.election_timeout_min_ms
                    .saturating_sub(self.read_lease_margin_ms),
            )
        })
    }

    /// [`Config::query_threads`], with 0 resolved to the number of cores.
    pub fn query_thread_count(&self) -> usize {
        match self.query_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    /// [`Config::query_slot_wait_ms`] as a duration.
    pub fn query_slot_wait(&self) -> Duration {
        Duration::from_millis(self.query_slot_wait_ms)
    }

    /// [`Config::min_index_wait_ms`] as a duration.
    pub fn min_index_wait(&self) -> Duration {
        Duration::from_millis(self.min_index_wait_ms)
    }

    /// [`Config::disk_check_interval_ms`] as a duration.
    pub fn disk_check_interval(&self) -> Duration {
        Duration::from_millis(self.disk_check_interval_ms)
    }

    /// [`Config::shutdown_grace_ms`] as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// The peer listener's default for a client listener on `listen`: the same
/// address, the next port (an ephemeral client port gets an ephemeral peer
/// port). `None` when there is no next port.
pub fn default_peer_listen(listen: SocketAddr) -> Option<SocketAddr> {
    let port = match listen.port() {
        0 => 0,
        p => p.checked_add(1)?,
    };
    Some(SocketAddr::new(listen.ip(), port))
}

/// `addr` as an advertised address: with `https://` when the node serves TLS
/// and `addr` names no scheme (plain `host:port` means HTTP).
pub fn advertised(addr: &str, tls: bool) -> String {
    let addr = addr.trim();
    if tls && !addr.contains("://") {
        format!("https://{addr}")
    } else {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_off_loopback_unless_insecure() {
        let cfg = Config {
            listen_addr: "0.0.0.0:7070".parse().unwrap(),
            ..Config::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::PlaintextNonLoopback { .. })
        ));
        // The peer port counts too.
        let cfg = Config {
            peer_listen_addr: "0.0.0.0:7071".parse().unwrap(),
            ..Config::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("0.0.0.0:7071") && err.contains("--insecure"),
            "{err}"
        );
        Config {
            peer_listen_addr: "0.0.0.0:7071".parse().unwrap(),
            insecure: true,
            ..Config::default()
        }
        .validate()
        .unwrap();
        // Any 127/8 address is loopback; TLS lifts the rule.
        Config {
            listen_addr: "127.0.0.2:7070".parse().unwrap(),
            ..Config::default()
        }
        .validate()
        .unwrap();
        Config {
            listen_addr: "0.0.0.0:7070".parse().unwrap(),
            tls_cert_path: Some("c.pem".into()),
            tls_key_path: Some("k.pem".into()),
            ..Config::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn read_lease_is_shorter_than_the_election_timeout_by_the_margin() {
        let cfg = Config::default();
        assert_eq!(cfg.read_lease(), Some(Duration::from_millis(900)));
        let off = Config {
            lease_reads: false,
            ..Config::default()
        };
        assert_eq!(off.read_lease(), None);
        // A margin that leaves no room for a heartbeat to renew the lease is refused…
        let cfg = Config {
            read_lease_margin_ms: 900,
            ..Config::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("read_lease_margin_ms"), "{err}");
        // …unless lease reads are off.
        Config {
            read_lease_margin_ms: 900,
            lease_reads: false,
            ..Config::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn network_settings_are_checked() {
        let cfg = Config {
            tls_cert_path: Some("c.pem".into()),
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::TlsPair));
        let cfg = Config {
            peer_listen_addr: Config::default().listen_addr,
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::SamePorts(_))));
        let cfg = Config {
            join_url: Some("127.0.0.1:7071".into()),
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::JoinWithoutToken));
        let cfg = Config {
            join_token_ttl_secs: 10,
            max_join_token_ttl_secs: 5,
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Order { .. })));
        assert_eq!(
            default_peer_listen("127.0.0.1:7070".parse().unwrap()),
            Some("127.0.0.1:7071".parse().unwrap())
        );
        assert_eq!(
            default_peer_listen("127.0.0.1:0".parse().unwrap()),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            default_peer_listen("127.0.0.1:65535".parse().unwrap()),
            None
        );
        assert_eq!(advertised("h:1", true), "https://h:1");
        assert_eq!(advertised("http://h:1", true), "http://h:1");
        assert_eq!(advertised("h:1", false), "h:1");
    }

    #[test]
    fn defaults_are_valid_and_map_to_openraft() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        let raft = cfg.openraft_config().unwrap();
        assert_eq!(raft.heartbeat_interval, 150);
        assert_eq!(
            raft.install_snapshot_timeout,
            cfg.install_snapshot_timeout_ms
        );
        assert_eq!(raft.snapshot_max_chunk_size, cfg.snapshot_chunk_bytes);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let cfg = Config {
            join_token: Some(Secret::new("cairn-join-1.abcdef")),
            ..Config::default()
        };
        let dump = format!("{cfg:?}");
        assert!(!dump.contains("abcdef"), "{dump}");
        assert_eq!(cfg.join_token.unwrap().expose(), "cairn-join-1.abcdef");
    }

    #[test]
    fn rejects_bad_relations() {
        let cfg = Config {
            election_timeout_min_ms: 100,
            ..Config::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::ElectionTimeouts { .. })
        ));
        let cfg = Config {
            node_id: 0,
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::ZeroNodeId));
        let cfg = Config {
            snapshot_chunk_bytes: 64 * 1024 * 1024,
            max_snapshot_bytes: 32 * 1024 * 1024,
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Order { .. })));
        let cfg = Config {
            rpc_timeout_ms: 0,
            ..Config::default()
        };
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::Zero {
                field: "rpc_timeout_ms"
            })
        );
    }

    #[test]
    fn request_deadline_and_query_reserve_are_checked() {
        let cfg = Config {
            request_timeout_ms: 2000,
            ..Config::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Order {
                small: "election_timeout_max_ms",
                ..
            })
        ));
        let mut cfg = Config::default();
        cfg.runtime.pooled_instances = 4;
        cfg.apply_reserved_instances = 4;
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Order {
                small: "apply_reserved_instances",
                ..
            })
        ));
        cfg.apply_reserved_instances = 3;
        cfg.validate().unwrap();
        assert_eq!(cfg.query_instances(), 1);
        cfg.apply_reserved_instances = 0;
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::Zero {
                field: "apply_reserved_instances"
            })
        );
    }

    /// The `small` name of an `Order` refusal (panics on any other outcome).
    fn refused_order(cfg: Config) -> &'static str {
        match cfg.validate() {
            Err(ConfigError::Order { small, .. }) => small,
            other => panic!("expected an Order refusal, got {other:?}"),
        }
    }

    #[test]
    fn peer_limits_are_derived_from_what_a_cluster_can_commit() {
        // Any single entry any cluster may commit fits a follower's append cap,
        // and so does a full batch of the default target.
        let settings = crate::state::ClusterSettings::default();
        assert!(settings.max_entry_bytes <= MAX_ENTRY_BYTES_CEILING);
        let cfg = Config::default();
        assert!(cfg.max_append_bytes + APPEND_FRAMING_ALLOWANCE_BYTES <= PEER_RPC_MAX_BODY_BYTES);
        assert!(
            cfg.snapshot_chunk_bytes + SNAPSHOT_CHUNK_HEADER_ALLOWANCE_BYTES
                <= SNAPSHOT_RPC_MAX_BODY_BYTES
        );
        // The snapshot chunk no longer has to fit the client body cap.
        Config {
            max_body_bytes: 1024 * 1024,
            ..Config::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn an_append_target_over_the_peer_limit_is_refused() {
        let cfg = Config {
            max_append_bytes: PEER_RPC_MAX_BODY_BYTES,
            ..Config::default()
        };
        assert_eq!(refused_order(cfg), "max_append_bytes + framing allowance");
        // Right at the ceiling is still fine: framing has its own allowance.
        Config {
            max_append_bytes: MAX_ENTRY_BYTES_CEILING,
            ..Config::default()
        }
        .validate()
        .unwrap();
        let cfg = Config {
            max_append_bytes: 0,
            ..Config::default()
        };
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::Zero {
                field: "max_append_bytes"
            })
        );
    }

    #[test]
    fn a_snapshot_chunk_over_the_peer_limit_is_refused() {
        let cfg = Config {
            snapshot_chunk_bytes: MAX_SNAPSHOT_CHUNK_BYTES + 1,
            ..Config::default()
        };
        assert_eq!(
            refused_order(cfg),
            "snapshot_chunk_bytes + header allowance"
        );
        Config {
            snapshot_chunk_bytes: MAX_SNAPSHOT_CHUNK_BYTES,
            ..Config::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn a_client_body_cap_above_the_entry_ceiling_is_refused() {
        let cfg = Config {
            max_body_bytes: MAX_ENTRY_BYTES_CEILING,
            ..Config::default()
        };
        assert_eq!(refused_order(cfg), "max_body_bytes + entry overhead");
        let err = Config {
            max_body_bytes: MAX_ENTRY_BYTES_CEILING,
            ..Config::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("max_body_bytes") && err.contains("entry ceiling"),
            "{err}"
        );
        Config {
            max_body_bytes: MAX_ENTRY_BYTES_CEILING - ENTRY_OVERHEAD_BYTES,
            ..Config::default()
        }
        .validate()
        .unwrap();
    }
}
