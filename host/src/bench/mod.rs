//! `cairn bench`: a closed-loop load generator for a running cluster, driving the `kv` plugin.
//!
//! Each client is one task issuing sequential requests (the next starts when the
//! previous answered), so latency is what one caller waits and throughput is what
//! N such callers achieve together. Clients share one pooled keep-alive client and
//! are spread round-robin over the given nodes. Every loop is bounded: by a
//! deadline or a request count, and every request by its own timeout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{Method, StatusCode, Uri};
use serde::Serialize;

use crate::api::error::ErrorEnvelope;
use crate::http_client::{self, ClientError, HttpClient};

/// The plugin every workload drives; embedded in the binary so a bench needs no files.
const PLUGIN: &str = "kv";
/// Responses are tiny JSON; anything bigger is a bug worth failing on.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Deadline for setup calls; a deploy compiles a component on every node.
const SETUP_TIMEOUT_MS: u64 = 60_000;
/// How long to wait for the deployed plugin to reach every target node.
const READY_WAIT_MS: u64 = 30_000;
/// Pause between readiness probes; inside a bounded loop.
const READY_POLL_MS: u64 = 100;
/// Pause after a failed request: a refused connect fails in microseconds, and
/// without a pause a client of a dead node becomes a busy loop that steals CPU
/// from the nodes being measured.
const ERROR_BACKOFF_MS: u64 = 10;

/// `cairn bench` flags. Target nodes come from the global `--url` (repeatable, comma-separated).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Which workload to run (`all` runs apply, then both query kinds).
    #[arg(long, value_enum, default_value_t = Workload::All)]
    pub workload: Workload,
    /// Concurrent clients, each issuing sequential requests.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// How long each workload runs.
    #[arg(long, default_value_t = 10, conflicts_with = "requests")]
    pub duration_secs: u64,
    /// Run exactly this many requests per workload (split over the clients) instead of for a time.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Distinct keys the clients write and read.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Deadline of one request; a request that passes it counts as an error.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// A benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// `put` through the log (replicated, fsynced).
    Apply,
    /// `get` with a read index on the leader.
    QueryLinearizable,
    /// `get` answered by the contacted node from its applied state.
    QueryStale,
    /// All of the above, in that order (apply first, so the reads find values).
    All,
}

impl Workload {
    /// The concrete workloads this selection runs, in order.
    pub fn expand(self) -> Vec<Workload> {
        match self {
            Workload::All => vec![
                Workload::Apply,
                Workload::QueryLinearizable,
                Workload::QueryStale,
            ],
            w => vec![w],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Apply => "apply",
            Workload::QueryLinearizable => "query-linearizable",
            Workload::QueryStale => "query-stale",
            Workload::All => "all",
        }
    }

    fn path(self) -> String {
        match self {
            Workload::Apply => format!("/v1/plugins/{PLUGIN}/apply"),
            Workload::QueryStale => format!("/v1/plugins/{PLUGIN}/query?consistency=stale"),
            _ => format!("/v1/plugins/{PLUGIN}/query?consistency=linearizable"),
        }
    }

    fn body(self, key: u64, seq: u64) -> Bytes {
        let body = match self {
            Workload::Apply => format!(r#"{{"put":{{"key":"bench/{key}","value":{seq}}}}}"#),
            _ => format!(r#"{{"get":{{"key":"bench/{key}"}}}}"#),
        };
        Bytes::from(body)
    }
}

/// Why a bench could not run (failed requests during a workload are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `--url` was empty.
    #[error("no node url given (use --url, repeatable or comma-separated)")]
    NoUrls,
    /// A setup request could not be made.
    #[error(transparent)]
    Http(#[from] ClientError),
    /// A setup request was answered with an error.
    #[error("{what} failed: {detail}")]
    Setup {
        /// Which step.
        what: String,
        /// Status and error code from the node.
        detail: String,
    },
    /// The plugin did not become queryable on a node in time.
    #[error("plugin {PLUGIN} not queryable on {url} after {waited_ms} ms: {last}")]
    NotReady {
        /// The node.
        url: String,
        /// How long we waited.
        waited_ms: u64,
        /// The last failure seen.
        last: String,
    },
    /// The JSON summary could not be encoded.
    #[error("encoding the summary: {0}")]
    Json(#[from] serde_json::Error),
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Report<'a> {
    urls: &'a [String],
    keys: u64,
    results: &'a [Summary],
}

/// Runs `cairn bench` against `urls` with `http` (which trusts the cluster's
/// CA when it serves TLS) and prints one line per workload (or JSON).
pub async fn run(
    args: &BenchArgs,
    urls: &[String],
    json: bool,
    token: Option<&str>,
    http: &HttpClient,
) -> Result<(), BenchError> {
    let urls: Vec<String> = urls
        .iter()
        .flat_map(|u| u.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if urls.is_empty() {
        return Err(BenchError::NoUrls);
    }
    let auth = Auth::new(token)?;
    ensure_plugin(http, &urls, &auth).await?;
    let mut results = Vec::new();
    for workload in args.workload.expand() {
        let summary = run_workload(http, &urls, workload, args, &auth).await?;
        if !json {
            println!("{}", summary.line());
        }
        results.push(summary);
    }
    if json {
        let report = Report {
            urls: &urls,
            keys: args.keys,
            results: &results,
        };
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// The `Authorization` header every bench request carries, built once.
#[derive(Clone)]
struct Auth(Option<http::HeaderValue>);

impl Auth {
    fn new(token: Option<&str>) -> Result<Self, BenchError> {
        let value = token
            .map(|t| {
                http::HeaderValue::from_str(&format!("Bearer {}", t.trim())).map_err(|_| {
                    ClientError::InvalidToken {
                        reason: "a token is visible ASCII without spaces".into(),
                    }
                })
            })
            .transpose()?;
        Ok(Self(value))
    }

    fn request(&self, method: Method, uri: Uri, ct: Option<&str>, body: Bytes) -> Request {
        let mut req = http_client::request(method, uri, ct, body);
        if let Some(v) = &self.0 {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, v.clone());
        }
        req
    }
}

type Request = http::Request<http_body_util::Full<Bytes>>;

/// Deploys the embedded `kv` through the first node unless it is there, then waits
/// until every target node can answer a stale query (i.e. has applied the deploy),
/// so the first requests of a run do not fail with `plugin-not-found`.
async fn ensure_plugin(http: &HttpClient, urls: &[String], auth: &Auth) -> Result<(), BenchError> {
    let timeout = Duration::from_millis(SETUP_TIMEOUT_MS);
    let info = auth.request(
        Method::GET,
        http_client::url(&urls[0], &format!("/v1/plugins/{PLUGIN}"))?,
        None,
        Bytes::new(),
    );
    let resp = http_client::send(http, info, timeout, MAX_RESPONSE_BYTES).await?;
    if resp.status() == StatusCode::NOT_FOUND {
        let wasm = crate::plugins::example(PLUGIN).unwrap_or_default();
        let put = auth.request(
            Method::PUT,
            http_client::url(&urls[0], &format!("/v1/plugins/{PLUGIN}"))?,
            Some("application/wasm"),
            Bytes::from_static(wasm),
        );
        let resp = http_client::send(http, put, timeout, MAX_RESPONSE_BYTES).await?;
        if !resp.status().is_success() {
            return Err(BenchError::Setup {
                what: format!("deploying {PLUGIN}"),
                detail: describe(resp.status(), resp.body()),
            });
        }
    } else if !resp.status().is_success() {
        return Err(BenchError::Setup {
            what: format!("looking up plugin {PLUGIN}"),
            detail: describe(resp.status(), resp.body()),
        });
    }
    for url in urls {
        let uri = http_client::url(url, &Workload::QueryStale.path())?;
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < Duration::from_millis(READY_WAIT_MS) {
            let req = auth.request(
                Method::POST,
                uri.clone(),
                Some("application/json"),
                Workload::QueryStale.body(0, 0),
            );
            match http_client::send(http, req, timeout, MAX_RESPONSE_BYTES).await {
                Ok(r) if r.status().is_success() => {
                    last.clear();
                    break;
                }
                Ok(r) => last = describe(r.status(), r.body()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(READY_POLL_MS)).await;
        }
        if !last.is_empty() {
            return Err(BenchError::NotReady {
                url: url.clone(),
                waited_ms: READY_WAIT_MS,
                last,
            });
        }
    }
    Ok(())
}

/// What one client saw.
#[derive(Default)]
struct ClientStats {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// When a client stops.
#[derive(Clone, Copy)]
enum Stop {
    At(Instant),
    After(u64),
}

async fn run_workload(
    http: &HttpClient,
    urls: &[String],
    workload: Workload,
    args: &BenchArgs,
    auth: &Auth,
) -> Result<Summary, BenchError> {
    let path = workload.path();
    let uris = urls
        .iter()
        .map(|u| http_client::url(u, &path))
        .collect::<Result<Vec<Uri>, _>>()?;
    let clients = u64::from(args.clients);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients as usize);
    for c in 0..clients {
        let stop = match args.requests {
            // Split the total evenly; the first `total % clients` take one more.
            Some(total) => Stop::After(total / clients + u64::from(c < total % clients)),
            None => Stop::At(started + Duration::from_secs(args.duration_secs)),
        };
        let uri = uris[c as usize % uris.len()].clone();
        let http = (http.clone(), auth.clone());
        let (keys, timeout) = (args.keys, Duration::from_millis(args.timeout_ms));
        tasks.push(tokio::spawn(async move {
            client_loop(http, uri, workload, c, keys, stop, timeout).await
        }));
    }
    let mut all = ClientStats::default();
    for task in tasks {
        // A panicking client task is a bench bug; count it rather than lose the run.
        let stats = task.await.unwrap_or_else(|e| ClientStats {
            errors: 1,
            first_error: Some(format!("client task failed: {e}")),
            ..ClientStats::default()
        });
        all.latencies_us.extend(stats.latencies_us);
        all.errors += stats.errors;
        if all.first_error.is_none() {
            all.first_error = stats.first_error;
        }
    }
    Ok(Summary::from_samples(
        workload,
        args.clients,
        all.latencies_us,
        all.errors,
        all.first_error,
        started.elapsed(),
    ))
}

/// One client's requests; `http` is the shared pool and the header to send.
async fn client_loop(
    (http, auth): (HttpClient, Auth),
    uri: Uri,
    workload: Workload,
    client: u64,
    keys: u64,
    stop: Stop,
    timeout: Duration,
) -> ClientStats {
    let mut stats = ClientStats::default();
    // Per-client PRNG so clients spread over the key space without coordinating.
    let mut rng = client.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for seq in 0u64.. {
        let more = match stop {
            Stop::At(deadline) => Instant::now() < deadline,
            Stop::After(n) => seq < n,
        };
        if !more {
            break;
        }
        let key = splitmix64(&mut rng) % keys;
        let req = auth.request(
            Method::POST,
            uri.clone(),
            Some("application/json"),
            workload.body(key, seq),
        );
        let sent = Instant::now();
        let error = match http_client::send(&http, req, timeout, MAX_RESPONSE_BYTES).await {
            Ok(r) if r.status().is_success() => {
                let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.latencies_us.push(us);
                continue;
            }
            Ok(r) => describe(r.status(), r.body()),
            Err(e) => e.to_string(),
        };
        stats.errors += 1;
        stats.first_error.get_or_insert(error);
        tokio::time::sleep(Duration::from_millis(ERROR_BACKOFF_MS)).await;
    }
    stats
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `HTTP 503 no-leader` from an error response (the node's code when it sent one).
fn describe(status: StatusCode, body: &[u8]) -> String {
    match ErrorEnvelope::parse(body) {
        Some(e) => format!("HTTP {} {}", status.as_u16(), e.code),
        None => format!("HTTP {}", status.as_u16()),
    }
}

mod summary;
pub use summary::{Summary, percentile};

#[cfg(test)]
mod tests;
