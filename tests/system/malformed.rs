//! Malformed input, systematically: random and mutated requests to every route,
//! raw malformed HTTP, and Raft frames that decode but no correct peer sends.
//! Every refusal is a 4xx with the JSON error envelope, the node keeps serving,
//! and a refused request changes nothing.
//!
//! The property runs use proptest with a fixed seed (printed with any failure,
//! together with the shrunk case) and no persistence files, so a failure
//! reproduces by running the same test again.

mod client_routes;
mod members;
mod raft_frames;
mod raw_http;
mod uploads;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use cairn_host::config::Config;
use cairn_host::http_client;
use http::{HeaderName, HeaderValue, Method};
use proptest::strategy::Strategy;
use proptest::test_runner::{self, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::harness::{Cluster, Node, Resp};
use crate::http_node::HttpNode;

/// The seed of every property run in this module.
const SEED: [u8; 32] = *b"cairn/tests/system/malformed.rs!";
/// Set to a number to explore with another seed (the failure message names it).
const SEED_ENV: &str = "CAIRN_MALFORMED_SEED";

/// [`SEED`], or the one chosen through [`SEED_ENV`].
fn seed() -> [u8; 32] {
    let mut seed = SEED;
    if let Some(n) = std::env::var(SEED_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        seed[..8].copy_from_slice(&n.to_le_bytes());
    }
    seed
}
/// Deadline for one probe: a refusal is immediate, so this only catches hangs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response a probe reads.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// One generated request. Header values are raw bytes: odd bytes are the point.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub method: Method,
    /// Path and query, already percent-encoded where it must be.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Probe {
    pub fn new(method: Method, path: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Probe {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The value of header `name` as sent, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// One node with the kv plugin and a few keys, on its own runtime so that
/// proptest (synchronous) can drive it.
pub(crate) struct Fixture {
    pub cluster: Cluster,
    pub rt: tokio::runtime::Runtime,
}

impl Fixture {
    /// Starts the node (config `tweak`ed), deploys kv and writes three keys.
    pub fn start(tweak: &dyn Fn(&mut Config)) -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cluster = rt.block_on(async {
            let cluster = Cluster::start_with(1, tweak).await?;
            let node = &cluster.nodes[0];
            node.deploy("kv", cairn_host::plugins::example("kv").expect("kv"))
                .await?
                .expect(201)?;
            let mut last = 0;
            for (key, value) in [("a", json!(1)), ("b", json!("two")), ("c", json!([3]))] {
                let r = node
                    .apply("kv", &json!({"put": {"key": key, "value": value}}))
                    .await?
                    .expect(200)?;
                last = r.header_u64("cairn-log-index").unwrap_or(last);
            }
            node.wait_applied(last).await?;
            anyhow::Ok(cluster)
        });
        Fixture {
            cluster: cluster.expect("fixture node starts"),
            rt,
        }
    }

    pub fn node(&self) -> &Node {
        &self.cluster.nodes[0]
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// What a refused request must not change: the state hash and the membership.
    pub async fn observe(&self) -> Result<(String, Value), TestCaseError> {
        let node = self.node();
        let (_, hash) = node.http_state_hash().await.map_err(fail)?;
        let mut members = node.cluster_json().await.map_err(fail)?["members"].clone();
        // Replication progress moves by itself; only who is a member counts here.
        for m in members.as_array_mut().into_iter().flatten() {
            if let Some(m) = m.as_object_mut() {
                for volatile in ["matched_index", "lag_entries", "last_ack_ms_ago"] {
                    m.remove(volatile);
                }
            }
        }
        Ok((hash, members))
    }

    /// Sends `probe`, checks its status with `accept` and the error envelope,
    /// checks the node still answers `/healthz`, and that nothing changed unless
    /// `may_change` says the (successful) request was allowed to.
    pub fn check(
        &self,
        probe: &Probe,
        accept: impl Fn(&Probe, &Resp) -> bool,
        may_change: impl Fn(&Probe, &Resp) -> bool,
    ) -> Result<(), TestCaseError> {
        self.block_on(async {
            let before = self.observe().await?;
            let resp = send(self.node().addr(), probe).await?;
            check_envelope(probe, &resp)?;
            if !accept(probe, &resp) {
                return Err(TestCaseError::fail(format!(
                    "unexpected status {} {:?}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                )));
            }
            let health = send(self.node().addr(), &Probe::new(Method::GET, "/healthz", "")).await?;
            if health.status != 200 {
                return Err(TestCaseError::fail(format!(
                    "/healthz answered {} afterwards",
                    health.status
                )));
            }
            let after = self.observe().await?;
            if after != before && !may_change(probe, &resp) {
                return Err(TestCaseError::fail(format!(
                    "refused request (status {}) changed the state: {before:?} -> {after:?}",
                    resp.status
                )));
            }
            Ok(())
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.cluster.stop_all());
    }
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Sends `probe` on a fresh connection (a pooled one could be mid-close after an
/// earlier refusal); a dropped connection or a timeout fails the case.
pub(crate) async fn send(addr: &str, probe: &Probe) -> Result<Resp, TestCaseError> {
    // Raft frames go to the node's peer port, signed with its cluster's secret,
    // so they reach the decoders (unsigned ones are refused before decoding).
    let peer = if probe.path.starts_with("/raft/") {
        crate::harness::peer_of(addr)
    } else {
        None
    };
    let target = peer.as_ref().map_or(addr, |(peer, _)| peer.as_str());
    let uri = http_client::url(target, &probe.path)
        .map_err(|e| TestCaseError::reject(format!("unsendable path: {e}")))?;
    let mut req = http_client::request(
        probe.method.clone(),
        uri,
        None,
        Bytes::from(probe.body.clone()),
    );
    for (name, value) in &probe.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            return Err(TestCaseError::reject("unsendable header"));
        };
        req.headers_mut().append(name, value);
    }
    if let Some((_, key)) = &peer {
        let signed = cairn_host::raft::peer_auth::sign_request(
            key,
            probe.method.as_str(),
            &probe.path,
            "2",
            &probe.body,
            cairn_host::raft::peer_auth::now_ms(),
        )
        .map_err(|e| TestCaseError::fail(format!("signing: {e}")))?;
        for (name, value) in signed.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                req.headers_mut().insert(name, value);
            }
        }
    }
    // Probe the route behind authentication, as an admin would, unless the
    // probe brings its own (possibly junk) credentials.
    if peer.is_none()
        && !req.headers().contains_key(http::header::AUTHORIZATION)
        && let Some(token) = crate::harness::token_for(addr)
    {
        http_client::set_bearer(&mut req, &token)
            .map_err(|e| TestCaseError::fail(format!("token header: {e}")))?;
    }
    let client = http_client::new_client();
    let resp = http_client::send(&client, req, PROBE_TIMEOUT, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| TestCaseError::fail(format!("no response: {e}")))?;
    let (parts, body) = resp.into_parts();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// Every non-2xx answer carries `{"error":{"code","message"}}` with a non-empty code
/// (a `HEAD` answer has no body to check).
pub(crate) fn check_envelope(probe: &Probe, resp: &Resp) -> Result<(), TestCaseError> {
    if (200..300).contains(&resp.status) || probe.method == Method::HEAD {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&resp.body).map_err(|_| {
        TestCaseError::fail(format!(
            "status {} without a JSON body: {:?}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        ))
    })?;
    let code = v["error"]["code"].as_str().unwrap_or_default();
    if code.is_empty() || !v["error"]["message"].is_string() {
        return Err(TestCaseError::fail(format!(
            "status {} without the error envelope: {v}",
            resp.status
        )));
    }
    Ok(())
}

/// A refusal status: 4xx. Which 4xx is the handler's business; these tests only
/// insist it is not a 5xx, a hang or a dropped connection.
pub(crate) fn is_4xx(resp: &Resp) -> bool {
    (400..500).contains(&resp.status)
}

pub(crate) fn is_2xx(resp: &Resp) -> bool {
    (200..300).contains(&resp.status)
}

/// Runs `cases` cases of `strategy` through `test`, seeded with [`seed`]; panics
/// with the seed and the minimal failing case.
pub(crate) fn run_cases<S>(
    what: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let config = test_runner::Config {
        cases,
        failure_persistence: None,
        // Each case is a few HTTP requests; do not spend minutes shrinking.
        max_shrink_iters: 64,
        max_global_rejects: cases * 4,
        ..test_runner::Config::default()
    };
    let seed = seed();
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    if let Err(e) = runner.run(&strategy, test) {
        let chosen = std::env::var(SEED_ENV).unwrap_or_else(|_| "unset".into());
        panic!("{what} (proptest seed {seed:?}, {SEED_ENV}={chosen}): {e}");
    }
}

/// Percent-encodes everything but unreserved characters; `/` and `%` pass
/// through raw when `raw_slash_and_percent` (path traversal, forged escapes).
pub(crate) fn encode(raw: &str, raw_slash_and_percent: bool) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || b"-._~".contains(&b)
            || (raw_slash_and_percent && (b == b'/' || b == b'%'));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Arbitrary JSON, a few levels deep.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z_]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Applies byte-level damage to `bytes`: flips, overwrites, inserts, removals, a cut.
pub(crate) fn damaged(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    use proptest::sample::Index;
    let edit = prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| (0u8, i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| (1u8, i, v)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| (2u8, i, v)),
        any::<Index>().prop_map(|i| (3u8, i, 0)),
        any::<Index>().prop_map(|i| (4u8, i, 0)),
    ];
    proptest::collection::vec(edit, 1..5).prop_map(move |edits| {
        let mut b = bytes.clone();
        for (kind, i, v) in edits {
            let n = b.len();
            match kind {
                0 if n > 0 => b[i.index(n)] ^= 1 << v,
                1 if n > 0 => b[i.index(n)] = v,
                2 => b.insert(i.index(n + 1), v),
                3 if n > 0 => {
                    b.remove(i.index(n));
                }
                4 => b.truncate(i.index(n + 1)),
                _ => {}
            }
        }
        b
    })
}
