//! The `cairn` command line: `serve` runs a node; every other subcommand is an HTTP client of one.
//!
//! Output is human-readable by default and the server's raw JSON with `--json`.
//! Failures are returned as errors; `main` prints them on one line and exits non-zero.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::error::ErrorEnvelope;
use crate::api::service::{ClusterStatus, DeployResponse, PluginList, StateHash};
use crate::api::{IDEMPOTENCY_KEY_HEADER, LOG_INDEX_HEADER};
use crate::config::Config;
use crate::http_client::{self, HttpClient};

/// Deadline for one CLI request; long enough for a deploy that compiles a component.
const CLI_REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Largest response the CLI reads.
const CLI_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

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
    /// What to do.
    #[command(subcommand)]
    pub command: Commands,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a node (alone, or joining a cluster with --join).
    Serve(ServeArgs),
    /// Deploy (or upgrade) plugin NAME from a .wasm component file; without
    /// FILE, NAME must be one of the built-in examples (counter, kv, bank).
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
    /// List deployed plugins.
    Plugins,
    /// Show the node's state hash.
    StateHash,
    /// Load-test a running cluster with the `kv` plugin (deployed if absent).
    Bench(crate::bench::BenchArgs),
}

/// `cairn members …`
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add node ID at ADDR (learner, caught up, then voter).
    Add {
        /// Node id.
        id: u64,
        /// Its advertised host:port.
        addr: String,
    },
    /// Remove node ID.
    Remove {
        /// Node id.
        id: u64,
    },
}

/// `cairn serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This node's id.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// host:port peers and clients use to reach this node (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Where the log, vote and snapshots live.
    #[arg(long, default_value = "./cairn-data")]
    pub data_dir: PathBuf,
    /// URL of a cluster member to ask to add this node.
    #[arg(long)]
    pub join: Option<String>,
    /// Leader heartbeat interval.
    #[arg(long, default_value_t = Config::default().heartbeat_interval_ms)]
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout.
    #[arg(long, default_value_t = Config::default().election_timeout_min_ms)]
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    #[arg(long, default_value_t = Config::default().election_timeout_max_ms)]
    pub election_timeout_max_ms: u64,
    /// Take a snapshot (and purge the log behind it) after this many entries.
    #[arg(long, default_value_t = Config::default().snapshot_logs_since_last)]
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind a snapshot, for slightly lagging followers.
    #[arg(long, default_value_t = Config::default().max_in_snapshot_log_to_keep)]
    pub max_in_snapshot_log_to_keep: u64,
    /// Largest request body (plugin uploads have their own limit).
    #[arg(long, default_value_t = Config::default().max_body_bytes)]
    pub max_body_bytes: u64,
    /// Largest plugin component accepted for deploy.
    #[arg(long, default_value_t = Config::default().max_plugin_bytes)]
    pub max_plugin_bytes: u64,
}

impl ServeArgs {
    /// The node configuration these flags describe (defaults for everything else).
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let config = Config {
            node_id: self.id,
            listen_addr: self.listen,
            advertise_addr: self
                .advertise
                .clone()
                .unwrap_or_else(|| self.listen.to_string()),
            data_dir: self.data_dir.clone(),
            join_url: self.join.clone(),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            snapshot_logs_since_last: self.snapshot_logs_since_last,
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            max_body_bytes: self.max_body_bytes,
            max_plugin_bytes: self.max_plugin_bytes,
            ..Config::default()
        };
        config.validate().context("invalid configuration")?;
        Ok(config)
    }
}

/// `/v1/plugins/{name}` with the optional per-plugin limits as query parameters.
fn deploy_path(name: &str, fuel_per_call: Option<u64>, memory_limit_bytes: Option<u64>) -> String {
    let params: Vec<String> = [
        ("fuel_per_call", fuel_per_call),
        ("memory_limit_bytes", memory_limit_bytes),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
    .collect();
    if params.is_empty() {
        format!("/v1/plugins/{name}")
    } else {
        format!("/v1/plugins/{name}?{}", params.join("&"))
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Commands::Serve(args) => serve(args).await,
        Commands::Bench(args) => Ok(crate::bench::run(args, &cli.url, cli.json).await?),
        _ => {
            let [url] = cli.url.as_slice() else {
                bail!("this command talks to one node; give a single --url");
            };
            Client::new(url, cli.json).run(&cli.command).await
        }
    }
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        let _ = tx.send(true);
    });
    Ok(crate::node::run(config, rx).await?)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// An HTTP client of one node.
struct Client {
    base: String,
    json: bool,
    http: HttpClient,
}

/// A successful response: body and the headers the CLI reports.
struct Reply {
    body: Bytes,
    log_index: Option<u64>,
}

impl Client {
    fn new(base: &str, json: bool) -> Self {
        Self {
            base: base.to_string(),
            json,
            http: http_client::new_client(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Reply> {
        let uri = http_client::url(&self.base, path)?;
        let mut req = http_client::request(method, uri, Some("application/json"), body);
        for (name, value) in headers {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_str(value)
                    .with_context(|| format!("invalid {name} header"))?,
            );
        }
        let timeout = Duration::from_millis(CLI_REQUEST_TIMEOUT_MS);
        let resp = http_client::send(&self.http, req, timeout, CLI_MAX_RESPONSE_BYTES).await?;
        let status = resp.status();
        let log_index = resp
            .headers()
            .get(LOG_INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp.into_body();
        if !status.is_success() {
            bail!("{}", describe_failure(status, &body));
        }
        Ok(Reply { body, log_index })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, Bytes)> {
        let reply = self.call(Method::GET, path, Bytes::new(), &[]).await?;
        Ok((parse(&reply.body)?, reply.body))
    }

    async fn run(&self, command: &Commands) -> anyhow::Result<()> {
        match command {
            Commands::Serve(_) | Commands::Bench(_) => unreachable!("handled by cli::run"),
            Commands::Deploy {
                name,
                file,
                fuel_per_call,
                memory_limit_bytes,
            } => {
                let wasm = match file {
                    Some(file) => tokio::fs::read(file)
                        .await
                        .with_context(|| format!("reading {}", file.display()))?,
                    None => crate::plugins::example(name)
                        .with_context(|| {
                            format!("no FILE given and {name:?} is not a built-in example (counter, kv, bank)")
                        })?
                        .to_vec(),
                };
                let reply = self
                    .call(
                        Method::PUT,
                        &deploy_path(name, *fuel_per_call, *memory_limit_bytes),
                        Bytes::from(wasm),
                        &[],
                    )
                    .await?;
                let d: DeployResponse = parse(&reply.body)?;
                self.print(&reply.body, || {
                    format!(
                        "deployed {} v{} (sha256 {}) at log index {}",
                        d.name, d.version, d.sha256, d.log_index
                    )
                })
            }
            Commands::Apply {
                name,
                input,
                idempotency_key,
            } => {
                let headers: Vec<(&str, String)> = idempotency_key
                    .iter()
                    .map(|k| (IDEMPOTENCY_KEY_HEADER, k.clone()))
                    .collect();
                let path = format!("/v1/plugins/{name}/apply");
                let reply = self
                    .call(Method::POST, &path, Bytes::from(input.clone()), &headers)
                    .await?;
                self.print_output(&reply)
            }
            Commands::Query {
                name,
                input,
                stale,
                min_index,
            } => {
                let mut path = format!("/v1/plugins/{name}/query");
                let mut params = Vec::new();
                if *stale {
                    params.push("consistency=stale".to_string());
                }
                if let Some(n) = min_index {
                    params.push(format!("min_index={n}"));
                }
                if !params.is_empty() {
                    path = format!("{path}?{}", params.join("&"));
                }
                let reply = self
                    .call(Method::POST, &path, Bytes::from(input.clone()), &[])
                    .await?;
                self.print_output(&reply)
            }
            Commands::Status => {
                let (status, raw): (ClusterStatus, _) = self.get("/v1/cluster").await?;
                self.print(&raw, || format_status(&status))
            }
            Commands::Members { action } => {
                let reply = match action {
                    MembersCommand::Add { id, addr } => {
                        let body =
                            serde_json::to_vec(&serde_json::json!({"id": id, "addr": addr}))?;
                        self.call(Method::POST, "/v1/cluster/members", Bytes::from(body), &[])
                            .await?
                    }
                    MembersCommand::Remove { id } => {
                        self.call(
                            Method::DELETE,
                            &format!("/v1/cluster/members/{id}"),
                            Bytes::new(),
                            &[],
                        )
                        .await?
                    }
                };
                let status: ClusterStatus = parse(&reply.body)?;
                self.print(&reply.body, || format_status(&status))
            }
            Commands::Plugins => {
                let (list, raw): (PluginList, _) = self.get("/v1/plugins").await?;
                self.print(&raw, || format_plugins(&list))
            }
            Commands::StateHash => {
                let (hash, raw): (StateHash, _) = self.get("/v1/state-hash").await?;
                self.print(&raw, || {
                    format!("{} at applied index {}", hash.hash, hash.applied_index)
                })
            }
        }
    }

    fn print(&self, raw: &[u8], human: impl FnOnce() -> String) -> anyhow::Result<()> {
        if self.json {
            println!("{}", String::from_utf8_lossy(raw));
        } else {
            println!("{}", human());
        }
        Ok(())
    }

    /// Plugin output: as-is for humans (plus the log index of a write); for
    /// `--json`, wrapped with the index, embedded as JSON when it is JSON.
    fn print_output(&self, reply: &Reply) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(&reply.body);
        if self.json {
            let output = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
            println!(
                "{}",
                serde_json::json!({"log_index": reply.log_index, "output": output})
            );
        } else {
            println!("{text}");
            if let Some(index) = reply.log_index {
                println!("(log index {index})");
            }
        }
        Ok(())
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body).context("unexpected response from the node")
}

/// One line from an error response: the node's `code: message` when it sent one.
fn describe_failure(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(env) => format!("{}: {}", env.error.code, env.error.message),
        Err(_) => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            format!("HTTP {status}: {}", text.trim())
        }
    }
}

fn format_status(s: &ClusterStatus) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
    let mut out = format!(
        "node {} ({}), term {}, leader {}\napplied {}, committed {}\nmembers:",
        s.id,
        s.state,
        s.term,
        opt(s.leader_id),
        opt(s.last_applied),
        opt(s.committed)
    );
    for m in &s.members {
        let role = serde_json::to_value(m.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!("\n  {:<4} {:<8} {}", m.id, role, m.addr));
    }
    out
}

fn format_plugins(list: &PluginList) -> String {
    if list.plugins.is_empty() {
        return "no plugins deployed".to_string();
    }
    let mut out = format!(
        "{:<20} {:>7} {:<14} {:>10} {:>12}",
        "NAME", "VERSION", "SHA256", "BYTES", "DEPLOYED AT"
    );
    for p in &list.plugins {
        let sha: String = p.sha256.chars().take(12).collect();
        out.push_str(&format!(
            "\n{:<20} {:>7} {:<14} {:>10} {:>12}",
            p.name, p.version, sha, p.size_bytes, p.deployed_at_index
        ));
    }
    out
}

#[cfg(test)]
mod tests;
