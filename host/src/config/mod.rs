//! One `Config` for a node: identity, addresses, and every limit and timeout, each named with its unit.
//!
//! Nothing else in the host reads configuration from the environment; the CLI
//! (clap) is the only place that turns flags and env vars into a `Config`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::raft::types::NodeId;

mod validate;

pub use validate::{
    APPEND_FRAMING_ALLOWANCE_BYTES, ConfigError, MAX_SNAPSHOT_CHUNK_BYTES, PEER_RPC_MAX_BODY_BYTES,
    SNAPSHOT_CHUNK_HEADER_ALLOWANCE_BYTES, SNAPSHOT_RPC_MAX_BODY_BYTES,
};

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

impl Config {
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
mod tests;
