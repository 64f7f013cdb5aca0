//! TEST-ONLY: helpers that start real openraft nodes — the durable `LogStore`
//! and the plugin `StateMachine` on disk — behind the real peer listener on
//! loopback (no client API: that is `api`'s, and `node` wires the two).
//!
//! A [`TestEnv`] owns one temporary root directory, one cluster secret and one
//! `Arc<Runtime>` shared by every node of a test; node `id` always lives in
//! the same directory under that root, so starting the same id again after
//! [`TestNode::stop`] reopens its log and snapshot.

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http_client;
use crate::raft::join::JoinRequest;
use crate::raft::log_store::{LogStore, LogStoreConfig};
use crate::raft::network::NetworkFactory;
use crate::raft::peer_auth::ClusterSecret;
use crate::raft::peer_listener::{JoinHandler, JoinRefusal, PeerLimits, PeerServer};
use crate::raft::peer_server::RaftRpc;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{Node, NodeId, Raft};
use crate::runtime::Runtime;
use crate::state::State;

/// TEST-ONLY: admits nobody; these nodes change membership through Raft directly.
pub struct NoJoins;

impl JoinHandler for NoJoins {
    async fn join(
        &self,
        _request: JoinRequest,
        _deadline: tokio::time::Instant,
    ) -> Result<(), JoinRefusal> {
        Err(JoinRefusal::Failed {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable".into(),
            message: "test nodes admit nobody".into(),
        })
    }
}

/// The peer server every test node runs.
pub type TestPeer = PeerServer<RaftRpc<StateMachine>, NoJoins>;

/// TEST-ONLY: the runtime and the data directories the nodes of one test share.
pub struct TestEnv {
    runtime: Arc<Runtime>,
    root: tempfile::TempDir,
    secret: ClusterSecret,
}

impl TestEnv {
    /// A fresh temporary root and a runtime with default settings.
    pub fn new() -> Self {
        Self {
            runtime: Arc::new(Runtime::new(Default::default()).expect("runtime")),
            root: tempfile::tempdir().expect("temp dir"),
            secret: ClusterSecret::generate().expect("randomness"),
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
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut config = test_config(id, addr);
        config.data_dir = self.data_dir(id);
        tweak(&mut config);
        config.validate().expect("valid test config");

        let log_store = open_log_store(config.data_dir.join("log"), config.log_segment_bytes).await;
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
            NetworkFactory::<Cursor<Vec<u8>>>::new(&config, client, &self.secret)
                .with_stats(stats.clone()),
            log_store,
            sm.clone(),
        )
        .await
        .expect("raft starts");
        let peer = Arc::new(PeerServer::new(
            RaftRpc::new(raft.clone(), &config),
            NoJoins,
            self.secret.clone(),
            PeerLimits::from_config(&config),
            stats,
        ));
        let (shutdown, rx) = watch::channel(false);
        let server = tokio::spawn(crate::raft::peer_listener::serve(
            listener,
            peer.clone(),
            rx,
        ));
        TestNode {
            id,
            addr: addr.to_string(),
            raft,
            sm,
            peer,
            secret: self.secret.clone(),
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
async fn open_log_store(dir: PathBuf, segment_bytes: u64) -> LogStore {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dir.clone();
        let cfg = LogStoreConfig {
            segment_bytes,
            ..LogStoreConfig::default()
        };
        let opened = tokio::task::spawn_blocking(move || LogStore::open(&d, cfg))
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
    /// `127.0.0.1:port` of its peer listener.
    pub addr: String,
    /// The Raft handle.
    pub raft: Raft,
    /// The state machine (to inspect state).
    pub sm: StateMachine,
    /// The peer listener's handlers.
    pub peer: Arc<TestPeer>,
    /// The cluster secret it signs and verifies with.
    secret: ClusterSecret,
    /// Where its log and snapshots live.
    pub data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
    /// The environment of a node started by [`start_node`]; kept alive with it.
    _env: Option<TestEnv>,
}

/// Test timings: fast elections, small everything. `addr` is the peer
/// listener's (these nodes have no client port).
pub fn test_config(id: NodeId, addr: std::net::SocketAddr) -> Config {
    Config {
        node_id: id,
        peer_listen_addr: addr,
        peer_advertise_addr: addr.to_string(),
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        rpc_timeout_ms: 1000,
        shutdown_grace_ms: 1000,
        log_segment_bytes: 1024 * 1024,
        ..Config::default()
    }
}

/// Starts node `id` in an environment of its own; `tweak` adjusts its config.
pub async fn start_node(id: NodeId, tweak: impl FnOnce(&mut Config)) -> TestNode {
    let env = TestEnv::new();
    let mut node = env.start(id, tweak).await;
    node._env = Some(env);
    node
}

impl TestNode {
    /// The cluster secret of this node's environment.
    pub fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// The key peer requests to this node must be signed with.
    pub fn peer_key(&self) -> crate::raft::peer_auth::MacKey {
        self.secret.peer_key()
    }

    /// This node as a membership record (its peer address; no client port).
    pub fn member(&self) -> Node {
        Node::new(self.addr.clone(), self.addr.clone())
    }

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
