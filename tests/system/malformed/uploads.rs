//! `PUT /v1/plugins/{name}` with bodies that are not plugins: random bytes (with
//! and without the component header), truncated and damaged real components, a
//! core module, a component of the wrong world; and junk deploy parameters.
//! Each is a 4xx and nothing is deployed; a damaged component that is still a
//! valid plugin may deploy (201), which is then the one allowed change.

use http::Method;
use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::{Fixture, Probe, damaged, is_2xx, is_4xx, run_cases};

/// Header of a component binary (magic, component-model version and layer).
const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\x00\x01\x00";
/// The smallest valid core module: magic and version 1, no sections.
const CORE_MODULE: &[u8] = b"\0asm\x01\x00\x00\x00";

fn kv() -> Vec<u8> {
    cairn_host::plugins::example("kv").expect("kv").to_vec()
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let random = proptest::collection::vec(any::<u8>(), 0..512);
    prop_oneof![
        2 => random.clone(),
        2 => random.prop_map(|junk| [COMPONENT_HEADER, &junk].concat()),
        2 => any::<Index>().prop_map(|cut| {
            let kv = kv();
            let at = cut.index(kv.len());
            kv[..at].to_vec()
        }),
        3 => damaged(kv()),
        1 => Just(CORE_MODULE.to_vec()),
        1 => Just(cairn_host::plugins::built("wrong-world")),
    ]
}

fn deploy_query() -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(
        0.3,
        prop_oneof![
            select(vec![
                "fuel_per_call=0",
                "fuel_per_call=-5",
                "fuel_per_call=18446744073709551616",
                "memory_limit_bytes=999999999999",
                "memory_limit_bytes=x",
                "fuel=1",
                "fuel_per_call",
                "&&",
            ])
            .prop_map(String::from),
            "[a-z_]{1,20}=[0-9a-z]{0,20}",
        ],
    )
}

#[test]
fn uploads_that_are_not_plugins_are_refused() {
    let fx = Fixture::start(&|_| {});
    run_cases("uploads", 96, (body(), deploy_query()), |(body, query)| {
        let path = match query {
            Some(q) => format!("/v1/plugins/fuzz-up?{q}"),
            None => "/v1/plugins/fuzz-up".to_string(),
        };
        let probe = Probe::new(Method::PUT, path, body);
        fx.check(
            &probe,
            |_, r| is_4xx(r) || r.status == 201,
            |_, r| is_2xx(r),
        )
    });
}
