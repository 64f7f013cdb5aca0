//! The client routes with random input: every route with every method, plugin
//! names of every shape, and apply/query with random bodies, query strings and
//! headers. Accepted answers: a 2xx where the input happens to be valid (then
//! the state may change), a 4xx with the error envelope otherwise; for a query
//! whose `min_index` is ahead of the node, the bounded wait's `504 timeout`.

use http::Method;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

use super::{Fixture, Probe, damaged, encode, is_2xx, is_4xx, json_value, run_cases};
use crate::harness::Resp;

const CASES: u32 = 128;

fn fixture() -> Fixture {
    // A min_index in the future waits this long before its 504.
    Fixture::start(&|c| c.min_index_wait_ms = 100)
}

/// Whether `path` names the kv plugin's registry entry (as the router sees it:
/// empty segments and a trailing slash do not count).
fn names_kv(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments == ["v1", "plugins", "kv"]
}

/// A write that went through the log may change the state when it succeeded, or
/// when it carried an Idempotency-Key (its result, even a failure, is remembered:
/// that is what makes the retry safe).
fn logged_write(probe: &Probe, resp: &Resp) -> bool {
    let logged = resp.headers.contains_key("cairn-log-index");
    (is_2xx(resp) && probe.method != Method::GET)
        || (logged && probe.header("idempotency-key").is_some())
}

fn method() -> impl Strategy<Value = Method> {
    select(vec![
        Method::GET,
        Method::PUT,
        Method::DELETE,
        Method::POST,
        Method::PATCH,
        Method::OPTIONS,
        Method::HEAD,
        Method::from_bytes(b"PURGE").expect("method"),
    ])
}

/// Plugin names: valid-looking, too long, unicode, traversal, forged escapes.
fn plugin_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9][a-z0-9_-]{0,70}",
        2 => any::<String>(),
        1 => "[A-Za-z0-9._~%-]{1,12}",
        1 => "[a-z]{65,2000}",
        2 => select(vec![
            "..", ".", "../kv", "..%2fkv", "%2e%2e", "kv/..", "kv%00", "KV", "kv%20", "%6bv",
            "kv;x", "k\u{0}v", "\u{1F4A5}", "-kv", "_", "kv\u{301}", "%", "%zz", "%ff%fe",
        ])
        .prop_map(String::from),
    ]
    .prop_filter("never names kv itself", |n| n != "kv")
}

/// Every route and method, random small bodies.
#[test]
fn every_route_and_method_answers_2xx_or_a_4xx_envelope() {
    let fx = fixture();
    let route = select(vec![
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/plugins",
        "/v1/plugins/kv",
        "/v1/plugins/nosuch",
        "/v1/plugins/kv/apply",
        "/v1/plugins/kv/query",
        "/v1/plugins/nosuch/apply",
        "/v1/cluster",
        "/v1/cluster/members",
        "/v1/cluster/members/1",
        "/v1/cluster/members/x",
        "/v1/state-hash",
        "/raft/append",
        "/raft/vote",
        "/raft/pre-vote",
        "/raft/snapshot",
        "/raft/nothing",
        "/",
        "/v2/plugins",
        "/v1/plugins/kv/apply/extra",
    ]);
    let strategy = (
        method(),
        route,
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    run_cases("route x method", CASES, strategy, |(method, path, body)| {
        // A well-formed removal of kv (or of the only voter) is a valid request.
        prop_assume!(!(method == Method::DELETE && names_kv(path)));
        let probe = Probe::new(method, path, body);
        fx.check(&probe, |_, r| is_2xx(r) || is_4xx(r), logged_write)
    });
}

/// `GET`/`PUT`/`DELETE` (and others) on `/v1/plugins/{name}` and below, with names
/// of every shape; a PUT body is random bytes.
#[test]
fn plugin_names_of_every_shape_are_refused_or_not_found() {
    let fx = fixture();
    let suffix = select(vec!["", "/", "/apply", "/query", "/nope", "/apply/x"]);
    let strategy = (
        method(),
        plugin_name(),
        any::<bool>(),
        suffix,
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    run_cases(
        "plugin names",
        CASES,
        strategy,
        |(method, name, raw, suffix, body)| {
            let path = format!("/v1/plugins/{}{suffix}", encode(&name, raw));
            prop_assume!(!(method == Method::DELETE && names_kv(&path)));
            let probe = Probe::new(method, path, body);
            // A GET of a name that (through `..`, `//`, …) routes to kv, or to the
            // plugin list, is a 200; a random PUT body is never a component.
            fx.check(
                &probe,
                |_, r| is_4xx(r) || (is_2xx(r) && probe.method == Method::GET),
                logged_write,
            )
        },
    );
}

/// Bodies for apply and query: random bytes, random JSON, damaged kv commands.
fn command_body() -> impl Strategy<Value = Vec<u8>> {
    let valid = select(vec![
        json!({"put": {"key": "fz", "value": 1}}),
        json!({"delete": {"key": "a"}}),
        json!({"cas": {"key": "b", "expected": "two", "new": null}}),
        json!({"get": {"key": "c"}}),
        json!({"list": {"prefix": "", "limit": 10}}),
        json!({"range": {"start": "a", "end": "z", "limit": 2}}),
    ])
    .prop_map(|v| serde_json::to_vec(&v).expect("json"));
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..128),
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("json")),
        3 => valid.clone().prop_flat_map(damaged),
        1 => valid,
    ]
}

/// Query strings: absent, valid, junk pairs, junk escapes.
fn query_string() -> impl Strategy<Value = Option<String>> {
    let pair = ("[a-z_-]{0,12}", "\\PC{0,12}")
        .prop_map(|(k, v)| format!("{}={}", encode(&k, false), encode(&v, false)));
    proptest::option::weighted(
        0.4,
        prop_oneof![
            select(vec![
                "events=true",
                "events=false",
                "events=TRUE",
                "consistency=stale",
                "consistency=linearizable&min_index=1",
                "consistency=eventual",
                "min_index=0",
                "min_index=-1",
                "min_index=99999999999999999999",
                "min_index=1000000000",
                "min_index=",
                "=&=",
                "&&&",
                "%%%",
                "%ff=%fe",
                "a=1&a=2",
                "events",
            ])
            .prop_map(String::from),
            proptest::collection::vec(pair, 1..4).prop_map(|p| p.join("&")),
        ],
    )
}

/// Header values: visible ASCII, obs-text (0x80-0xff), tabs.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![8 => 0x21u8..0x7f, 2 => 0x80u8..=0xff, 1 => Just(b' '), 1 => Just(b'\t')],
        0..max,
    )
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let idempotency_key = prop_oneof![
        4 => header_bytes(40),
        1 => header_bytes(300),
        1 => proptest::collection::vec(0x21u8..0x7f, 257..300),
    ]
    .prop_map(|v| ("idempotency-key".to_string(), v));
    let content_type = prop_oneof![
        select(vec![
            "application/json",
            "text/plain",
            "application/x-cairn-raft",
            "",
            "*/*"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        header_bytes(40),
    ]
    .prop_map(|v| ("content-type".to_string(), v));
    let other = ("x-[a-z]{1,10}", header_bytes(60));
    (
        proptest::option::of(idempotency_key),
        proptest::option::of(content_type),
        proptest::collection::vec(other, 0..3),
    )
        .prop_map(|(key, ct, others)| key.into_iter().chain(ct).chain(others).collect())
}

/// apply and query with random bodies, query strings and headers.
#[test]
fn apply_and_query_refuse_bad_input_with_a_4xx() {
    let fx = fixture();
    let strategy = (
        select(vec!["apply", "query"]),
        select(vec!["kv", "kv", "kv", "nosuch"]),
        command_body(),
        query_string(),
        headers(),
    );
    run_cases(
        "apply and query",
        CASES * 2,
        strategy,
        |(op, plugin, body, query, headers)| {
            let path = match &query {
                Some(q) => format!("/v1/plugins/{plugin}/{op}?{q}"),
                None => format!("/v1/plugins/{plugin}/{op}"),
            };
            let mut probe = Probe::new(Method::POST, path, body);
            probe.headers = headers;
            let accept = |p: &Probe, r: &Resp| {
                // A min_index ahead of the node: the bounded wait ran out.
                let waited = r.status == 504
                    && r.code().as_deref() == Some("timeout")
                    && p.path.contains("min_index=");
                is_2xx(r) || is_4xx(r) || waited
            };
            fx.check(&probe, accept, logged_write)
        },
    );
}
