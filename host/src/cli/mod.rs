//! The `cairn` command line: `serve` runs a node; every other subcommand is an HTTP client of one.
//!
//! Output is human-readable by default and the server's raw JSON with `--json`.
//! Failures are returned as errors; `main` prints them on one line and exits non-zero.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::error::ErrorEnvelope;
use crate::api::service::{ClusterStatus, DeployResponse, PluginList, StateHash};
use crate::api::{IDEMPOTENCY_KEY_HEADER, LOG_INDEX_HEADER, SAMPLE_QUERIES_HEADER};
use crate::http_client::{self, HttpClient};

mod args;
pub mod scaffold;
pub use args::{Cli, Commands, MembersCommand, PluginsCommand, ServeArgs};

/// Deadline for one CLI request; long enough for a deploy that compiles a component.
const CLI_REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Largest response the CLI reads.
const CLI_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

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
        Commands::New { name, lang, dir } => new_project(name, lang, dir.as_deref()),
        _ => {
            let [url] = cli.url.as_slice() else {
                bail!("this command talks to one node; give a single --url");
            };
            Client::new(url, cli.json).run(&cli.command).await
        }
    }
}

/// `cairn new`: writes the project and says what to run next.
fn new_project(name: &str, lang: &str, dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let dir = dir.map_or_else(|| std::path::PathBuf::from(name), |d| d.to_path_buf());
    let files = scaffold::create(name, lang, &dir)?;
    println!(
        "created {lang} plugin {name} in {} ({} files)",
        dir.display(),
        files.len()
    );
    println!(
        "next: cd {} && see README.md (test, ./build.sh, cairn deploy)",
        dir.display()
    );
    Ok(())
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
            Commands::Serve(_) | Commands::Bench(_) | Commands::New { .. } => {
                unreachable!("handled by cli::run")
            }
            Commands::Deploy {
                name,
                file,
                fuel_per_call,
                memory_limit_bytes,
                idempotency_key,
                dry_run,
                sample_queries,
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
                if *dry_run {
                    let queries = sample_queries
                        .iter()
                        .map(|q| serde_json::from_str(q))
                        .collect::<Result<Vec<serde_json::Value>, _>>()
                        .context("each --sample-query must be JSON")?;
                    let header = (
                        SAMPLE_QUERIES_HEADER,
                        serde_json::Value::Array(queries).to_string(),
                    );
                    let path = deploy_path(name, *fuel_per_call, *memory_limit_bytes).replacen(
                        &format!("/v1/plugins/{name}"),
                        &format!("/v1/plugins/{name}/dry-run"),
                        1,
                    );
                    let reply = self
                        .call(Method::POST, &path, Bytes::from(wasm), &[header])
                        .await?;
                    let report: serde_json::Value = parse(&reply.body)?;
                    return self.print(&reply.body, || {
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    });
                }
                let headers: Vec<(&str, String)> = idempotency_key
                    .iter()
                    .map(|k| (IDEMPOTENCY_KEY_HEADER, k.clone()))
                    .collect();
                let reply = self
                    .call(
                        Method::PUT,
                        &deploy_path(name, *fuel_per_call, *memory_limit_bytes),
                        Bytes::from(wasm),
                        &headers,
                    )
                    .await?;
                let d: DeployResponse = parse(&reply.body)?;
                self.print(&reply.body, || format_deployed(&d))
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
            Commands::Plugins { action } => match action {
                None | Some(PluginsCommand::List) => {
                    let (list, raw): (PluginList, _) = self.get("/v1/plugins").await?;
                    self.print(&raw, || format_plugins(&list))
                }
                Some(PluginsCommand::SetLimits {
                    name,
                    fuel_per_call,
                    memory_limit_bytes,
                }) => {
                    let path = deploy_path(name, *fuel_per_call, *memory_limit_bytes);
                    let reply = self.call(Method::PATCH, &path, Bytes::new(), &[]).await?;
                    let d: DeployResponse = parse(&reply.body)?;
                    self.print(&reply.body, || format_deployed(&d))
                }
            },
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
    match ErrorEnvelope::parse(body) {
        Some(e) => format!("{}: {}", e.code, e.message),
        None => {
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

fn format_deployed(d: &DeployResponse) -> String {
    let what = if d.changed { "deployed" } else { "unchanged:" };
    format!(
        "{what} {} v{} (sha256 {}) at log index {}",
        d.name, d.version, d.sha256, d.log_index
    )
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
