//! The command line: every subcommand and flag, and the node `Config` that
//! `cairn serve` flags describe.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::state::{ClusterSettings, ENTRY_OVERHEAD_BYTES, Role};

/// Cairn: a Raft-replicated log running WebAssembly plugins as state machines.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about)]
pub struct Cli {
    /// Node to talk to (client commands); `bench` takes several (repeat or comma-separate).
    #[arg(
        long,
        global = true,
        env = "CAIRN_URL",
        default_value = "http://127.0.0.1:7070",
        value_delimiter = ',',
        action = clap::ArgAction::Append
    )]
    pub url: Vec<String>,
    /// Print the server's raw JSON instead of a human summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token for client commands (default: the admin.token file in
    /// --data-dir, if readable).
    #[arg(long, global = true, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The node's data dir: where `serve` keeps its log and state; where
    /// client commands look for admin.token when no --token is given.
    #[arg(
        long,
        global = true,
        env = "CAIRN_DATA_DIR",
        default_value = "./cairn-data"
    )]
    pub data_dir: PathBuf,
    /// PEM CA certificate(s) to trust for https:// nodes (client commands),
    /// and, for `serve`, for the node's own connections to https:// members.
    #[arg(long, global = true, env = "CAIRN_CACERT")]
    pub cacert: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
// Parsed once per process: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a node (alone, or joining a cluster with --join-token).
    Serve(ServeArgs),
    /// Deploy (or upgrade) plugin NAME from a .wasm component file; without
    /// FILE, NAME must be one of the built-in examples (counter, kv, bank).
    /// Deploying the code and limits already in force changes nothing.
    Deploy {
        /// Plugin name.
        name: String,
        /// Path to the component (default: the built-in example called NAME).
        file: Option<PathBuf>,
        /// Fuel budget of each call (default: the node's).
        #[arg(long)]
        fuel_per_call: Option<u64>,
        /// Linear-memory cap of each instance (default: the node's).
        #[arg(long)]
        memory_limit_bytes: Option<u64>,
        /// Makes retries safe: a retry with the same key gets the first answer.
        #[arg(long, conflicts_with = "dry_run")]
        idempotency_key: Option<String>,
        /// Only try it: validate, run `migrate` and the sample queries on a
        /// copy of the reached node's state, and report; commits nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: a query (JSON) to ask the running and the new
        /// version; repeat for more.
        #[arg(long = "sample-query", requires = "dry_run")]
        sample_queries: Vec<String>,
    },
    /// Run a command through plugin NAME's `apply` (replicated).
    Apply {
        /// Plugin name.
        name: String,
        /// The command, usually JSON.
        input: String,
        /// Makes retries safe: the same key applies once.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Also show the events the command emitted (`?events=true`).
        #[arg(long)]
        events: bool,
    },
    /// Run plugin NAME's read-only `query`.
    Query {
        /// Plugin name.
        name: String,
        /// The query, usually JSON.
        input: String,
        /// Answer from the contacted node without a read index (may be stale).
        #[arg(long)]
        stale: bool,
        /// Wait until the node has applied this log index first.
        #[arg(long)]
        min_index: Option<u64>,
    },
    /// Show the cluster as seen by the node.
    Status,
    /// Change cluster membership.
    Members {
        /// add or remove.
        #[command(subcommand)]
        action: MembersCommand,
    },
    /// List deployed plugins (or change one's limits: `plugins set-limits`).
    Plugins {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<PluginsCommand>,
    },
    /// Follow plugin NAME's events, one line per event (`<id> <topic>
    /// <payload>`; with --json one JSON object per line). Reconnects by
    /// itself, resuming after the last event printed.
    Watch {
        /// Plugin name.
        name: String,
        /// Start at the first event of this log index (default: from now).
        #[arg(long)]
        from_index: Option<u64>,
    },
    /// Show the node's state hash.
    StateHash,
    /// Create, list and revoke client tokens (admin).
    Tokens {
        /// create, list or revoke.
        #[command(subcommand)]
        action: TokensCommand,
    },
    /// Save a consistent backup of the node's applied state to FILE (written
    /// to a temp file, fsynced, then renamed); prints its index and hash.
    /// Restore it with `cairn serve --restore FILE --data-dir EMPTY_DIR`.
    Backup {
        /// Where to write the backup.
        file: PathBuf,
    },
    /// Print a join token: `cairn serve --join-token TOKEN` on a new node
    /// joins this cluster with it, until it expires.
    JoinToken {
        /// Lifetime of the token (default: the node's, 3600).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// Load-test a running cluster with the `kv` plugin (deployed if absent).
    Bench(crate::bench::BenchArgs),
    /// Create a standalone plugin project NAME (in ./NAME, or --dir) from the
    /// templates built into this binary: build, test and deploy it without
    /// this repository.
    New {
        /// Plugin (and package) name: a-z, 0-9, '-' and '_', starting with a letter.
        name: String,
        /// Language of the project: rust, python or js.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Directory to create (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `cairn plugins …`
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List deployed plugins (the default).
    List,
    /// Remove plugin NAME and all its data (replicated).
    Remove {
        /// Plugin name.
        name: String,
    },
    /// Change plugin NAME's limits without uploading it again (a new version
    /// with the same code); give at least one limit.
    SetLimits {
        /// Plugin name.
        name: String,
        /// New fuel budget of each call.
        #[arg(long, required_unless_present = "memory_limit_bytes")]
        fuel_per_call: Option<u64>,
        /// New linear-memory cap of each instance.
        #[arg(long)]
        memory_limit_bytes: Option<u64>,
    },
}

/// `cairn members …`
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add node ID with client address ADDR and peer address PEER_ADDR
    /// (learner, caught up, then voter). The node must already hold the
    /// cluster secret; a node started with --join-token adds itself.
    Add {
        /// Node id.
        id: u64,
        /// Its advertised client address (host:port or https://host:port).
        addr: String,
        /// Its advertised peer address.
        peer_addr: String,
    },
    /// Remove node ID.
    Remove {
        /// Node id.
        id: u64,
    },
}

/// `cairn tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// admin, deployer, writer or reader.
        #[arg(long)]
        role: Role,
        /// Limit the token to this plugin (repeat for several; default: every plugin).
        #[arg(long = "plugin")]
        plugins: Vec<String>,
        /// A label for humans.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (ids, roles, plugins, names; never secrets).
    List,
    /// Revoke token ID; every node refuses it once the revocation applied.
    Revoke {
        /// The token's id (e.g. t7).
        id: String,
    },
}

/// How `cairn serve` writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How the kernel is asked to schedule a node's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SchedPolicy {
    /// `SCHED_BATCH`: the threads are CPU work that hands itself along; a
    /// thread woken by another does not preempt the one running (README,
    /// Benchmarks: fewer context switches, more writes per CPU second).
    #[default]
    Batch,
    /// The kernel's default policy (`SCHED_OTHER`).
    Normal,
}

/// `cairn serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// This node's id.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// Address the client API binds.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// host:port other nodes forward clients to (default: --listen; https:// is
    /// added when the node serves TLS).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address the peer listener (Raft RPCs, joins) binds (default: the
    /// --listen address with the next port, e.g. 127.0.0.1:7071).
    #[arg(long)]
    pub peer_listen: Option<SocketAddr>,
    /// host:port other nodes send Raft RPCs to (default: the --advertise host
    /// with the --peer-listen port).
    #[arg(long)]
    pub peer_advertise: Option<String>,
    /// A member's peer address to ask first when joining (the join token names the members too).
    #[arg(long, requires = "join_token")]
    pub join: Option<String>,
    /// Join the cluster this token (from `cairn join-token`) belongs to.
    #[arg(long, env = "CAIRN_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// PEM certificate chain: serve the client and peer ports over TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (warned about at every start).
    #[arg(long)]
    pub insecure: bool,
    /// Start a NEW single-node cluster from this backup (`cairn backup`);
    /// the data dir (global --data-dir) must be empty. Others join it with --join-token.
    #[arg(long, conflicts_with_all = ["join", "join_token"])]
    pub restore: Option<PathBuf>,
    /// Leader heartbeat interval.
    #[arg(long, default_value_t = Config::default().heartbeat_interval_ms)]
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout.
    #[arg(long, default_value_t = Config::default().election_timeout_min_ms)]
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    #[arg(long, default_value_t = Config::default().election_timeout_max_ms)]
    pub election_timeout_max_ms: u64,
    /// Confirm every linearizable read with a quorum (ReadIndex) instead of
    /// serving it from the leader's lease.
    #[arg(long)]
    pub no_lease_reads: bool,
    /// Threads running the node's async work (HTTP, Raft); 0: half the
    /// cores, at least one. Plugin calls run on other threads, and fewer
    /// async workers wake each other less (README, Benchmarks).
    #[arg(long, default_value_t = 0)]
    pub worker_threads: usize,
    /// Scheduling policy of every thread of the node (Linux; ignored
    /// elsewhere). `batch` trades wake-up preemption for fewer context
    /// switches; `normal` is the kernel's default.
    #[arg(long, value_enum, default_value_t = SchedPolicy::Batch)]
    pub sched_policy: SchedPolicy,
    /// How much shorter than the minimum election timeout the leader's read
    /// lease is: the bound on clock drift between members (see README).
    #[arg(long, default_value_t = Config::default().read_lease_margin_ms)]
    pub read_lease_margin_ms: u64,
    /// Take a snapshot (and purge the log behind it) after this many entries.
    #[arg(long, default_value_t = Config::default().snapshot_logs_since_last)]
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot, for slightly lagging followers.
    #[arg(long, default_value_t = Config::default().max_in_snapshot_log_to_keep)]
    pub max_in_snapshot_log_to_keep: u64,
    /// Size of one Raft log segment file (zero-filled ahead of use).
    #[arg(long, default_value_t = Config::default().log_segment_bytes)]
    pub log_segment_bytes: u64,
    /// Largest request body (plugin uploads have their own limit).
    #[arg(long, default_value_t = Config::default().max_body_bytes)]
    pub max_body_bytes: u64,
    /// Initial cluster setting (used when this node initialises the cluster):
    /// largest plugin component accepted for deploy.
    #[arg(long, default_value_t = ClusterSettings::default().max_plugin_bytes)]
    pub max_plugin_bytes: u64,
    /// Initial cluster setting: largest log entry a request may become
    /// (at least max_plugin_bytes + 64 KiB; raised to that when lower and not given).
    #[arg(long)]
    pub max_entry_bytes: Option<u64>,
    /// Initial cluster setting: fuel per call of a plugin deployed without one.
    #[arg(long, default_value_t = ClusterSettings::default().default_fuel_per_call)]
    pub default_fuel_per_call: u64,
    /// Initial cluster setting: most fuel a plugin may ask for per call.
    #[arg(long, default_value_t = ClusterSettings::default().max_fuel_per_call)]
    pub max_fuel_per_call: u64,
    /// Initial cluster setting: memory cap of a plugin deployed without one.
    #[arg(long, default_value_t = ClusterSettings::default().default_memory_limit_bytes)]
    pub default_memory_limit_bytes: u64,
    /// Initial cluster setting: most memory a plugin may ask for per instance.
    #[arg(long, default_value_t = ClusterSettings::default().max_memory_limit_bytes)]
    pub max_memory_limit_bytes: u64,
    /// Refuse writes (507) while the data dir's filesystem has less free space than this; 0 disables.
    #[arg(long, default_value_t = Config::default().min_free_disk_bytes)]
    pub min_free_disk_bytes: u64,
    /// How often free disk space is measured in the background.
    #[arg(long, default_value_t = Config::default().disk_check_interval_ms)]
    pub disk_check_interval_ms: u64,
    /// Deadline of a client request once its body has arrived (504 after it).
    #[arg(long, default_value_t = Config::default().request_timeout_ms)]
    pub request_timeout_ms: u64,
    /// Deadline of a plugin upload (it compiles the component).
    #[arg(long, default_value_t = Config::default().deploy_timeout_ms)]
    pub deploy_timeout_ms: u64,
    /// A request body must arrive within this time (408 after it).
    #[arg(long, default_value_t = Config::default().body_read_timeout_ms)]
    pub body_read_timeout_ms: u64,
    /// Connections served at once; more get 503 and are closed.
    #[arg(long, default_value_t = Config::default().max_connections)]
    pub max_connections: u64,
    /// Wasm instance slots kept free of queries for applying the log.
    #[arg(long, default_value_t = Config::default().apply_reserved_instances)]
    pub apply_reserved_instances: u32,
    /// Threads that run queries; 0: one per core.
    #[arg(long, default_value_t = Config::default().query_threads)]
    pub query_threads: u64,
}

/// The host part of an advertised address (`host:port`, maybe with a scheme).
fn host_of(addr: &str) -> &str {
    let rest = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let rest = rest.split('/').next().unwrap_or(rest);
    rest.rsplit_once(':').map_or(rest, |(host, _)| host)
}

impl ServeArgs {
    /// The node configuration these flags describe, with the global
    /// `--data-dir` (defaults for everything else); `cacert` is the CA the
    /// node trusts for `https://` members.
    pub fn to_config(&self, data_dir: &Path, cacert: Option<PathBuf>) -> anyhow::Result<Config> {
        let tls = self.tls_cert.is_some();
        let advertise = self
            .advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string());
        let peer_listen = match self.peer_listen {
            Some(addr) => addr,
            None => crate::config::default_peer_listen(self.listen)
                .context("--listen has no next port for the peer listener; give --peer-listen")?,
        };
        let peer_advertise = self
            .peer_advertise
            .clone()
            .unwrap_or_else(|| format!("{}:{}", host_of(&advertise), peer_listen.port()));
        let config = Config {
            node_id: self.id,
            listen_addr: self.listen,
            advertise_addr: crate::config::advertised(&advertise, tls),
            peer_listen_addr: peer_listen,
            peer_advertise_addr: crate::config::advertised(&peer_advertise, tls),
            data_dir: data_dir.to_path_buf(),
            restore_from: self.restore.clone(),
            join_url: self
                .join
                .as_deref()
                .map(|u| crate::config::advertised(u, tls)),
            join_token: self.join_token.clone().map(crate::config::Secret::new),
            tls_cert_path: self.tls_cert.clone(),
            tls_key_path: self.tls_key.clone(),
            ca_cert_path: cacert,
            insecure: self.insecure,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            lease_reads: !self.no_lease_reads,
            read_lease_margin_ms: self.read_lease_margin_ms,
            snapshot_logs_since_last: self.snapshot_logs_since_last,
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            log_segment_bytes: self.log_segment_bytes,
            max_body_bytes: self.max_body_bytes,
            cluster: ClusterSettings {
                max_plugin_bytes: self.max_plugin_bytes,
                max_entry_bytes: self.max_entry_bytes.unwrap_or_else(|| {
                    ClusterSettings::default()
                        .max_entry_bytes
                        .max(self.max_plugin_bytes.saturating_add(ENTRY_OVERHEAD_BYTES))
                }),
                default_fuel_per_call: self.default_fuel_per_call,
                max_fuel_per_call: self.max_fuel_per_call,
                default_memory_limit_bytes: self.default_memory_limit_bytes,
                max_memory_limit_bytes: self.max_memory_limit_bytes,
                ..ClusterSettings::default()
            },
            min_free_disk_bytes: self.min_free_disk_bytes,
            disk_check_interval_ms: self.disk_check_interval_ms,
            request_timeout_ms: self.request_timeout_ms,
            deploy_timeout_ms: self.deploy_timeout_ms,
            body_read_timeout_ms: self.body_read_timeout_ms,
            max_connections: self.max_connections,
            apply_reserved_instances: self.apply_reserved_instances,
            query_threads: self.query_threads,
            ..Config::default()
        };
        config.validate().context("invalid configuration")?;
        Ok(config)
    }
}
