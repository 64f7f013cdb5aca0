//! Node wiring: builds the log store, state machine, network, Raft and HTTP
//! server in one function; `service` implements the client API over them.

mod bootstrap;
mod disk;
mod health;
mod metrics;
mod service;
mod settings;
mod tokens;

pub use bootstrap::ADMIN_TOKEN_FILE;

use service::Inner;
pub use service::NodeService;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::raft_rpc::RaftRpc;
use crate::api::{Api, ApiLimits};
use crate::config::Config;
use crate::http_client::{HttpClient, new_client};
use crate::raft::log_store::{AppendHook, LogStore, LogStoreConfig};
use crate::raft::network::NetworkFactory;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::Raft;
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
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> NodeError {
    move |source| NodeError::Io { what, source }
}

fn raft_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Raft(e.to_string())
}

/// A started node: its address and the handles to stop it.
pub struct RunningNode {
    /// The address the HTTP server is bound to.
    pub addr: std::net::SocketAddr,
    /// The client-API service (for embedding and tests).
    pub service: NodeService,
    shutdown_tx: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Background watchers (disk space, Raft's running state); aborted at stop.
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Stops serving, shuts Raft down and waits for both; the data dir is left resumable.
    pub async fn stop(self) -> Result<(), NodeError> {
        let _ = self.shutdown_tx.send(true);
        let served = self.server.await;
        for w in &self.watchers {
            w.abort();
        }
        self.service
            .inner
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.service.inner.raft.shutdown().await.map_err(raft_err)?;
        served.map_err(raft_err)?.map_err(io("serving http"))?;
        Ok(())
    }
}

/// Runs a node until `shutdown` turns `true` (the `cairn serve` entry point).
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<(), NodeError> {
    let (id, data_dir) = (config.node_id, config.data_dir.clone());
    let node = start(config).await?;
    let examples: Vec<&str> = crate::plugins::EXAMPLES
        .iter()
        .map(|(name, _)| *name)
        .collect();
    tracing::info!(
        id,
        data_dir = %data_dir.display(),
        "serving on http://{}; built-in example plugins {examples:?} deploy with `cairn deploy counter`",
        node.addr
    );
    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!("shutting down");
    node.stop().await
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
    if let Some(file) = &config.restore_from {
        let (file, config) = (file.clone(), config.clone());
        tokio::task::spawn_blocking(move || restore(&file, &config))
            .await
            .map_err(raft_err)??;
    }
    std::fs::create_dir_all(&config.data_dir).map_err(io("creating the data dir"))?;
    let mut runtime_config = config.runtime.clone();
    runtime_config
        .compiled_cache_dir
        .get_or_insert_with(|| config.data_dir.join("compiled"));
    let runtime = Arc::new(Runtime::new(runtime_config)?);
    let log_dir = config.data_dir.join("log");
    let log_store =
        tokio::task::spawn_blocking(move || LogStore::open(&log_dir, LogStoreConfig::default()))
            .await
            .map_err(raft_err)??;
    let sm_dir = config.data_dir.join("snapshots");
    let rt2 = runtime.clone();
    let sm = tokio::task::spawn_blocking(move || StateMachine::open(&sm_dir, rt2))
        .await
        .map_err(raft_err)?
        .map_err(io("opening the state machine"))?;
    log_store.set_append_hook(compile_on_append(runtime.clone(), sm.clone()));
    let client = new_client();
    let mut counters = metrics::Counters::default();
    counters.log_flush_seconds = log_store.flush_seconds();
    let network = NetworkFactory::new(&config, client.clone()).with_stats(counters.peers.clone());
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
    });
    let connections = inner.counters.http.clone();
    let service = NodeService { inner };
    let rpc = RaftRpc::new(raft.clone(), &config).with_stats(service.inner.counters.peers.clone());
    let api = Arc::new(
        Api::new(
            service.clone(),
            rpc,
            client.clone(),
            ApiLimits::from_config(&config),
        )
        .with_connection_stats(connections),
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server = tokio::spawn(crate::api::serve(listener, api, shutdown_rx.clone()));
    tokio::spawn(settings::keep(
        raft.clone(),
        service.inner.sm.clone(),
        config.cluster.clone(),
        shutdown_rx.clone(),
    ));

    if !raft.is_initialized().await.map_err(raft_err)? {
        match &config.join_url {
            None => {
                let mut members = BTreeMap::new();
                members.insert(
                    config.node_id,
                    BasicNode {
                        addr: config.advertise_addr.clone(),
                    },
                );
                raft.initialize(members).await.map_err(raft_err)?;
                tracing::info!(id = config.node_id, "initialised a new single-node cluster");
                settings::write_initial(&raft, &config.cluster).await;
                bootstrap::write_initial(&raft, &service.inner.sm, &config.data_dir).await;
            }
            Some(url) => {
                let url = url.clone();
                let config = config.clone();
                // Joining needs this node's server up (the leader replicates to
                // it while adding it), so ask in the background.
                tokio::spawn(async move {
                    if let Err(e) = join(&client, &url, &config).await {
                        tracing::error!(error = %e, %url, "joining the cluster failed");
                    }
                });
            }
        }
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
        service,
        shutdown_tx,
        server,
        watchers,
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
    if config.join_url.is_some() {
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
            config.advertise_addr.clone(),
        )
        .map_err(io("writing the restored snapshot"))?;
    tracing::info!(
        applied_index = index,
        state_hash = %hash,
        "restored a backup; this node starts a new single-node cluster from it"
    );
    Ok(())
}

/// A join answer is a small JSON cluster status.
const JOIN_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Asks the cluster at `url` to add this node, retrying while it has no leader.
async fn join(client: &HttpClient, url: &str, config: &Config) -> Result<(), NodeError> {
    let (id, advertise) = (config.node_id, &config.advertise_addr);
    let join_err = |reason: String| NodeError::Join {
        url: url.to_string(),
        reason,
    };
    let body = serde_json::json!({"id": id, "addr": advertise})
        .to_string()
        .into_bytes();
    let mut last = String::new();
    for attempt in 1..=config.join_max_attempts {
        let uri = crate::http_client::url(url, "/v1/cluster/members")
            .map_err(|e| join_err(e.to_string()))?;
        let mut req = crate::http_client::request(
            http::Method::POST,
            uri,
            Some("application/json"),
            Bytes::from(body.clone()),
        );
        if let Some(token) = &config.join_token {
            crate::http_client::set_bearer(&mut req, token.expose())
                .map_err(|e| join_err(e.to_string()))?;
        }
        let timeout = Duration::from_millis(config.join_timeout_ms);
        match crate::http_client::send(client, req, timeout, JOIN_MAX_RESPONSE_BYTES).await {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(%url, "joined the cluster");
                return Ok(());
            }
            // Not a passing condition: retrying with the same token cannot help.
            Ok(resp)
                if resp.status() == http::StatusCode::UNAUTHORIZED
                    || resp.status() == http::StatusCode::FORBIDDEN =>
            {
                return Err(join_err(format!(
                    "status {}: {}; joining needs an admin token (--token or CAIRN_TOKEN)",
                    resp.status(),
                    String::from_utf8_lossy(resp.body())
                )));
            }
            Ok(resp) => {
                last = format!(
                    "status {}: {}",
                    resp.status(),
                    String::from_utf8_lossy(resp.body())
                )
            }
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(attempt, error = %last, "join attempt failed; retrying");
        tokio::time::sleep(Duration::from_millis(config.join_retry_interval_ms)).await;
    }
    Err(join_err(last))
}
