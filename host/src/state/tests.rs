//! State tests: deploy/upgrade/remove, idempotency, and the snapshot format.

use serde_json::json;

use super::*;
use crate::plugins::built;
use crate::runtime::RuntimeConfig;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

fn deploy(name: &str, crate_name: &str) -> Command {
    Command::Deploy {
        name: name.into(),
        wasm: built(crate_name),
        fuel_per_call: 50_000_000,
        memory_limit_bytes: 32 << 20,
        timestamp_ms: 1,
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
    s.apply(&rt, 1, &deploy("c", "counter"))
        .expect("no host fault");
    s.apply(&rt, 2, &apply("c", json!({"increment": {"by": 4}}), None))
        .expect("no host fault");
    let CommandResult::Deployed(info) = s
        .apply(&rt, 3, &deploy("c", "counter"))
        .expect("no host fault")
    else {
        panic!("redeploy")
    };
    assert_eq!(info.version, 2);
    assert_eq!(info.deployed_at_index, 3);
    assert_eq!(
        output(
            &s.apply(&rt, 4, &apply("c", json!({"get": {}}), None))
                .expect("no host fault")
        ),
        json!({"value": 4})
    );
    // Upgrading to other code replaces the blob; the old one is not kept.
    s.apply(&rt, 5, &deploy("c", "kv")).expect("no host fault");
    assert_eq!(s.code.len(), 1);
    assert!(matches!(
        s.apply(&rt, 6, &Command::Remove { name: "c".into() })
            .expect("no host fault"),
        CommandResult::Removed { .. }
    ));
    assert!(s.plugins().is_empty() && s.code.is_empty() && s.kv("c").is_empty());
    let CommandResult::Failed(e) = s
        .apply(&rt, 7, &apply("c", json!({}), None))
        .expect("no host fault")
    else {
        panic!("removed")
    };
    assert_eq!(e.code, "plugin-not-found");
}

#[test]
fn bad_deploys_are_recorded_as_failures() {
    let rt = runtime();
    let mut s = State::new();
    let bad = Command::Deploy {
        name: "x".into(),
        wasm: b"junk".to_vec(),
        fuel_per_call: 1,
        memory_limit_bytes: 1,
        timestamp_ms: 0,
    };
    assert!(
        matches!(s.apply(&rt, 1, &bad).expect("no host fault"), CommandResult::Failed(e) if e.code == "not-wasm")
    );
    assert!(
        matches!(s.apply(&rt, 2, &deploy("Bad Name", "counter")).expect("no host fault"), CommandResult::Failed(e) if e.code == "invalid-plugin-name")
    );
    assert!(s.plugins().is_empty());
    assert_eq!(s.applied_index(), 2);
}

#[test]
fn same_idempotency_key_applies_once() {
    let rt = runtime();
    let mut s = State::new();
    s.apply(&rt, 1, &deploy("c", "counter"))
        .expect("no host fault");
    let first = s
        .apply(
            &rt,
            2,
            &apply("c", json!({"increment": {"by": 1}}), Some("k")),
        )
        .expect("no host fault");
    let retry = s
        .apply(
            &rt,
            3,
            &apply("c", json!({"increment": {"by": 1}}), Some("k")),
        )
        .expect("no host fault");
    assert_eq!(first, retry);
    assert_eq!(s.idempotent_result("c", "k").map(|r| r.index), Some(2));
    let other = s
        .apply(
            &rt,
            4,
            &apply("c", json!({"increment": {"by": 1}}), Some("k2")),
        )
        .expect("no host fault");
    assert_eq!(output(&other), json!({"value": 2}));
}

#[test]
fn snapshot_roundtrip_preserves_the_hash_and_rejects_damage() {
    let rt = runtime();
    let mut s = State::new();
    s.apply(&rt, 1, &deploy("kv", "kv")).expect("no host fault");
    for i in 0..20 {
        s.apply(
            &rt,
            2 + i,
            &apply(
                "kv",
                json!({"put": {"key": format!("k{i}"), "value": i}}),
                Some(&format!("id{i}")),
            ),
        )
        .expect("no host fault");
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
        s.apply(&rt, 1, &deploy("kv", "kv")).expect("no host fault");
    }
    a.apply(
        &rt,
        2,
        &apply("kv", json!({"put": {"key": "k", "value": 1}}), None),
    )
    .expect("no host fault");
    b.apply(
        &rt,
        2,
        &apply("kv", json!({"put": {"key": "k", "value": 2}}), None),
    )
    .expect("no host fault");
    assert_ne!(a.hash(), b.hash());
}
