//! TEST-ONLY: a stub `ClusterService`, and helpers that start real openraft nodes — the
//! durable `LogStore` and the plugin `StateMachine` on disk — behind the real HTTP server
//! on loopback.
//!
//! A [`TestEnv`] owns one temporary root directory and one `Arc<Runtime>` shared by every
//! node of a test; node `id` always lives in the same directory under that root, so
//! starting the same id again after [`TestNode::stop`] reopens its log and snapshot.

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::error::ApiError;
use crate::api::raft_rpc::RaftRpc;
use crate::api::service::{
    Applied, ClusterService, ClusterStatus, Consistency, Deadline, DeployResponse, QueryOutput,
    RemoveResponse, StateHash,
};
use crate::api::{Api, ApiLimits};
use crate::config::Config;
use crate::http_client;
use crate::raft::log_store::{LogStore, LogStoreConfig};
use crate::raft::network::NetworkFactory;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{NodeId, Raft};
use crate::runtime::Runtime;
use crate::state::{CommandResult, ErrorBody, Output, PluginInfo, State};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `(consistency, min_index)` of a query.
pub type QueryArgs = (Consistency, Option<u64>);

/// TEST-ONLY `ClusterService`: answers `apply` itself, or asks for forwarding to `forward_to`.
/// Plugin `slow` never answers (for deadlines).
#[derive(Clone, Default)]
pub struct StubService {
    /// When set, every write answers `ForwardToLeader` with this address.
    pub forward_to: Option<String>,
    /// When set, `leader_moved` resolves after this long (else never).
    pub leader_moves_after: Option<Duration>,
    /// Last `(consistency, min_index)` a query was called with.
    pub last_query: Arc<Mutex<Option<QueryArgs>>>,
}

fn unavailable<T>() -> Result<T, ApiError> {
    Err(ApiError::Unavailable("test stub".into()))
}

impl ClusterService for StubService {
    async fn dry_run(
        &self,
        _name: String,
        _wasm: Bytes,
        _options: crate::api::service::DeployOptions,
        _queries: Vec<serde_json::Value>,
    ) -> Result<crate::state::DryRunReport, ApiError> {
        unavailable()
    }
    async fn deploy(
        &self,
        _name: String,
        _wasm: Bytes,
        _options: crate::api::service::DeployOptions,
        _idempotency_key: Option<String>,
        _deadline: Deadline,
    ) -> Result<DeployResponse, ApiError> {
        unavailable()
    }
    async fn set_limits(
        &self,
        name: String,
        _options: crate::api::service::DeployOptions,
        _deadline: Deadline,
    ) -> Result<DeployResponse, ApiError> {
        Err(ApiError::PluginNotFound { name })
    }
    async fn remove(&self, _name: String, _deadline: Deadline) -> Result<RemoveResponse, ApiError> {
        unavailable()
    }
    async fn list_plugins(&self) -> Result<Vec<PluginInfo>, ApiError> {
        Ok(vec![])
    }
    async fn get_plugin(&self, name: String) -> Result<PluginInfo, ApiError> {
        Err(ApiError::PluginNotFound { name })
    }
    async fn apply(
        &self,
        name: String,
        input: Bytes,
        key: Option<String>,
        _deadline: Deadline,
    ) -> Result<Applied, ApiError> {
        if let Some(addr) = &self.forward_to {
            return Err(ApiError::ForwardToLeader {
                leader_addr: addr.clone(),
            });
        }
        let result = match name.as_str() {
            "slow" => std::future::pending().await,
            "missing" => {
                CommandResult::Failed(ErrorBody::new("plugin-not-found", "no such plugin"))
            }
            "trap" => CommandResult::Failed(ErrorBody::new("out-of-fuel", "ran out of fuel")),
            _ => {
                let echo =
                    serde_json::json!({"input": String::from_utf8_lossy(&input), "key": key});
                CommandResult::Applied(Output {
                    output: echo.to_string().into_bytes(),
                    events: vec![],
                })
            }
        };
        Ok(Applied {
            log_index: 7,
            result,
        })
    }
    async fn query(
        &self,
        _name: String,
        _input: Bytes,
        consistency: Consistency,
        min_index: Option<u64>,
        _deadline: Deadline,
    ) -> Result<QueryOutput, ApiError> {
        *lock(&self.last_query) = Some((consistency, min_index));
        Ok(QueryOutput {
            applied_index: 3,
            output: b"42".to_vec(),
        })
    }
    async fn cluster_status(&self) -> Result<ClusterStatus, ApiError> {
        unavailable()
    }
    async fn add_member(
        &self,
        _id: NodeId,
        _addr: String,
        _deadline: Deadline,
    ) -> Result<ClusterStatus, ApiError> {
        unavailable()
    }
    async fn remove_member(
        &self,
        _id: NodeId,
        _deadline: Deadline,
    ) -> Result<ClusterStatus, ApiError> {
        unavailable()
    }
    async fn leader_moved(&self, _leader_addr: String) {
        match self.leader_moves_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending::<()>().await,
        }
    }

    async fn metrics(&self) -> Result<String, ApiError> {
        Ok("cairn_stub 1\n".to_string())
    }

    async fn state_hash(&self) -> Result<StateHash, ApiError> {
        unavailable()
    }
    async fn backup(&self) -> Result<crate::api::service::Backup, ApiError> {
        unavailable()
    }
    async fn readiness(&self) -> Result<(), ApiError> {
        Err(ApiError::NotReady("test stub".into()))
    }
    fn max_upload_bytes(&self) -> u64 {
        STUB_MAX_UPLOAD_BYTES
    }
    async fn settings(&self) -> Result<crate::state::ClusterSettings, ApiError> {
        unavailable()
    }
    async fn update_settings(
        &self,
        _changes: serde_json::Value,
        _deadline: crate::api::service::Deadline,
    ) -> Result<crate::state::ClusterSettings, ApiError> {
        unavailable()
    }
    fn events_since(
        &self,
        name: &str,
        _from: crate::state::EventId,
        _max_bytes: u64,
    ) -> Result<crate::api::service::EventBatch, ApiError> {
        Err(ApiError::PluginNotFound {
            name: name.to_string(),
        })
    }
    fn subscribe_applied(&self) -> watch::Receiver<u64> {
        // A sender that is gone: the index never moves.
        watch::channel(0).1
    }
    async fn health(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// TEST-ONLY: the plugin upload cap the stub reports.
pub const STUB_MAX_UPLOAD_BYTES: u64 = 100 * 1024;

/// The server type every test node runs.
pub type TestApi = Api<StubService, RaftRpc<StateMachine>>;

/// TEST-ONLY: the runtime and the data directories the nodes of one test share.
pub struct TestEnv {
    runtime: Arc<Runtime>,
    root: tempfile::TempDir,
}

impl TestEnv {
    /// A fresh temporary root and a runtime with default settings.
    pub fn new() -> Self {
        Self {
            runtime: Arc::new(Runtime::new(Default::default()).expect("runtime")),
            root: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The runtime every node of this environment applies commands with.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Node `id`'s data directory (`log/` and `snapshots/` inside, as in a real node).
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    /// Starts (or restarts, reopening its directories) node `id` on an ephemeral port.
    pub async fn start(&self, id: NodeId, tweak: impl FnOnce(&mut Config)) -> TestNode {
        self.start_with(id, tweak, StubService::default()).await
    }

    /// Like [`TestEnv::start`], with a chosen stub behind `/v1/…`.
    pub async fn start_with(
        &self,
        id: NodeId,
        tweak: impl FnOnce(&mut Config),
        service: StubService,
    ) -> TestNode {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut config = test_config(id, addr);
        config.data_dir = self.data_dir(id);
        tweak(&mut config);
        config.validate().expect("valid test config");

        let log_store = open_log_store(config.data_dir.join("log")).await;
        let sm_dir = config.data_dir.join("snapshots");
        let runtime = self.runtime.clone();
        let sm = tokio::task::spawn_blocking(move || StateMachine::open(&sm_dir, runtime))
            .await
            .expect("join")
            .expect("state machine opens");
        let client = http_client::new_client();
        // One set of peer counters for both sides, as in a real node.
        let stats = Arc::new(crate::raft::peer_stats::PeerRpcStats::default());
        let raft = Raft::new(
            id,
            Arc::new(config.openraft_config().expect("openraft config")),
            NetworkFactory::<Cursor<Vec<u8>>>::new(&config, client.clone())
                .with_stats(stats.clone()),
            log_store,
            sm.clone(),
        )
        .await
        .expect("raft starts");
        let api = Arc::new(Api::new(
            service,
            RaftRpc::new(raft.clone(), &config).with_stats(stats),
            client,
            ApiLimits::from_config(&config),
        ));
        let (shutdown, rx) = watch::channel(false);
        let server = tokio::spawn(crate::api::serve(listener, api.clone(), rx));
        TestNode {
            id,
            addr: addr.to_string(),
            raft,
            sm,
            api,
            data_dir: config.data_dir,
            shutdown,
            server,
            _env: None,
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// Opens the durable log in `dir`. A node stopped a moment ago may still hold the
/// directory lock until openraft's detached tasks drop their last `LogStore` clone (the
/// drop joins the flush thread, then releases the lock), so a lock conflict is retried
/// until a deadline rather than failing the test.
async fn open_log_store(dir: PathBuf) -> LogStore {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dir.clone();
        let opened =
            tokio::task::spawn_blocking(move || LogStore::open(&d, LogStoreConfig::default()))
                .await
                .expect("join");
        match opened {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "log store not openable yet; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("log store in {} does not open: {e}", dir.display()),
        }
    }
}

/// TEST-ONLY: one real Raft node served over loopback HTTP.
pub struct TestNode {
    /// Node id.
    pub id: NodeId,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The Raft handle.
    pub raft: Raft,
    /// The state machine (to inspect state).
    pub sm: StateMachine,
    /// The HTTP handlers.
    pub api: Arc<TestApi>,
    /// Where its log and snapshots live.
    pub data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
    /// The environment of a node started by [`start_node`]; kept alive with it.
    _env: Option<TestEnv>,
}

/// Test timings: fast elections, small everything.
pub fn test_config(id: NodeId, addr: std::net::SocketAddr) -> Config {
    Config {
        node_id: id,
        listen_addr: addr,
        advertise_addr: addr.to_string(),
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        rpc_timeout_ms: 1000,
        shutdown_grace_ms: 1000,
        ..Config::default()
    }
}

/// Starts node `id` in an environment of its own; `tweak` adjusts its config.
pub async fn start_node(id: NodeId, tweak: impl FnOnce(&mut Config)) -> TestNode {
    start_node_with(id, tweak, StubService::default()).await
}

/// Like [`start_node`], with a chosen stub behind `/v1/…`.
pub async fn start_node_with(
    id: NodeId,
    tweak: impl FnOnce(&mut Config),
    service: StubService,
) -> TestNode {
    let env = TestEnv::new();
    let mut node = env.start_with(id, tweak, service).await;
    node._env = Some(env);
    node
}

impl TestNode {
    /// A consistent copy of the applied state.
    pub fn state(&self) -> State {
        self.sm.applied().state
    }

    /// Stops the server (gracefully) and Raft; the data directory stays for a restart.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.raft.shutdown().await;
    }
}
