//! Checking a [`Config`]: the error it is refused with, the peer body caps
//! derived from the entry ceiling, and every field and relation.

use std::net::SocketAddr;

use super::Config;
use crate::state::{ENTRY_OVERHEAD_BYTES, MAX_ENTRY_BYTES_CEILING};

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
}
