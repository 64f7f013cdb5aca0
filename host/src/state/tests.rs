//! State tests: deploy/upgrade/remove, code stored once, limit changes,
//! idempotency (fingerprints, removal), and the snapshot format.

use serde_json::json;

use super::*;
use crate::plugins::built;
use crate::runtime::RuntimeConfig;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

const FUEL: u64 = 50_000_000;
const MEMORY: u64 = 32 << 20;

fn deploy(name: &str, crate_name: &str) -> Command {
    deploy_code(name, DeployCode::Inline(built(crate_name)), FUEL, None)
}

fn deploy_code(name: &str, code: DeployCode, fuel_per_call: u64, key: Option<&str>) -> Command {
    Command::Deploy {
        name: name.into(),
        code,
        fuel_per_call,
        memory_limit_bytes: MEMORY,
        timestamp_ms: 1,
        idempotency_key: key.map(str::to_string),
    }
}

fn stored(crate_name: &str) -> DeployCode {
    DeployCode::Stored {
        sha256: sha256_hex(&built(crate_name)),
    }
}

fn deployed(r: CommandResult) -> PluginInfo {
    match r {
        CommandResult::Deployed(info) => info,
        other => panic!("expected a deploy, got {other}"),
    }
}

fn failed(r: CommandResult) -> String {
    match r {
        CommandResult::Failed(e) => e.code,
        other => panic!("expected a failure, got {other}"),
    }
}

fn apply(plugin: &str, input: serde_json::Value, key: Option<&str>) -> Command {
    Command::Apply {
        plugin: plugin.into(),
        input: input.to_string().into_bytes(),
        timestamp_ms: 2,
        idempotency_key: key.map(str::to_string),
    }
}

fn output(r: &CommandResult) -> serde_json::Value {
    match r {
        CommandResult::Applied(o) => serde_json::from_slice(&o.output).expect("json"),
        other => panic!("expected output, got {other:?}"),
    }
}

#[test]
fn upgrade_keeps_data_and_remove_drops_it() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("c", "counter"));
    s.apply_ok(&rt, 2, &apply("c", json!({"increment": {"by": 4}}), None));
    let upgrade = deploy_code("c", DeployCode::Inline(built("counter")), FUEL + 1, None);
    let info = deployed(s.apply_ok(&rt, 3, &upgrade));
    assert_eq!(info.version, 2);
    assert_eq!(info.deployed_at_index, 3);
    assert_eq!(
        output(&s.apply_ok(&rt, 4, &apply("c", json!({"get": {}}), None))),
        json!({"value": 4})
    );
    // Upgrading to other code replaces the blob; the old one is not kept.
    s.apply_ok(&rt, 5, &deploy("c", "kv"));
    assert_eq!(s.code.len(), 1);
    assert!(matches!(
        s.apply_ok(&rt, 6, &Command::Remove { name: "c".into() }),
        CommandResult::Removed { .. }
    ));
    assert!(s.plugins().is_empty() && s.code.is_empty() && s.kv("c").is_empty());
    let CommandResult::Failed(e) = s.apply_ok(&rt, 7, &apply("c", json!({}), None)) else {
        panic!("removed")
    };
    assert_eq!(e.code, "plugin-not-found");
}

#[test]
fn bad_deploys_are_recorded_as_failures() {
    let rt = runtime();
    let mut s = State::new();
    let bad = deploy_code("x", DeployCode::Inline(b"junk".to_vec()), 1, None);
    assert!(matches!(s.apply_ok(&rt, 1, &bad), CommandResult::Failed(e) if e.code == "not-wasm"));
    assert!(
        matches!(s.apply_ok(&rt, 2, &deploy("Bad Name", "counter")), CommandResult::Failed(e) if e.code == "invalid-plugin-name")
    );
    assert!(s.plugins().is_empty());
    assert_eq!(s.applied_index(), 2);
}

#[test]
fn same_idempotency_key_applies_once() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("c", "counter"));
    let first = s.apply_ok(
        &rt,
        2,
        &apply("c", json!({"increment": {"by": 1}}), Some("k")),
    );
    let retry = s.apply_ok(
        &rt,
        3,
        &apply("c", json!({"increment": {"by": 1}}), Some("k")),
    );
    assert_eq!(
        retry,
        CommandResult::Duplicate {
            index: 2,
            result: Box::new(first.clone())
        }
    );
    assert_eq!(s.idempotent_result("c", "k").map(|r| r.index), Some(2));
    let other = s.apply_ok(
        &rt,
        4,
        &apply("c", json!({"increment": {"by": 1}}), Some("k2")),
    );
    assert_eq!(output(&other), json!({"value": 2}));
}

#[test]
fn snapshot_roundtrip_preserves_the_hash_and_rejects_damage() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("kv", "kv"));
    for i in 0..20 {
        s.apply_ok(
            &rt,
            2 + i,
            &apply(
                "kv",
                json!({"put": {"key": format!("k{i}"), "value": i}}),
                Some(&format!("id{i}")),
            ),
        );
    }
    let bytes = snapshot::encode(&s, b"meta");
    let (back, meta) = snapshot::decode(&bytes).expect("decodes");
    assert_eq!(meta, b"meta");
    assert_eq!(back.hash(), s.hash());
    assert_eq!(back.applied_index(), s.applied_index());
    assert_eq!(
        back.idempotent_result("kv", "id3"),
        s.idempotent_result("kv", "id3")
    );

    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(matches!(
        snapshot::decode(&flipped),
        Err(snapshot::SnapshotError::Checksum)
    ));
    assert!(matches!(
        snapshot::decode(&bytes[..bytes.len() - 1]),
        Err(snapshot::SnapshotError::Checksum)
    ));
    assert!(matches!(
        snapshot::decode(b"NOTASNAPSHOT"),
        Err(snapshot::SnapshotError::BadMagic)
    ));
    let mut future = bytes.clone();
    future[11] = 9;
    assert!(matches!(
        snapshot::decode(&future),
        Err(snapshot::SnapshotError::UnsupportedVersion(_))
    ));
}

#[test]
fn the_hash_covers_kv_contents() {
    let rt = runtime();
    let mut a = State::new();
    let mut b = State::new();
    for s in [&mut a, &mut b] {
        s.apply_ok(&rt, 1, &deploy("kv", "kv"));
    }
    a.apply_ok(
        &rt,
        2,
        &apply("kv", json!({"put": {"key": "k", "value": 1}}), None),
    );
    b.apply_ok(
        &rt,
        2,
        &apply("kv", json!({"put": {"key": "k", "value": 2}}), None),
    );
    assert_ne!(a.hash(), b.hash());
}

#[test]
fn identical_redeploys_change_nothing_and_limits_make_versions() {
    let rt = runtime();
    let mut s = State::new();
    let v1 = deployed(s.apply_ok(&rt, 1, &deploy("c", "counter")));
    assert_eq!((v1.version, v1.deployed_at_index), (1, 1));
    // The same bytes and limits again, inline or by sha: the version in force.
    assert_eq!(deployed(s.apply_ok(&rt, 2, &deploy("c", "counter"))), v1);
    let again = deploy_code("c", stored("counter"), FUEL, None);
    assert_eq!(deployed(s.apply_ok(&rt, 3, &again)), v1);

    // The stored code with new limits: a new version of the same blob.
    let v2 = deployed(s.apply_ok(&rt, 4, &deploy_code("c", stored("counter"), FUEL / 2, None)));
    assert_eq!((v2.version, v2.sha256.as_str()), (2, v1.sha256.as_str()));
    assert_eq!((v2.fuel_per_call, v2.deployed_at_index), (FUEL / 2, 4));
    assert_eq!(s.code.len(), 1);

    let set = |fuel: Option<u64>, memory: Option<u64>| Command::SetLimits {
        name: "c".into(),
        fuel_per_call: fuel,
        memory_limit_bytes: memory,
    };
    let v3 = deployed(s.apply_ok(&rt, 5, &set(None, Some(MEMORY / 2))));
    assert_eq!(v3.version, 3);
    assert_eq!(
        (v3.fuel_per_call, v3.memory_limit_bytes),
        (FUEL / 2, MEMORY / 2)
    );
    assert_eq!(
        (v3.sha256.as_str(), v3.size_bytes),
        (v1.sha256.as_str(), v1.size_bytes)
    );
    assert_eq!(deployed(s.apply_ok(&rt, 6, &set(Some(FUEL / 2), None))), v3);
    let ceiling = s.settings().max_fuel_per_call;
    assert_eq!(
        failed(s.apply_ok(&rt, 7, &set(Some(ceiling + 1), None))),
        "fuel-too-large"
    );
    let unknown = Command::SetLimits {
        name: "nope".into(),
        fuel_per_call: Some(1),
        memory_limit_bytes: None,
    };
    assert_eq!(failed(s.apply_ok(&rt, 8, &unknown)), "plugin-not-found");
    assert_eq!(s.plugin("c"), Some(v3));
    // The plugin still runs, with its data.
    s.apply_ok(&rt, 9, &apply("c", json!({"increment": {"by": 2}}), None));
    assert_eq!(
        output(&s.apply_ok(&rt, 10, &apply("c", json!({"get": {}}), None))),
        json!({"value": 2})
    );
}

#[test]
fn a_stored_deploy_of_dropped_code_fails_and_changes_nothing() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("c", "counter"));
    s.apply_ok(&rt, 2, &Command::Remove { name: "c".into() });
    let before = s.hash();
    let by_sha = deploy_code("d", stored("counter"), FUEL, Some("k"));
    assert_eq!(failed(s.apply_ok(&rt, 3, &by_sha)), CODE_MISSING);
    assert_eq!(s.hash(), before);
    assert!(s.plugins().is_empty());
    // Not remembered: the same key with the bytes inline then deploys.
    assert_eq!(s.idempotent_result("d", "k"), None);
    let inline = deploy_code("d", DeployCode::Inline(built("counter")), FUEL, Some("k"));
    assert_eq!(deployed(s.apply_ok(&rt, 4, &inline)).version, 1);

    // Stored code still meets today's size ceiling.
    s.settings.max_plugin_bytes = 1024;
    let by_sha = deploy_code("e", stored("counter"), FUEL, None);
    assert_eq!(failed(s.apply_ok(&rt, 5, &by_sha)), "plugin-too-large");
    assert_eq!(s.plugin("e"), None);
}

#[test]
fn two_plugins_with_the_same_code_store_one_blob() {
    let rt = runtime();
    let mut s = State::new();
    let wasm = built("counter");
    s.apply_ok(&rt, 1, &deploy("a", "counter"));
    s.apply_ok(&rt, 2, &deploy("b", "counter"));
    assert_eq!((s.plugins().len(), s.code.len()), (2, 1));
    let bytes = snapshot::encode(&s, b"");
    assert!(
        bytes.len() < wasm.len() * 3 / 2,
        "snapshot of {} bytes holds the {}-byte blob more than once",
        bytes.len(),
        wasm.len()
    );
    let (back, _) = snapshot::decode(&bytes).expect("decodes");
    assert_eq!((back.code.len(), back.hash()), (1, s.hash()));
    // The blob lives while any plugin uses it.
    s.apply_ok(&rt, 3, &Command::Remove { name: "a".into() });
    assert_eq!(s.code.len(), 1);
    s.apply_ok(&rt, 4, &Command::Remove { name: "b".into() });
    assert!(s.code.is_empty());
}

#[test]
fn a_key_reused_for_another_request_is_refused() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("c", "counter"));
    let alice = s.apply_ok(
        &rt,
        2,
        &apply("c", json!({"increment": {"by": 1}}), Some("k1")),
    );
    assert_eq!(output(&alice), json!({"value": 1}));
    let before = s.hash();
    // Bob's different body under alice's key: refused, alice's answer withheld.
    let bob = s.apply_ok(
        &rt,
        3,
        &apply("c", json!({"increment": {"by": 7}}), Some("k1")),
    );
    assert_eq!(failed(bob), IDEMPOTENCY_KEY_REUSED);
    assert_eq!(s.hash(), before);
    assert_eq!(s.idempotent_result("c", "k1").map(|r| r.index), Some(2));
    // The same request under the key is a retry.
    let retry = s.apply_ok(
        &rt,
        4,
        &apply("c", json!({"increment": {"by": 1}}), Some("k1")),
    );
    assert!(matches!(retry, CommandResult::Duplicate { index: 2, .. }));

    // Deploys: the key binds the name, code and limits.
    let first = deploy_code("c", stored("counter"), FUEL / 2, Some("d1"));
    let v2 = deployed(s.apply_ok(&rt, 5, &first));
    assert_eq!(v2.version, 2);
    let CommandResult::Duplicate { index: 5, result } = s.apply_ok(&rt, 6, &first) else {
        panic!("a deploy retry is a duplicate")
    };
    assert_eq!(deployed(*result), v2);
    let other_limits = deploy_code("c", stored("counter"), FUEL / 3, Some("d1"));
    assert_eq!(
        failed(s.apply_ok(&rt, 7, &other_limits)),
        IDEMPOTENCY_KEY_REUSED
    );
    let other_code = deploy_code("c", DeployCode::Inline(built("kv")), FUEL / 2, Some("d1"));
    assert_eq!(
        failed(s.apply_ok(&rt, 8, &other_code)),
        IDEMPOTENCY_KEY_REUSED
    );
    assert_eq!(s.plugin("c"), Some(v2));
    // An apply cannot claim a deploy's key either.
    let apply_under_deploy_key = apply("c", json!({"increment": {"by": 1}}), Some("d1"));
    assert_eq!(
        failed(s.apply_ok(&rt, 9, &apply_under_deploy_key)),
        IDEMPOTENCY_KEY_REUSED
    );
}

#[test]
fn removing_a_plugin_forgets_its_keys() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("c", "counter"));
    s.apply_ok(&rt, 2, &deploy("c2", "counter"));
    let inc = || apply("c", json!({"increment": {"by": 1}}), Some("k"));
    s.apply_ok(&rt, 3, &inc());
    s.apply_ok(
        &rt,
        4,
        &apply("c2", json!({"increment": {"by": 1}}), Some("k")),
    );
    s.apply_ok(
        &rt,
        5,
        &deploy_code("c", stored("counter"), FUEL / 2, Some("d")),
    );
    assert_eq!(s.idempotency.len(), 3);
    s.apply_ok(&rt, 6, &Command::Remove { name: "c".into() });
    assert_eq!(s.idempotent_result("c", "k"), None);
    assert_eq!(s.idempotent_result("c", "d"), None);
    // Another plugin's key with the same text stays (the name is a prefix of it).
    assert_eq!(s.idempotent_result("c2", "k").map(|r| r.index), Some(4));
    assert_eq!(s.idempotency.len(), s.idempotency_by_index.len());

    // A new plugin of the same name reuses the keys afresh.
    let again = deploy_code(
        "c",
        DeployCode::Inline(built("counter")),
        FUEL / 2,
        Some("d"),
    );
    assert_eq!(deployed(s.apply_ok(&rt, 7, &again)).deployed_at_index, 7);
    assert_eq!(output(&s.apply_ok(&rt, 8, &inc())), json!({"value": 1}));
    assert_eq!(s.idempotent_result("c", "k").map(|r| r.index), Some(8));
}

#[test]
fn the_hash_and_snapshot_cover_the_fingerprint() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("c", "counter"));
    s.apply_ok(
        &rt,
        2,
        &apply("c", json!({"increment": {"by": 1}}), Some("k")),
    );
    let (back, _) = snapshot::decode(&snapshot::encode(&s, b"")).expect("decodes");
    assert_eq!(
        back.idempotent_result("c", "k"),
        s.idempotent_result("c", "k")
    );
    let other = apply("c", json!({"increment": {"by": 2}}), Some("k"));
    assert_eq!(
        failed(back.clone().apply_ok(&rt, 3, &other)),
        IDEMPOTENCY_KEY_REUSED
    );

    let mut forged = s.clone();
    let key = "c\0k".to_string();
    let mut rec = forged.idempotency.get(&key).cloned().expect("record");
    rec.fingerprint = apply_fingerprint("c", b"something else");
    forged.idempotency.insert(key, rec);
    assert_ne!(forged.hash(), s.hash());
}

#[test]
fn a_query_sees_the_node_clock_never_below_the_last_applied_stamp() {
    let rt = runtime();
    let mut s = State::new();
    deployed(s.apply_ok(&rt, 1, &deploy("n", "nondet")));
    let stamp = 1_700_000_000_000;
    let cmd = Command::Apply {
        plugin: "n".into(),
        input: b"{}".to_vec(),
        timestamp_ms: stamp,
        idempotency_key: None,
    };
    let CommandResult::Applied(_) = s.apply_ok(&rt, 2, &cmd) else {
        panic!("the nondet apply must succeed")
    };
    let now_seen = |now: u64| {
        let out = s.query(&rt, "n", b"{}", now).expect("query");
        let v: serde_json::Value = serde_json::from_slice(&out.output).unwrap();
        v["now_ms"].as_u64().expect("now_ms in the answer")
    };
    // The clock advanced: the query sees the later time, with no write.
    assert_eq!(now_seen(stamp + 60_000), stamp + 60_000);
    // A node whose clock is behind the last applied stamp never goes back.
    assert_eq!(now_seen(stamp - 5_000), stamp);
    assert_eq!(s.query_time_ms(0), stamp);
}
