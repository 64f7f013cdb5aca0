//! TEST-ONLY: a stub `ClusterService` and the client API server in front of
//! it on loopback, for the HTTP-level tests of `api` (no Raft behind it).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::error::ApiError;
use crate::api::service::{
    Applied, ClusterService, ClusterStatus, Consistency, Deadline, DeployResponse,
    JoinTokenResponse, NodeId, QueryOutput, RemoveResponse, StateHash,
};
use crate::api::{Api, ApiLimits};
use crate::config::Config;
use crate::http_client;
use crate::state::{CommandResult, ErrorBody, Output, PluginInfo};

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
        _peer_addr: String,
        _deadline: Deadline,
    ) -> Result<ClusterStatus, ApiError> {
        unavailable()
    }
    async fn join_token(&self, _ttl_secs: Option<u64>) -> Result<JoinTokenResponse, ApiError> {
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
    async fn health(&self) -> Result<(), ApiError> {
        Ok(())
    }
    async fn backup(&self) -> Result<crate::api::service::Backup, ApiError> {
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
}

/// TEST-ONLY: the plugin upload cap the stub reports.
pub const STUB_MAX_UPLOAD_BYTES: u64 = 100 * 1024;

/// The server type every test node runs.
pub type TestApi = Api<StubService>;

/// TEST-ONLY: the client API of one node, served over loopback HTTP.
pub struct TestNode {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The HTTP handlers.
    pub api: Arc<TestApi>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
}

/// Test timings: short deadlines, small everything.
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
        log_segment_bytes: 1024 * 1024,
        ..Config::default()
    }
}

/// Serves the client API of node `id` in front of a default stub; `tweak` adjusts its config.
pub async fn start_node(id: NodeId, tweak: impl FnOnce(&mut Config)) -> TestNode {
    start_node_with(id, tweak, StubService::default()).await
}

/// Like [`start_node`], with a chosen stub behind `/v1/…`.
pub async fn start_node_with(
    id: NodeId,
    tweak: impl FnOnce(&mut Config),
    service: StubService,
) -> TestNode {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let mut config = test_config(id, addr);
    tweak(&mut config);
    config.validate().expect("valid test config");
    let api = Arc::new(Api::new(
        service,
        http_client::new_client(),
        ApiLimits::from_config(&config),
    ));
    let (shutdown, rx) = watch::channel(false);
    let server = tokio::spawn(crate::api::serve(listener, api.clone(), rx));
    TestNode {
        addr: addr.to_string(),
        api,
        shutdown,
        server,
    }
}

impl TestNode {
    /// Stops the server (gracefully).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
    }
}
