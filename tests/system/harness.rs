//! Test harness: in-process Cairn nodes on loopback ports with temp data dirs, and HTTP helpers.
//!
//! Every client endpoint needs a bearer token. The harness remembers one
//! admin token per node address (the `admin.token` the initialising node
//! wrote, which is valid on every node of its cluster) and [`send_to`] sends
//! it unless the caller passes its own `authorization` header;
//! [`send_without_token`] sends none.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use cairn_host::config::Config;
use cairn_host::http_client::{self, HttpClient};
use cairn_host::node::RunningNode;
use http::Method;
use serde_json::Value;

use crate::http_node::{HttpNode, wait_agreed_leader};

/// Default deadline for "eventually" conditions (leader elected, convergence).
pub const WAIT: Duration = Duration::from_secs(20);
/// Per-request deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A port nobody listens on right now (bind to 0, read it, drop the listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A config for tests: loopback client port `port`, a free loopback peer
/// port, faster heartbeats and elections.
pub fn test_config(id: u64, port: u16, data_dir: PathBuf) -> Config {
    let peer_port = free_port();
    Config {
        node_id: id,
        listen_addr: ([127, 0, 0, 1], port).into(),
        advertise_addr: format!("127.0.0.1:{port}"),
        peer_listen_addr: ([127, 0, 0, 1], peer_port).into(),
        peer_advertise_addr: format!("127.0.0.1:{peer_port}"),
        data_dir,
        join_url: None,
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 600,
        election_timeout_max_ms: 1200,
        rpc_timeout_ms: 1000,
        shutdown_grace_ms: 1000,
        // Small segments: less to zero-fill per node, and rotations get exercised.
        log_segment_bytes: 1024 * 1024,
        ..Config::default()
    }
}

/// Polls `f` every 50 ms until it returns `Ok(Some(v))`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A response with its body read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON (panics with context if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error.code` of an error body, if any.
    pub fn code(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v["error"]["code"].as_str().map(str::to_string)
    }

    /// A numeric response header.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.parse().ok()
    }

    /// Fails unless the status is `want`; the message carries the body.
    pub fn expect(self, want: u16) -> Result<Self> {
        if self.status != want {
            bail!(
                "expected status {want}, got {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        Ok(self)
    }
}

/// The admin token the harness sends to each node address by default.
fn tokens() -> &'static Mutex<HashMap<String, String>> {
    static TOKENS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// `host:port` of a node URL or address.
fn addr_of(url_or_addr: &str) -> &str {
    url_or_addr
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

/// Admin tokens by peer address: a join token names its cluster's peer
/// addresses, so a node that joins with one is sent its cluster's token.
fn peer_tokens() -> &'static Mutex<HashMap<String, String>> {
    static TOKENS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// Records `token` as the admin token of the cluster with a member at `peer_addr`.
pub fn register_peer_token(peer_addr: &str, token: &str) {
    peer_tokens()
        .lock()
        .unwrap()
        .insert(addr_of(peer_addr).to_string(), token.to_string());
}

/// The admin token of the cluster a join token (`cairn-join-1.<expiry>.<id>.<key>.<peers>`) belongs to.
pub fn token_for_join_token(join_token: &str) -> Option<String> {
    let peers = join_token.trim().splitn(5, '.').nth(4)?;
    let known = peer_tokens().lock().unwrap();
    peers
        .split(',')
        .find_map(|p| known.get(addr_of(p.trim())).cloned())
}

/// Sends `to` the admin token the harness sends to `from` (a node that joined
/// `from`'s cluster wrote no token of its own).
pub fn inherit_token(from: &str, to: &str) {
    if let Some(token) = token_for(from) {
        register_token(to, &token);
    }
}

/// Peer address and data dir of each in-process node, by client address: a
/// test that speaks Raft to a node signs with the secret in its data dir.
fn peers() -> &'static Mutex<HashMap<String, (String, PathBuf)>> {
    static PEERS: OnceLock<Mutex<HashMap<String, (String, PathBuf)>>> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

fn register_peer(config: &Config) {
    peers().lock().unwrap().insert(
        addr_of(&config.advertise_addr).to_string(),
        (
            addr_of(&config.peer_advertise_addr).to_string(),
            config.data_dir.clone(),
        ),
    );
}

/// The peer address of the in-process node at `addr` and its cluster's key
/// for signing peer requests.
pub fn peer_of(addr: &str) -> Option<(String, cairn_host::raft::peer_auth::MacKey)> {
    let (peer, dir) = peers().lock().unwrap().get(addr_of(addr)).cloned()?;
    let secret = cairn_host::raft::peer_auth::ClusterSecret::load(&dir).ok()??;
    Some((peer, secret.peer_key()))
}

/// Makes `token` the one sent to `addr` by default.
pub fn register_token(addr: &str, token: &str) {
    tokens()
        .lock()
        .unwrap()
        .insert(addr_of(addr).to_string(), token.to_string());
}

/// The token sent to `addr` (a URL or `host:port`) by default, if any.
pub fn token_for(addr: &str) -> Option<String> {
    tokens().lock().unwrap().get(addr_of(addr)).cloned()
}

/// The admin token a node that initialised a cluster wrote to its data dir.
pub fn read_admin_token(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(cairn_host::node::ADMIN_TOKEN_FILE)).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// Sends one request to `addr` (`host:port`) and reads the whole response,
/// with the node's default admin token unless `headers` has an `authorization`.
pub async fn send_to(
    client: &HttpClient,
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Resp> {
    send_within(client, addr, method, path, headers, body, REQUEST_TIMEOUT).await
}

/// [`send_to`] with its own deadline, for requests known to be slow (deploying
/// a big component compiles it inside the request).
pub async fn send_within(
    client: &HttpClient,
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<Resp> {
    let bearer = match token_for(addr) {
        Some(t)
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization")) =>
        {
            Some(format!("Bearer {t}"))
        }
        _ => None,
    };
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(b) = &bearer {
        all.push(("authorization", b));
    }
    send_exactly(client, addr, method, path, &all, body, timeout).await
}

/// Sends one request with exactly `headers` (no default token).
pub async fn send_without_token(
    client: &HttpClient,
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Resp> {
    send_exactly(client, addr, method, path, headers, body, REQUEST_TIMEOUT).await
}

/// One request with exactly `headers`, under `timeout`.
async fn send_exactly(
    client: &HttpClient,
    addr: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<Resp> {
    let uri = http_client::url(addr, path)?;
    let mut req = http_client::request(method, uri, Some("application/json"), body);
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes())?,
            http::HeaderValue::from_str(v)?,
        );
    }
    let resp = http_client::send(client, req, timeout, 64 * 1024 * 1024).await?;
    let (parts, body) = resp.into_parts();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// `path?params`, or `path` alone when there are none.
fn with_params(path: &str, params: &str) -> String {
    if params.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{params}")
    }
}

/// One in-process node: its config (for restarts) and, while running, its handle.
pub struct Node {
    pub id: u64,
    pub config: Config,
    pub running: Option<RunningNode>,
    client: HttpClient,
}

impl Node {
    /// Starts a node with `config`. A node that initialised a cluster wrote
    /// its admin token, which the harness then sends to it; a node that joined
    /// gets its cluster's token registered by whoever joined it
    /// ([`Cluster::start_with`], [`inherit_token`]).
    pub async fn start(config: Config) -> Result<Node> {
        let running = cairn_host::node::start(config.clone())
            .await
            .with_context(|| format!("starting node {}", config.node_id))?;
        register_peer(&config);
        let joined = config
            .join_token
            .as_ref()
            .and_then(|t| token_for_join_token(t.expose()));
        if let Some(token) = read_admin_token(&config.data_dir).or(joined) {
            register_token(&config.advertise_addr, &token);
            register_peer_token(&config.peer_advertise_addr, &token);
        }
        Ok(Node {
            id: config.node_id,
            config,
            running: Some(running),
            client: http_client::new_client(),
        })
    }

    /// `host:port` of this node.
    pub fn addr(&self) -> &str {
        &self.config.advertise_addr
    }

    /// `http://host:port` of this node's client port.
    pub fn url(&self) -> String {
        format!("http://{}", self.config.advertise_addr)
    }

    /// `host:port` of this node's peer listener.
    pub fn peer_addr(&self) -> &str {
        &self.config.peer_advertise_addr
    }

    /// A new join token for this node's cluster (`POST /v1/cluster/join-token`).
    pub async fn join_token(&self) -> Result<String> {
        let r = self
            .req(Method::POST, "/v1/cluster/join-token", &[], Bytes::new())
            .await?
            .expect(200)?
            .json();
        r["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no token in {r}"))
    }

    /// The admin token the harness sends to this node.
    pub fn token(&self) -> Option<String> {
        token_for(self.addr())
    }

    /// The running node (panics if stopped).
    pub fn handle(&self) -> &RunningNode {
        self.running.as_ref().expect("node is stopped")
    }

    /// Stops the node; the data dir stays.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(15), r.stop())
                .await
                .map_err(|_| anyhow!("node {} did not stop within 15 s", self.id))??;
        }
        Ok(())
    }

    /// Starts the node again on the same data dir and port.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        // The port was just released by this process; retry briefly if the bind races.
        let config = self.config.clone();
        let running = eventually(Duration::from_secs(5), "node restart", || {
            let config = config.clone();
            async move { Ok(Some(cairn_host::node::start(config).await?)) }
        })
        .await?;
        self.running = Some(running);
        Ok(())
    }

    /// Sends a request to this node.
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Resp> {
        send_to(
            &self.client,
            self.addr(),
            method,
            path,
            headers,
            body.into(),
        )
        .await
    }

    /// Sends a request to this node with its own deadline.
    pub async fn req_within(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Resp> {
        send_within(
            &self.client,
            self.addr(),
            method,
            path,
            &[],
            body.into(),
            timeout,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Result<Resp> {
        self.req(Method::GET, path, &[], Bytes::new()).await
    }

    /// Deploys `wasm` as `name`.
    pub async fn deploy(&self, name: &str, wasm: &[u8]) -> Result<Resp> {
        self.req(
            Method::PUT,
            &format!("/v1/plugins/{name}"),
            &[],
            Bytes::copy_from_slice(wasm),
        )
        .await
    }

    /// Deploys `wasm` as `name` with a query string (`fuel_per_call=N&…`, may be
    /// empty) and extra headers (e.g. an idempotency key).
    pub async fn deploy_with(
        &self,
        name: &str,
        wasm: &[u8],
        params: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp> {
        self.req(
            Method::PUT,
            &with_params(&format!("/v1/plugins/{name}"), params),
            headers,
            Bytes::copy_from_slice(wasm),
        )
        .await
    }

    /// `PATCH /v1/plugins/{name}?{params}`: changes a plugin's limits.
    pub async fn set_limits(&self, name: &str, params: &str) -> Result<Resp> {
        let path = with_params(&format!("/v1/plugins/{name}"), params);
        self.req(Method::PATCH, &path, &[], Bytes::new()).await
    }

    /// Applies a JSON command.
    pub async fn apply(&self, name: &str, cmd: &Value) -> Result<Resp> {
        self.req(
            Method::POST,
            &format!("/v1/plugins/{name}/apply"),
            &[],
            serde_json::to_vec(cmd)?,
        )
        .await
    }

    /// Applies a JSON command with an Idempotency-Key.
    pub async fn apply_with_key(&self, name: &str, cmd: &Value, key: &str) -> Result<Resp> {
        self.req(
            Method::POST,
            &format!("/v1/plugins/{name}/apply"),
            &[("idempotency-key", key)],
            serde_json::to_vec(cmd)?,
        )
        .await
    }

    /// Queries with a raw query string (e.g. `consistency=stale&min_index=3`).
    pub async fn query(&self, name: &str, params: &str, q: &Value) -> Result<Resp> {
        let path = if params.is_empty() {
            format!("/v1/plugins/{name}/query")
        } else {
            format!("/v1/plugins/{name}/query?{params}")
        };
        self.req(Method::POST, &path, &[], serde_json::to_vec(q)?)
            .await
    }

    /// `GET /v1/cluster` as JSON.
    pub async fn cluster(&self) -> Result<Value> {
        self.cluster_json().await
    }

    /// Waits until this node's published applied state reaches `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<()> {
        eventually(
            WAIT,
            &format!("node {} to apply index {index}", self.id),
            || async { Ok((self.state_hash().0 >= index).then_some(())) },
        )
        .await
    }

    /// `(applied_index, hash)` straight from the applied state.
    pub fn state_hash(&self) -> (u64, String) {
        let s = self.handle().service.state();
        (s.applied_index(), s.hash_hex())
    }
}

impl HttpNode for Node {
    fn node_id(&self) -> u64 {
        self.id
    }
    fn http_addr(&self) -> String {
        self.addr().to_string()
    }
    fn http_client(&self) -> &HttpClient {
        &self.client
    }
}

/// A set of nodes sharing one temp dir.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Config for node `id` (1-based) under this cluster's dir on a fresh port.
    fn config_for(dir: &tempfile::TempDir, id: u64, tweak: &dyn Fn(&mut Config)) -> Config {
        let mut c = test_config(id, free_port(), dir.path().join(format!("node{id}")));
        tweak(&mut c);
        c
    }

    /// Starts `n` nodes: node 1 initialises, the others join one at a time with
    /// a join token from node 1 (which names its peer address).
    pub async fn start(n: usize) -> Result<Cluster> {
        Self::start_with(n, &|_| {}).await
    }

    /// Like [`Cluster::start`] with a config tweak applied to every node.
    pub async fn start_with(n: usize, tweak: &dyn Fn(&mut Config)) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let first = Node::start(Self::config_for(&dir, 1, tweak)).await?;
        let mut cluster = Cluster {
            nodes: vec![first],
            dir,
        };
        cluster.wait_leader().await?;
        for id in 2..=n as u64 {
            let mut config = Self::config_for(&cluster.dir, id, tweak);
            config.join_token = Some(cairn_host::config::Secret::new(
                cluster.nodes[0].join_token().await?,
            ));
            let node = Node::start(config).await?;
            inherit_token(cluster.nodes[0].addr(), node.addr());
            cluster.nodes.push(node);
            cluster.wait_voters(id as usize).await?;
        }
        cluster.wait_leader().await?;
        Ok(cluster)
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// Running nodes.
    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.running.is_some())
    }

    /// Waits until every running node names the same leader, that leader is running
    /// and reports itself leader; returns its id.
    pub async fn wait_leader(&self) -> Result<u64> {
        wait_agreed_leader(&self.running().collect::<Vec<_>>(), WAIT).await
    }

    /// Waits until every running node sees `n` voters.
    pub async fn wait_voters(&self, n: usize) -> Result<()> {
        eventually(WAIT, &format!("{n} voters on every node"), || async {
            for node in self.running() {
                let c = node.cluster().await?;
                let voters = c["members"]
                    .as_array()
                    .map_or(0, |m| m.iter().filter(|m| m["role"] == "voter").count());
                if voters != n {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
        .await
    }

    /// Waits until every running node has the same applied index and state hash; returns them.
    pub async fn converge(&self) -> Result<(u64, String)> {
        eventually(
            WAIT,
            "identical applied index and state hash on all running nodes",
            || async {
                let hashes: Vec<(u64, String)> = self.running().map(|n| n.state_hash()).collect();
                let first = hashes
                    .first()
                    .cloned()
                    .ok_or_else(|| anyhow!("no node running"))?;
                if hashes.iter().all(|h| *h == first) {
                    Ok(Some(first))
                } else {
                    Err(anyhow!("states differ: {hashes:?}"))
                }
            },
        )
        .await
    }

    /// Stops every running node.
    pub async fn stop_all(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            n.stop().await?;
        }
        Ok(())
    }
}
