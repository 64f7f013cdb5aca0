//! TEST-ONLY: an in-memory log store and state machine, a stub `ClusterService`, and a
//! helper that starts a real openraft node behind the real HTTP server on loopback.
//!
//! These exist so the network and Raft RPC endpoints can be tested end to end
//! before the durable log store and the plugin state machine land; they are not
//! durable, not efficient, and must never be used outside `#[cfg(test)]`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{self, Cursor};
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openraft::alias::{EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::storage::{EntryResponder, IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::error::ApiError;
use crate::api::raft_rpc::RaftRpc;
use crate::api::service::{
    Applied, ClusterService, ClusterStatus, Consistency, DeployResponse, QueryOutput,
    RemoveResponse, StateHash,
};
use crate::api::{Api, ApiLimits};
use crate::config::Config;
use crate::http_client;
use crate::raft::network::NetworkFactory;
use crate::raft::types::{NodeId, TypeConfig};
use crate::state::{CommandResult, ErrorBody, Output, PluginInfo};

type Entry = EntryOf<TypeConfig>;
type LogId = LogIdOf<TypeConfig>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct LogInner {
    vote: Option<VoteOf<TypeConfig>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    log: BTreeMap<u64, Entry>,
}

/// TEST-ONLY in-memory Raft log.
#[derive(Clone, Default)]
pub struct MemLogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(lock(&self.inner)
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        Ok(lock(&self.inner).vote)
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = lock(&self.inner);
        let last = inner
            .log
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        lock(&self.inner).vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        lock(&self.inner).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = lock(&self.inner);
            for e in entries {
                inner.log.insert(e.log_id.index, e);
            }
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let keep_upto = last_log_id.map(|l| l.index);
        lock(&self.inner)
            .log
            .retain(|i, _| keep_upto.is_some_and(|k| *i <= k));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let mut inner = lock(&self.inner);
        inner.log.retain(|i, _| *i > log_id.index);
        inner.last_purged = Some(log_id);
        Ok(())
    }
}

/// TEST-ONLY replicated state: the display form of every applied command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmData {
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Last applied membership.
    pub membership: StoredMembershipOf<TypeConfig>,
    /// Applied commands, in order.
    pub applied: Vec<String>,
}

type StoredSnapshot = Option<(SnapshotMetaOf<TypeConfig>, Vec<u8>)>;

/// TEST-ONLY in-memory state machine with `Cursor<Vec<u8>>` snapshots.
#[derive(Clone, Default)]
pub struct MemStateMachine {
    /// Current state (shared so tests can inspect it).
    pub data: Arc<Mutex<SmData>>,
    snapshot: Arc<Mutex<StoredSnapshot>>,
    /// Snapshots installed from a leader.
    pub installs: Arc<AtomicU64>,
}

impl MemStateMachine {
    fn build(&self) -> Result<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>, io::Error> {
        let data = lock(&self.data).clone();
        let bytes = serde_json::to_vec(&data).map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: data.last_applied,
            last_membership: data.membership,
        };
        *lock(&self.snapshot) = Some((meta.clone(), bytes.clone()));
        Ok(openraft::Snapshot {
            meta,
            snapshot: Cursor::new(bytes),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>, io::Error> {
        self.build()
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        let d = lock(&self.data);
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let result = {
                let mut d = lock(&self.data);
                d.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => CommandResult::Nothing,
                    EntryPayload::Normal(cmd) => {
                        let text = cmd.to_string();
                        d.applied.push(text.clone());
                        CommandResult::Applied(Output {
                            output: text.into_bytes(),
                            events: vec![],
                        })
                    }
                    EntryPayload::Membership(m) => {
                        d.membership = openraft::StoredMembership::new(Some(entry.log_id), m);
                        CommandResult::Nothing
                    }
                }
            };
            if let Some(r) = responder {
                r.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Cursor<Vec<u8>>,
    ) -> Result<(), io::Error> {
        let bytes = snapshot.into_inner();
        let data: SmData = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        *lock(&self.data) = data;
        *lock(&self.snapshot) = Some((meta.clone(), bytes));
        self.installs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>>, io::Error> {
        Ok(lock(&self.snapshot)
            .clone()
            .map(|(meta, bytes)| openraft::Snapshot {
                meta,
                snapshot: Cursor::new(bytes),
            }))
    }
}

/// `(consistency, min_index)` of a query.
pub type QueryArgs = (Consistency, Option<u64>);

/// TEST-ONLY `ClusterService`: answers `apply` itself, or asks for forwarding to `forward_to`.
#[derive(Clone, Default)]
pub struct StubService {
    /// When set, every write answers `ForwardToLeader` with this address.
    pub forward_to: Option<String>,
    /// Last `(consistency, min_index)` a query was called with.
    pub last_query: Arc<Mutex<Option<QueryArgs>>>,
}

fn unavailable<T>() -> Result<T, ApiError> {
    Err(ApiError::Unavailable("test stub".into()))
}

impl ClusterService for StubService {
    async fn deploy(&self, _name: String, _wasm: Bytes) -> Result<DeployResponse, ApiError> {
        unavailable()
    }
    async fn remove(&self, _name: String) -> Result<RemoveResponse, ApiError> {
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
    ) -> Result<Applied, ApiError> {
        if let Some(addr) = &self.forward_to {
            return Err(ApiError::ForwardToLeader {
                leader_addr: addr.clone(),
            });
        }
        let result = match name.as_str() {
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
    async fn add_member(&self, _id: NodeId, _addr: String) -> Result<ClusterStatus, ApiError> {
        unavailable()
    }
    async fn remove_member(&self, _id: NodeId) -> Result<ClusterStatus, ApiError> {
        unavailable()
    }
    async fn state_hash(&self) -> Result<StateHash, ApiError> {
        unavailable()
    }
    async fn readiness(&self) -> Result<(), ApiError> {
        Err(ApiError::NotReady("test stub".into()))
    }
}

/// The server type every test node runs.
pub type TestApi = Api<StubService, RaftRpc<MemStateMachine>>;

/// TEST-ONLY: one real Raft node served over loopback HTTP.
pub struct TestNode {
    /// Node id.
    pub id: NodeId,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The Raft handle.
    pub raft: openraft::Raft<TypeConfig, MemStateMachine>,
    /// The state machine (to inspect state).
    pub sm: MemStateMachine,
    /// The HTTP handlers.
    pub api: Arc<TestApi>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
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

/// Starts node `id` on an ephemeral loopback port; `tweak` adjusts its config.
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
    let client = http_client::new_client();
    let sm = MemStateMachine::default();
    let raft = openraft::Raft::new(
        id,
        Arc::new(config.openraft_config().expect("openraft config")),
        NetworkFactory::<Cursor<Vec<u8>>>::new(&config, client.clone()),
        MemLogStore::default(),
        sm.clone(),
    )
    .await
    .expect("raft starts");
    let api = Arc::new(Api::new(
        service,
        RaftRpc::new(raft.clone(), &config),
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
        shutdown,
        server,
    }
}

impl TestNode {
    /// Applied state snapshot for comparisons.
    pub fn state(&self) -> SmData {
        lock(&self.sm.data).clone()
    }

    /// Stops the server (gracefully) and Raft.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.raft.shutdown().await;
    }
}
