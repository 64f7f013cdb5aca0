//! Test harness for separate `cairn` processes: the real binary, each node its own OS
//! process on a loopback client port and peer port with its own data dir; crashes
//! are SIGKILL, clean stops SIGTERM. Nodes join with a join token from node 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use cairn_host::http_client::{self, HttpClient};
use http::Method;
use serde_json::{Value, json};

use crate::harness::{
    Resp, WAIT, eventually, free_port, read_admin_token, register_peer_token, register_token,
    send_to, token_for, token_for_join_token,
};
use crate::http_node::{HttpNode, converge_http, wait_agreed_leader, wait_voter_ids};

/// How long a process gets to exit after SIGTERM before it is SIGKILLed (and the test fails).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The newest modification time of any file under `dir` (bounded walk).
fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            seen += 1;
            if seen > 10_000 {
                return newest;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if let Ok(t) = meta.modified() {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

/// Path of the `cairn` binary next to this test binary (`target/<profile>/cairn`).
///
/// `cargo test` builds it (the `cairn-host` package has integration tests that
/// run it). It is rebuilt here only when missing or older than a source it is
/// made from (host, guest SDK, plugins, WIT): a rebuild from inside a test run
/// resolves features differently from `cargo test` and recompiles the
/// dependencies, which is slow, so it must not happen when the binary is fresh.
pub fn cairn_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/system-xxxx
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps")
            .to_path_buf();
        let bin = profile_dir.join(format!("cairn{}", std::env::consts::EXE_SUFFIX));
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ sits in the workspace");
        let newest_source = ["host", "guest-sdk", "plugins", "wit"]
            .iter()
            .filter_map(|d| newest_mtime(&workspace.join(d)))
            .max();
        let stale = match (mtime(&bin), newest_source) {
            (Some(b), Some(src)) => b < src,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if stale {
            let target_dir = profile_dir.parent().expect("target dir");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "cairn-host", "--bin", "cairn"])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            match profile_dir.file_name().and_then(|s| s.to_str()) {
                Some("debug") | None => {}
                Some("release") => {
                    cmd.arg("--release");
                }
                Some(p) => {
                    cmd.args(["--profile", p]);
                }
            }
            let status = cmd
                .status()
                .expect("running cargo build for the cairn binary");
            assert!(status.success(), "cargo build of the cairn binary failed");
        }
        assert!(bin.exists(), "no cairn binary at {}", bin.display());
        bin
    })
}

/// Runs the `cairn` CLI with `args` (a client command) to completion, with
/// the admin token the harness sends to the `--url` node (as `CAIRN_TOKEN`).
pub async fn cairn_cli(args: Vec<String>) -> Result<Output> {
    let bin = cairn_bin();
    let token = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|at| args.get(at + 1))
        .and_then(|url| token_for(url));
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .env("NO_COLOR", "1")
            .env_remove("CAIRN_URL")
            .env_remove("CAIRN_CACERT")
            .env_remove("CAIRN_TOKEN");
        if let Some(token) = token {
            cmd.env("CAIRN_TOKEN", token);
        }
        cmd.stdin(Stdio::null()).output()
    })
    .await?
    .context("running the cairn cli")
}

/// Runs `cmd` with its stderr appended to `log` until it exits; fails (and
/// kills it) if it still runs after `timeout`.
pub async fn run_to_exit(mut cmd: Command, log: &Path, timeout: Duration) -> Result<ExitStatus> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut child = cmd.stderr(file).spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} still runs after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `cairn serve` process (or its spec, while stopped).
pub struct ProcNode {
    pub id: u64,
    /// Address it listens on and advertises (loopback, or a namespace's).
    pub host: String,
    pub port: u16,
    /// Its peer listener's port (same host).
    pub peer_port: u16,
    /// The CA its TLS certificate is signed by, when it serves TLS (then
    /// requests go to `https://`, verified against it).
    pub tls_ca: Option<PathBuf>,
    /// Words run in front of the binary, e.g. `ip netns exec NS`.
    pub wrapper: Vec<String>,
    pub data_dir: PathBuf,
    /// Extra `serve` flags (join, snapshot policy), reused on restart.
    pub args: Vec<String>,
    child: Option<Child>,
    client: HttpClient,
}

impl ProcNode {
    /// Spawns node `id` on fresh loopback ports under `dir/node<id>` and waits until it answers `/healthz`.
    pub async fn start(id: u64, dir: &Path, args: Vec<String>) -> Result<ProcNode> {
        Self::start_in(id, dir, "127.0.0.1", free_port(), Vec::new(), args).await
    }

    /// Like [`ProcNode::start`], serving TLS: `args` carry `--tls-cert`/`--tls-key`
    /// (and `--cacert`); requests are verified against `ca`.
    pub async fn start_tls(id: u64, dir: &Path, args: Vec<String>, ca: &Path) -> Result<ProcNode> {
        let mut node = Self::spec(
            id,
            dir,
            "127.0.0.1",
            free_port(),
            free_port(),
            Vec::new(),
            args,
        )?;
        node.tls_ca = Some(ca.to_path_buf());
        node.client = http_client::client_with_ca(Some(ca))?;
        node.spawn().await?;
        Ok(node)
    }

    /// Like [`ProcNode::start`], listening on `host:port` (peer port: the next
    /// one when `host` is not loopback, a free one otherwise) and run through `wrapper`.
    pub async fn start_in(
        id: u64,
        dir: &Path,
        host: &str,
        port: u16,
        wrapper: Vec<String>,
        args: Vec<String>,
    ) -> Result<ProcNode> {
        let peer_port = if host == "127.0.0.1" {
            free_port()
        } else {
            port + 1
        };
        let mut node = Self::spec(id, dir, host, port, peer_port, wrapper, args)?;
        node.spawn().await?;
        Ok(node)
    }

    /// The node's description, not started.
    pub fn spec(
        id: u64,
        dir: &Path,
        host: &str,
        port: u16,
        peer_port: u16,
        wrapper: Vec<String>,
        args: Vec<String>,
    ) -> Result<ProcNode> {
        let data_dir = dir.join(format!("node{id}"));
        std::fs::create_dir_all(&data_dir)?;
        Ok(ProcNode {
            id,
            host: host.to_string(),
            port,
            peer_port,
            tls_ca: None,
            wrapper,
            data_dir,
            args,
            child: None,
            client: http_client::new_client(),
        })
    }

    /// `host:port` the client API listens on.
    pub fn listen_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:port` the peer listener listens on.
    pub fn peer_listen_addr(&self) -> String {
        format!("{}:{}", self.host, self.peer_port)
    }

    /// Base URL of this node's client API (`https://` when it serves TLS).
    pub fn addr(&self) -> String {
        match self.tls_ca {
            Some(_) => format!("https://{}", self.listen_addr()),
            None => self.listen_addr(),
        }
    }

    pub fn url(&self) -> String {
        match self.tls_ca {
            Some(_) => self.addr(),
            None => format!("http://{}", self.addr()),
        }
    }

    /// A new join token for this node's cluster (`POST /v1/cluster/join-token`).
    pub async fn join_token(&self) -> Result<String> {
        let r = self
            .req(Method::POST, "/v1/cluster/join-token", Bytes::new())
            .await?
            .expect(200)?
            .json();
        r["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no token in {r}"))
    }

    /// The command line of `cairn serve` for this node (its ports, data dir and args).
    pub fn command(&self) -> Command {
        let bin = cairn_bin();
        let (program, wrapper_args) = match self.wrapper.split_first() {
            Some((first, rest)) => (Path::new(first.as_str()), rest),
            None => (bin, &[][..]),
        };
        let mut cmd = Command::new(program);
        cmd.args(wrapper_args);
        if !self.wrapper.is_empty() {
            cmd.arg(bin);
        }
        let (addr, peer) = (self.listen_addr(), self.peer_listen_addr());
        cmd.arg("serve")
            .args(["--id", &self.id.to_string()])
            .args(["--listen", &addr, "--advertise", &addr])
            .args(["--peer-listen", &peer, "--peer-advertise", &peer])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file the process's stderr (its log) is appended to.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("stderr.log")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The URL this node joins through (`--join URL` in its args), if any.
    fn join_url(&self) -> Option<&str> {
        let at = self.args.iter().position(|a| a == "--join")?;
        self.args.get(at + 1).map(String::as_str)
    }

    /// Starts the process on the same port and data dir; waits until it answers
    /// `/healthz`, and until it has an admin token the harness can send: the
    /// `admin.token` it writes when it initialises a cluster, or the token of
    /// the node it joins through (also given to it as `CAIRN_TOKEN`).
    /// Retries (bounded) if the process exits right away, e.g. because the port is not free yet.
    async fn spawn(&mut self) -> Result<()> {
        let join_token = self.join_url().and_then(token_for);
        self.spawn_process(join_token.as_deref()).await?;
        // A node that joined with a join token writes no admin.token: it is
        // sent the admin token of the cluster the join token names.
        if let Some(at) = self.args.iter().position(|a| a == "--join-token") {
            if let Some(token) = self.args.get(at + 1).and_then(|t| token_for_join_token(t)) {
                register_token(&self.addr(), &token);
                register_peer_token(&self.peer_listen_addr(), &token);
            }
            return Ok(());
        }
        let token = match join_token {
            Some(t) => t,
            None => {
                let dir = self.data_dir.clone();
                eventually(
                    WAIT,
                    &format!("node {} to write admin.token", self.id),
                    || {
                        let dir = dir.clone();
                        async move { Ok(read_admin_token(&dir)) }
                    },
                )
                .await?
            }
        };
        register_token(&self.addr(), &token);
        register_peer_token(&self.peer_listen_addr(), &token);
        Ok(())
    }

    async fn spawn_process(&mut self, join_token: Option<&str>) -> Result<()> {
        let bin = cairn_bin();
        let deadline = Instant::now() + Duration::from_secs(20);
        for attempt in 1..=5 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())?;
            let mut cmd = self.command();
            cmd.env_remove("CAIRN_TOKEN").env_remove("CAIRN_DATA_DIR");
            if let Some(token) = join_token {
                cmd.env("CAIRN_TOKEN", token);
            }
            let child = cmd
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {}", bin.display()))?;
            self.child = Some(child);
            loop {
                if let Some(status) = self.child.as_mut().unwrap().try_wait()? {
                    self.child = None;
                    if attempt == 5 || Instant::now() >= deadline {
                        bail!(
                            "node {} exited at start ({status}); log tail:\n{}",
                            self.id,
                            self.log_tail(30)
                        );
                    }
                    break; // retry
                }
                if let Ok(r) = self.get("/healthz").await
                    && r.status == 200
                {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    self.kill();
                    bail!(
                        "node {} did not answer /healthz within 20 s; log tail:\n{}",
                        self.id,
                        self.log_tail(30)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        unreachable!()
    }

    /// Runs `cairn serve` for this node expecting it to exit by itself (a node
    /// that must refuse to start); returns its exit status and its log.
    /// Fails if it is still running after `timeout`.
    pub async fn run_until_exit(&self, timeout: Duration) -> Result<(ExitStatus, String)> {
        let status = run_to_exit(self.command(), &self.log_path(), timeout).await?;
        Ok((status, self.log()))
    }

    /// SIGKILL (a crash); reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process keeps its sockets (the kernel still accepts
    /// connections and buffers requests) but runs nothing until [`Self::resume`].
    pub fn pause(&self) -> Result<()> {
        self.signal("STOP")
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) -> Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> Result<()> {
        let Some(child) = self.child.as_ref() else {
            anyhow::bail!("node {} is not running", self.id);
        };
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), child.id().to_string()])
            .status()?;
        anyhow::ensure!(
            status.success(),
            "kill -{name} node {} failed: {status}",
            self.id
        );
        Ok(())
    }

    /// SIGTERM and wait (bounded) for a clean exit; fails if it does not exit or exits non-zero.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !st.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                if !status.success() {
                    bail!(
                        "node {} exited with {status} after SIGTERM; log tail:\n{}",
                        self.id,
                        self.log_tail(30)
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "node {} did not exit within {STOP_TIMEOUT:?} of SIGTERM",
                    self.id
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the (stopped or killed) process again on its data dir and port.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop().await?;
        }
        self.spawn().await
    }

    pub async fn req(&self, method: Method, path: &str, body: impl Into<Bytes>) -> Result<Resp> {
        send_to(&self.client, &self.addr(), method, path, &[], body.into()).await
    }

    pub async fn get(&self, path: &str) -> Result<Resp> {
        self.req(Method::GET, path, Bytes::new()).await
    }
}

impl HttpNode for ProcNode {
    fn node_id(&self) -> u64 {
        self.id
    }
    fn http_addr(&self) -> String {
        self.addr()
    }
    fn http_client(&self) -> &HttpClient {
        &self.client
    }
}

impl Drop for ProcNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several `cairn` processes under one temp dir. Unless [`ProcCluster::finish`] ran, dropping it
/// (a failed test) prints each node's log tail.
pub struct ProcCluster {
    pub nodes: Vec<ProcNode>,
    pub dir: tempfile::TempDir,
    passed: bool,
}

impl ProcCluster {
    /// Starts `n` processes with `args`: node 1 initialises, the others join one at a time
    /// with a join token from node 1.
    pub async fn start(n: u64, args: &[&str]) -> Result<ProcCluster> {
        let dir = tempfile::tempdir()?;
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let first = ProcNode::start(1, dir.path(), args.clone()).await?;
        let mut cluster = ProcCluster {
            nodes: vec![first],
            dir,
            passed: false,
        };
        cluster.wait_leader().await?;
        for id in 2..=n {
            cluster.add(id, args.clone()).await?;
        }
        cluster.wait_leader().await?;
        Ok(cluster)
    }

    /// Starts node `id` with a join token from node 1 and waits until every running node sees it as a voter.
    pub async fn add(&mut self, id: u64, mut args: Vec<String>) -> Result<()> {
        args.extend([
            "--join-token".to_string(),
            self.nodes[0].join_token().await?,
        ]);
        let node = ProcNode::start(id, self.dir.path(), args).await?;
        if let Some(admin) = token_for(&self.nodes[0].addr()) {
            register_token(&node.addr(), &admin);
        }
        self.nodes.push(node);
        let voters = self.nodes.len();
        self.wait_voters(voters).await
    }

    pub fn node(&self, id: u64) -> &ProcNode {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    pub fn node_mut(&mut self, id: u64) -> &mut ProcNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    pub fn running(&self) -> impl Iterator<Item = &ProcNode> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// Waits until every running node names the same running leader, which reports itself leader.
    pub async fn wait_leader(&self) -> Result<u64> {
        wait_agreed_leader(&self.running().collect::<Vec<_>>(), WAIT).await
    }

    /// Waits until every running node lists exactly the voters `ids`.
    pub async fn wait_voter_ids(&self, ids: &[u64]) -> Result<()> {
        wait_voter_ids(&self.running().collect::<Vec<_>>(), ids, WAIT).await
    }

    /// Waits until every running node sees `n` voters (the node ids present in `nodes`).
    pub async fn wait_voters(&self, n: usize) -> Result<()> {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids.len(), n);
        self.wait_voter_ids(&ids).await
    }

    /// Waits until every running node reports the same applied index and state hash.
    pub async fn converge(&self) -> Result<(u64, String)> {
        converge_http(&self.running().collect::<Vec<_>>(), WAIT).await
    }

    /// Deploys the example kv plugin through node `via`.
    pub async fn deploy_kv(&self, via: u64) -> Result<()> {
        let wasm = cairn_host::plugins::example("kv").expect("kv example plugin");
        self.node(via)
            .req(Method::PUT, "/v1/plugins/kv", Bytes::from_static(wasm))
            .await?
            .expect(201)?;
        Ok(())
    }

    /// SIGTERMs every running node (each must exit cleanly) and marks the test passed.
    pub async fn finish(mut self) -> Result<()> {
        for n in &mut self.nodes {
            n.stop().await?;
        }
        self.passed = true;
        Ok(())
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        kill_all(&mut self.nodes, self.passed);
    }
}

/// Kills every node; unless the test passed, prints each one's log tail so a
/// failure can be understood.
pub fn kill_all(nodes: &mut [ProcNode], passed: bool) {
    for n in nodes.iter_mut() {
        n.kill();
    }
    if !passed {
        for n in nodes.iter() {
            eprintln!(
                "---- node {} ({}, {}) log tail ----\n{}",
                n.id,
                n.addr(),
                n.log_path().display(),
                n.log_tail(40)
            );
        }
    }
}

/// Concurrent kv writers: `tasks` tasks, each putting distinct keys `<prefix><task>-<i>` (value
/// `task * 1_000_000 + i`) round-robin through `addrs` until `stop`, recording each put acknowledged
/// with 200. Failures (e.g. during an election) are not recorded; the task backs off briefly.
pub mod writers {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    pub struct Writers {
        pub acked: Arc<Mutex<BTreeMap<String, u64>>>,
        stop: Arc<AtomicBool>,
        handles: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Writers {
        pub fn spawn(prefix: &str, tasks: u64, addrs: Vec<String>, max_per_task: u64) -> Writers {
            let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
            let stop = Arc::new(AtomicBool::new(false));
            let handles = (0..tasks)
                .map(|t| {
                    let (acked, stop, addrs) = (acked.clone(), stop.clone(), addrs.clone());
                    let prefix = prefix.to_string();
                    tokio::spawn(async move {
                        let client = http_client::new_client();
                        let mut i = 0u64;
                        while !stop.load(Ordering::Relaxed) && i < max_per_task {
                            let addr = &addrs[((i + t) % addrs.len() as u64) as usize];
                            let key = format!("{prefix}{t}-{i:06}");
                            let value = t * 1_000_000 + i;
                            let body =
                                serde_json::to_vec(&json!({"put": {"key": key, "value": value}}))
                                    .unwrap();
                            match send_to(
                                &client,
                                addr,
                                Method::POST,
                                "/v1/plugins/kv/apply",
                                &[],
                                body.into(),
                            )
                            .await
                            {
                                Ok(r) if r.status == 200 => {
                                    acked.lock().unwrap().insert(key, value);
                                }
                                _ => tokio::time::sleep(Duration::from_millis(20)).await,
                            }
                            i += 1;
                        }
                    })
                })
                .collect();
            Writers {
                acked,
                stop,
                handles,
            }
        }

        pub fn count(&self) -> usize {
            self.acked.lock().unwrap().len()
        }

        /// Waits until at least `n` puts are acknowledged in total.
        pub async fn wait_acked(&self, n: usize, timeout: Duration) -> Result<()> {
            eventually(timeout, &format!("{n} acknowledged puts"), || async {
                let c = self.count();
                if c >= n {
                    Ok(Some(()))
                } else {
                    Err(anyhow!("{c} acknowledged so far"))
                }
            })
            .await
        }

        /// Stops the writers and returns every acknowledged put.
        pub async fn stop(self) -> Result<BTreeMap<String, u64>> {
            self.stop.store(true, Ordering::Relaxed);
            for h in self.handles {
                h.await?;
            }
            Ok(std::mem::take(&mut *self.acked.lock().unwrap()))
        }
    }
}

/// Fails unless every acknowledged put is present with its value in `found`.
pub fn check_acked(acked: &BTreeMap<String, u64>, found: &BTreeMap<String, Value>) -> Result<()> {
    let missing: Vec<String> = acked
        .iter()
        .filter(|(k, v)| found.get(*k) != Some(&json!(v)))
        .map(|(k, v)| format!("{k}={v} (found {:?})", found.get(k)))
        .take(10)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} acknowledged puts missing or wrong, e.g. {missing:?}",
            acked
                .iter()
                .filter(|(k, v)| found.get(*k) != Some(&json!(v)))
                .count()
        );
    }
    Ok(())
}
