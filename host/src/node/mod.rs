//! Node wiring: builds the log store, state machine, network, Raft, the
//! client and peer listeners in one function; `service` implements the client
//! API over them, `join` the cluster secret and joining.

mod bootstrap;
mod disk;
mod health;
mod join;
mod metrics;
mod proposer;
mod service;
mod settings;
mod tokens;

pub use bootstrap::ADMIN_TOKEN_FILE;

use service::Inner;
pub use service::NodeService;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use openraft::storage::{RaftLogReader, RaftLogStorage};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{Api, ApiLimits};
use crate::config::Config;
use crate::raft::log_store::{AppendHook, LogStore, LogStoreConfig};
use crate::raft::network::NetworkFactory;
use crate::raft::peer_auth::SecretError;
use crate::raft::peer_listener::{PeerLimits, PeerServer};
use crate::raft::peer_server::RaftRpc;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{Node, Raft};
use crate::runtime::{Code, Runtime};
use crate::state::{Command, DeployCode};

/// Why a node could not start, stop or join.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The Wasm runtime could not be built.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The log store could not be opened.
    #[error("log store: {0}")]
    LogStore(#[from] crate::raft::log_store::LogStoreError),
    /// Disk or socket I/O failed (data dir, snapshots, listening).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// openraft refused to start, initialise or stop.
    #[error("raft: {0}")]
    Raft(String),
    /// `--restore` refused the backup or the data dir; nothing was written.
    #[error("cannot restore from {file}: {reason}")]
    Restore {
        /// The backup file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Asking the cluster to add this node failed.
    #[error("could not join via {url}: {reason}")]
    Join {
        /// The member asked.
        url: String,
        /// The last failure.
        reason: String,
    },
    /// The cluster secret could not be made, read or stored.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The data dir has a log but no cluster secret.
    #[error(
        "{} is missing: this data dir holds a cluster's log but not its secret, \
         so this node cannot talk to its peers (restore the file, or start from an empty data dir)",
        path.display()
    )]
    MissingSecret {
        /// Where it should be.
        path: std::path::PathBuf,
    },
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> NodeError {
    move |source| NodeError::Io { what, source }
}

fn raft_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Raft(e.to_string())
}

/// A started node: its addresses and the handles to stop it.
pub struct RunningNode {
    /// The address the client API is bound to.
    pub addr: std::net::SocketAddr,
    /// The address the peer listener is bound to.
    pub peer_addr: std::net::SocketAddr,
    /// The client-API service (for embedding and tests).
    pub service: NodeService,
    shutdown_tx: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    peer_server: JoinHandle<std::io::Result<()>>,
    /// Background watchers (disk space, Raft's running state); aborted at stop.
    watchers: Vec<JoinHandle<()>>,
    /// Asking the cluster to add this node, while that runs.
    joining: Option<JoinHandle<Result<(), NodeError>>>,
}

impl RunningNode {
    /// Whether this node is still asking a cluster to add it.
    pub fn is_joining(&self) -> bool {
        self.joining.is_some()
    }

    /// Resolves once this node's join has ended: `Ok` when it joined (or was
    /// not joining), the failure otherwise.
    pub async fn joined(&mut self) -> Result<(), NodeError> {
        let Some(task) = self.joining.as_mut() else {
            return Ok(());
        };
        let result = task.await.map_err(raft_err).and_then(|r| r);
        self.joining = None;
        result
    }

    /// Stops serving, shuts Raft down and waits for both; the data dir is left resumable.
    pub async fn stop(self) -> Result<(), NodeError> {
        let _ = self.shutdown_tx.send(true);
        if let Some(join) = &self.joining {
            join.abort();
        }
        let served = self.server.await;
        let peers_served = self.peer_server.await;
        for w in &self.watchers {
            w.abort();
        }
        self.service
            .inner
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.service.inner.raft.shutdown().await.map_err(raft_err)?;
        served.map_err(raft_err)?.map_err(io("serving http"))?;
        peers_served
            .map_err(raft_err)?
            .map_err(io("serving the peer port"))?;
        Ok(())
    }
}

/// Runs a node until `shutdown` turns `true` (the `cairn serve` entry point),
/// or until its join fails: then it stops and returns the failure.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), NodeError> {
    let (id, data_dir) = (config.node_id, config.data_dir.clone());
    let scheme = if config.serves_tls() { "https" } else { "http" };
    let mut node = start(config).await?;
    let examples: Vec<&str> = crate::plugins::EXAMPLES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    tracing::info!(
        id,
        data_dir = %data_dir.display(),
        peer_port = %node.peer_addr,
        "serving on {scheme}://{}; built-in example plugins {examples:?} deploy with `cairn deploy counter`",
        node.addr
    );
    if node.is_joining() {
        tokio::select! {
            joined = node.joined() => if let Err(e) = joined {
                tracing::error!(error = %e, "joining the cluster failed; stopping");
                let _ = node.stop().await;
                return Err(e);
            },
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!("shutting down");
    node.stop().await
}

/// Whether the log has never held anything (no vote, no entry, nothing purged).
async fn log_is_fresh(store: &LogStore) -> Result<bool, NodeError> {
    let mut store = store.clone();
    let state = store.get_log_state().await.map_err(raft_err)?;
    let vote = store.read_vote().await.map_err(raft_err)?;
    Ok(state.last_log_id.is_none() && state.last_purged_log_id.is_none() && vote.is_none())
}

/// The log store's [`AppendHook`]: a deploy entry starts compiling its
/// component as soon as it is appended (on a follower, when the leader's
/// append arrives), in the background and for the engine today's settings
/// call for; the entry's apply then finds it compiled or compiling.
fn compile_on_append(runtime: Arc<Runtime>, sm: StateMachine) -> AppendHook {
    Arc::new(move |cmd: &Command| {
        let Command::Deploy {
            code: DeployCode::Inline(wasm),
            ..
        } = cmd
        else {
            return;
        };
        let params = sm.applied().state.settings().engine_params();
        let (runtime, wasm) = (runtime.clone(), wasm.clone());
        // Hashing a big component takes a while: not on the append path.
        let spawned = std::thread::Builder::new()
            .name("cairn-compile".into())
            .spawn(move || runtime.compile_in_background(&Code::new(wasm), params));
        if let Err(e) = spawned {
            tracing::warn!(%e, "cannot start a compile thread; the deploy's apply starts it");
        }
    })
}

/// Builds and starts every part of a node; returns once it serves HTTP.
pub async fn start(config: Config) -> Result<RunningNode, NodeError> {
    config.validate()?;
    if config.insecure {
        tracing::warn!(
            "--insecure: the client and peer ports serve plain HTTP; anyone on the network \
             can read the traffic (peer requests are still authenticated)"
        );
    }
    if let Some(file) = &config.restore_from {
        let (file, config) = (file.clone(), config.clone());
        tokio::task::spawn_blocking(move || restore(&file, &config))
            .await
            .map_err(raft_err)??;
    }
    std::fs::create_dir_all(&config.data_dir).map_err(io("creating the data dir"))?;
    let tls = match (&config.tls_cert_path, &config.tls_key_path) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::acceptor(crate::tls::server_config(cert, key)?))
        }
        _ => None,
    };
    let client = crate::http_client::client_with_ca(config.ca_cert_path.as_deref())?;
    let mut runtime_config = config.runtime.clone();
    runtime_config
        .compiled_cache_dir
        .get_or_insert_with(|| config.data_dir.join("compiled"));
    let runtime = Arc::new(Runtime::new(runtime_config)?);
    let log_dir = config.data_dir.join("log");
    let log_cfg = LogStoreConfig {
        segment_bytes: config.log_segment_bytes,
        ..LogStoreConfig::default()
    };
    let log_store = tokio::task::spawn_blocking(move || LogStore::open(&log_dir, log_cfg))
        .await
        .map_err(raft_err)??;
    let sm_dir = config.data_dir.join("snapshots");
    let rt2 = runtime.clone();
    let sm = tokio::task::spawn_blocking(move || StateMachine::open(&sm_dir, rt2))
        .await
        .map_err(raft_err)?
        .map_err(io("opening the state machine"))?;
    log_store.set_append_hook(compile_on_append(runtime.clone(), sm.clone()));
    let fresh = log_is_fresh(&log_store).await?;
    let secret = join::cluster_secret(&config, &client, fresh).await?;
    let mut counters = metrics::Counters::default();
    counters.log_flush_seconds = log_store.flush_seconds();
    counters.log_bytes = log_store.live_bytes();
    let network =
        NetworkFactory::new(&config, client.clone(), &secret).with_stats(counters.peers.clone());
    let raft_config = Arc::new(config.openraft_config()?);
    let raft = Raft::new(config.node_id, raft_config, network, log_store, sm.clone())
        .await
        .map_err(raft_err)?;

    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(io("binding the listen address"))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the bound address"))?;
    let peer_listener = TcpListener::bind(config.peer_listen_addr)
        .await
        .map_err(io("binding the peer listen address"))?;
    let peer_addr = peer_listener
        .local_addr()
        .map_err(io("reading the bound peer address"))?;
    let disk = Arc::new(disk::DiskWatch::new(&config));
    let stopping = Arc::new(AtomicBool::new(false));
    let inner = Arc::new(Inner {
        id: config.node_id,
        raft: raft.clone(),
        sm,
        runtime,
        config: config.clone(),
        counters,
        disk: disk.clone(),
        stopping: stopping.clone(),
        query_slots: Arc::new(tokio::sync::Semaphore::new(
            config.query_instances() as usize
        )),
        proposer: proposer::Proposer::start(raft.clone()),
        query_pool: crate::worker_pool::WorkerPool::start(
            "cairn-query",
            config.query_thread_count(),
        )
        .map_err(io("starting the query threads"))?,
        secret: secret.clone(),
    });
    let connections = inner.counters.http.clone();
    let service = NodeService { inner };
    let mut peers = PeerServer::new(
        RaftRpc::new(raft.clone(), &config),
        join::Joins(service.clone()),
        secret.clone(),
        PeerLimits::from_config(&config),
        service.inner.counters.peers.clone(),
    );
    let mut api = Api::new(
        service.clone(),
        client.clone(),
        ApiLimits::from_config(&config),
    )
    .with_connection_stats(connections);
    if let Some(tls) = tls {
        peers = peers.with_tls(tls.clone());
        api = api.with_tls(tls);
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = tokio::spawn(crate::api::serve(
        listener,
        Arc::new(api),
        shutdown_rx.clone(),
    ));
    let peer_server = tokio::spawn(crate::raft::peer_listener::serve(
        peer_listener,
        Arc::new(peers),
        shutdown_rx.clone(),
    ));
    tokio::spawn(settings::keep(
        raft.clone(),
        service.inner.sm.clone(),
        config.cluster.clone(),
        shutdown_rx.clone(),
    ));

    let mut joining = None;
    if !raft.is_initialized().await.map_err(raft_err)? {
        match &config.join_token {
            None => {
                let mut members = BTreeMap::new();
                members.insert(
                    config.node_id,
                    Node::new(&config.advertise_addr, &config.peer_advertise_addr),
                );
                raft.initialize(members).await.map_err(raft_err)?;
                tracing::info!(id = config.node_id, "initialised a new single-node cluster");
                settings::write_initial(&raft, &config.cluster).await;
                bootstrap::write_initial(&raft, &service.inner.sm, &config.data_dir).await;
            }
            Some(_) => {
                let config = config.clone();
                // Joining needs this node's peer listener up (the leader
                // replicates to it while adding it), so ask in the background;
                // `run` stops the node if it fails.
                joining = Some(tokio::spawn(async move {
                    join::request_membership(&client, &config, &secret).await
                }));
            }
        }
    } else if config.join_token.is_some() {
        tracing::info!("already a member; --join-token is not needed any more");
    }
    if config.join_url.is_none() {
        // Finishes a bootstrap that failed or crashed half-way; returns at
        // once when admin.token exists (bootstrap.rs).
        tokio::spawn(bootstrap::keep(
            raft.clone(),
            service.inner.sm.clone(),
            config.data_dir.clone(),
            shutdown_rx,
        ));
    }
    let watchers = vec![
        tokio::spawn(disk.run(config.disk_check_interval())),
        tokio::spawn(health::report_fatal(raft, stopping)),
    ];
    Ok(RunningNode {
        addr,
        peer_addr,
        service,
        shutdown_tx,
        server,
        peer_server,
        watchers,
        joining,
    })
}

/// Seeds an empty data dir from a backup file (`cairn serve --restore`).
/// Everything is checked — the data dir is empty, the whole file reads, its
/// checksum and body are valid — before anything is created. Blocking.
fn restore(file: &std::path::Path, config: &Config) -> Result<(), NodeError> {
    let fail = |reason: String| NodeError::Restore {
        file: file.display().to_string(),
        reason,
    };
    if config.join_url.is_some() || config.join_token.is_some() {
        return Err(fail(
            "--restore starts a new cluster; it cannot be combined with --join".into(),
        ));
    }
    match std::fs::read_dir(&config.data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(fail(format!(
                    "the data dir {} already holds data; restore into an empty or new directory",
                    config.data_dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(format!("reading the data dir: {e}"))),
    }
    let bytes = std::fs::read(file).map_err(|e| fail(format!("reading the file: {e}")))?;
    let backup = crate::raft::state_machine::ValidBackup::check(&bytes)
        .map_err(|e| fail(format!("not a valid backup ({e})")))?;
    let (index, hash) = (backup.applied_index(), backup.state_hash());
    std::fs::create_dir_all(&config.data_dir).map_err(io("creating the data dir"))?;
    backup
        .seed(
            &config.data_dir.join("snapshots"),
            config.node_id,
            crate::raft::types::Node::new(
                config.advertise_addr.clone(),
                config.peer_advertise_addr.clone(),
            ),
        )
        .map_err(io("writing the restored snapshot"))?;
    tracing::info!(
        applied_index = index,
        state_hash = %hash,
        "restored a backup; this node starts a new single-node cluster from it"
    );
    Ok(())
}
