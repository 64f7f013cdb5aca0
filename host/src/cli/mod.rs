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

use crate::api::auth::{CreatedToken, RevokedToken, TokenList};
use crate::api::service::{
    ClusterStatus, DeployResponse, JoinTokenResponse, PluginList, RemoveResponse, StateHash,
};
use crate::api::{
    APPLIED_INDEX_HEADER, IDEMPOTENCY_KEY_HEADER, LOG_INDEX_HEADER, SAMPLE_QUERIES_HEADER,
};
use crate::http_client::{self, HttpClient};

mod args;
mod backup;
mod format;
use format::{describe_failure, format_deployed, format_plugins, format_status, format_tokens};
pub mod events;
pub mod scaffold;
pub use args::{
    Cli, Commands, LogFormat, MembersCommand, PluginsCommand, SchedPolicy, ServeArgs, TokensCommand,
};

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

/// The token client commands send: `--token` (or `CAIRN_TOKEN`), else the
/// admin token in `DATA_DIR/admin.token` when it is readable, else none.
fn client_token(cli: &Cli) -> Option<String> {
    if let Some(token) = &cli.token {
        return Some(token.trim().to_string());
    }
    let path = cli.data_dir.join(crate::node::ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no admin token file; sending no token");
            None
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Commands::Serve(args) => serve(args, &cli).await,
        Commands::New { name, lang, dir } => new_project(name, lang, dir.as_deref()),
        Commands::Bench(args) => {
            let token = client_token(&cli);
            let http = http_client::client_with_ca(cli.cacert.as_deref())?;
            Ok(crate::bench::run(args, &cli.url, cli.json, token.as_deref(), &http).await?)
        }
        _ => {
            let [url] = cli.url.as_slice() else {
                bail!("this command talks to one node; give a single --url");
            };
            let http = http_client::client_with_ca(cli.cacert.as_deref())?;
            Client::new(url, cli.json, client_token(&cli), &cli.data_dir, http)
                .run(&cli.command)
                .await
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

async fn serve(args: &ServeArgs, cli: &Cli) -> anyhow::Result<()> {
    let config = args.to_config(&cli.data_dir, cli.cacert.clone())?;
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
    /// Sent as `Authorization: Bearer`; `None` sends nothing.
    token: Option<String>,
    /// Where the token would have come from, for the hint on a 401.
    token_file: std::path::PathBuf,
}

/// `/v1/plugins/{name}/apply`, asking for the emitted events with `events`.
fn apply_path(name: &str, events: bool) -> String {
    let path = format!("/v1/plugins/{name}/apply");
    if events {
        format!("{path}?events=true")
    } else {
        path
    }
}

/// `--json` output of an apply or query: `{"log_index": N, "output": …}` for a
/// write, `{"applied_index": N, "output": …}` for a query. JSON output is
/// embedded byte for byte, so the server's key order is kept; other output
/// becomes a JSON string.
fn json_output(reply: &Reply) -> String {
    let (key, index) = match (reply.log_index, reply.applied_index) {
        (None, Some(applied)) => ("applied_index", Some(applied)),
        (log_index, _) => ("log_index", log_index),
    };
    let index = index.map_or_else(|| "null".to_string(), |i| i.to_string());
    let output = if serde_json::from_slice::<serde::de::IgnoredAny>(&reply.body).is_ok() {
        String::from_utf8_lossy(&reply.body).trim().to_string()
    } else {
        serde_json::Value::String(String::from_utf8_lossy(&reply.body).into_owned()).to_string()
    };
    format!(r#"{{"{key}":{index},"output":{output}}}"#)
}

/// Uploads at least this large show a spinner on a terminal (smaller ones finish at once).
const UPLOAD_SPINNER_MIN_BYTES: usize = 1024 * 1024;
/// How often the upload spinner redraws.
const SPINNER_TICK_MS: u64 = 120;

/// A spinner with the upload's size while a large deploy is sent, replicated
/// and compiled (one request with a complete body: the bytes sent are not
/// observable, so this shows liveness and elapsed time, not a fraction).
/// Hidden when stdout is not a terminal.
fn upload_spinner(name: &str, size: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if size < UPLOAD_SPINNER_MIN_BYTES || !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(format!(
        "deploying {name} ({}): upload, replication, compile",
        indicatif::HumanBytes(size as u64)
    ));
    bar.enable_steady_tick(Duration::from_millis(SPINNER_TICK_MS));
    bar
}

/// A successful response: body and the headers the CLI reports.
struct Reply {
    body: Bytes,
    /// `cairn-log-index` of a write.
    log_index: Option<u64>,
    /// `cairn-applied-index` of a query.
    applied_index: Option<u64>,
}

impl Client {
    fn new(
        base: &str,
        json: bool,
        token: Option<String>,
        data_dir: &std::path::Path,
        http: HttpClient,
    ) -> Self {
        Self {
            base: base.to_string(),
            json,
            http,
            token,
            token_file: data_dir.join(crate::node::ADMIN_TOKEN_FILE),
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
        if let Some(token) = &self.token {
            http_client::set_bearer(&mut req, token)?;
        }
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
        let index = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        };
        let (log_index, applied_index) = (index(LOG_INDEX_HEADER), index(APPLIED_INDEX_HEADER));
        let body = resp.into_body();
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            bail!(
                "{} (no --token or CAIRN_TOKEN given, and no readable {})",
                describe_failure(status, &body),
                self.token_file.display()
            );
        }
        if !status.is_success() {
            bail!("{}", describe_failure(status, &body));
        }
        Ok(Reply {
            body,
            log_index,
            applied_index,
        })
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
                let spinner = upload_spinner(name, wasm.len());
                let reply = self
                    .call(
                        Method::PUT,
                        &deploy_path(name, *fuel_per_call, *memory_limit_bytes),
                        Bytes::from(wasm),
                        &headers,
                    )
                    .await;
                spinner.finish_and_clear();
                let reply = reply?;
                let d: DeployResponse = parse(&reply.body)?;
                self.print(&reply.body, || format_deployed(&d))
            }
            Commands::Apply {
                name,
                input,
                idempotency_key,
                events,
            } => {
                let headers: Vec<(&str, String)> = idempotency_key
                    .iter()
                    .map(|k| (IDEMPOTENCY_KEY_HEADER, k.clone()))
                    .collect();
                let path = apply_path(name, *events);
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
                    MembersCommand::Add {
                        id,
                        addr,
                        peer_addr,
                    } => {
                        let body = serde_json::to_vec(
                            &serde_json::json!({"id": id, "addr": addr, "peer_addr": peer_addr}),
                        )?;
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
                Some(PluginsCommand::Remove { name }) => {
                    let path = format!("/v1/plugins/{name}");
                    let reply = self.call(Method::DELETE, &path, Bytes::new(), &[]).await?;
                    let removed: RemoveResponse = parse(&reply.body)?;
                    self.print(&reply.body, || {
                        format!(
                            "removed {} at log index {}",
                            removed.name, removed.log_index
                        )
                    })
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
            Commands::Watch { name, from_index } => {
                events::run(
                    &self.http,
                    &self.base,
                    self.token.as_deref(),
                    name,
                    *from_index,
                    self.json,
                )
                .await
            }
            Commands::Backup { file } => self.backup(file).await,
            Commands::JoinToken { ttl_secs } => {
                let body = match ttl_secs {
                    Some(ttl) => serde_json::to_vec(&serde_json::json!({ "ttl_secs": ttl }))?,
                    None => Vec::new(),
                };
                let reply = self
                    .call(
                        Method::POST,
                        "/v1/cluster/join-token",
                        Bytes::from(body),
                        &[],
                    )
                    .await?;
                let token: JoinTokenResponse = parse(&reply.body)?;
                self.print(&reply.body, || token.token.clone())
            }
            Commands::StateHash => {
                let (hash, raw): (StateHash, _) = self.get("/v1/state-hash").await?;
                self.print(&raw, || {
                    format!("{} at applied index {}", hash.hash, hash.applied_index)
                })
            }
            Commands::Tokens { action } => self.tokens(action).await,
        }
    }

    async fn tokens(&self, action: &TokensCommand) -> anyhow::Result<()> {
        match action {
            TokensCommand::Create {
                role,
                plugins,
                name,
            } => {
                let mut body = serde_json::json!({ "role": role });
                if !plugins.is_empty() {
                    body["plugins"] = serde_json::json!(plugins);
                }
                if let Some(name) = name {
                    body["name"] = serde_json::json!(name);
                }
                let reply = self
                    .call(
                        Method::POST,
                        "/v1/tokens",
                        Bytes::from(serde_json::to_vec(&body)?),
                        &[],
                    )
                    .await?;
                let created: CreatedToken = parse(&reply.body)?;
                self.print(&reply.body, || {
                    let scope = created
                        .plugins
                        .as_ref()
                        .map_or("every plugin".to_string(), |p| {
                            format!("plugins {}", p.join(", "))
                        });
                    format!(
                        "created token {} ({}, {scope}) at log index {}; it is shown only now:\n{}",
                        created.id, created.role, created.log_index, created.token
                    )
                })
            }
            TokensCommand::List => {
                let (list, raw): (TokenList, _) = self.get("/v1/tokens").await?;
                self.print(&raw, || format_tokens(&list))
            }
            TokensCommand::Revoke { id } => {
                let reply = self
                    .call(
                        Method::DELETE,
                        &format!("/v1/tokens/{id}"),
                        Bytes::new(),
                        &[],
                    )
                    .await?;
                let revoked: RevokedToken = parse(&reply.body)?;
                self.print(&reply.body, || {
                    format!(
                        "revoked token {} at log index {}",
                        revoked.id, revoked.log_index
                    )
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

    /// Plugin output: as-is for humans (plus the log index of a write or
    /// the applied index of a query); for `--json`, see [`json_output`].
    fn print_output(&self, reply: &Reply) -> anyhow::Result<()> {
        if self.json {
            println!("{}", json_output(reply));
        } else {
            println!("{}", String::from_utf8_lossy(&reply.body));
            if let Some(index) = reply.log_index {
                println!("(log index {index})");
            }
            if let Some(index) = reply.applied_index {
                println!("(applied index {index})");
            }
        }
        Ok(())
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body).context("unexpected response from the node")
}

#[cfg(test)]
mod tests;
