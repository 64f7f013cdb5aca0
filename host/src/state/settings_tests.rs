//! State tests of the replicated settings: compare-and-set updates, ceilings
//! that bind already deployed plugins, snapshots and the plugin clock.

use serde_json::json;

use super::*;
use crate::plugins::built;
use crate::runtime::RuntimeConfig;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime")
}

fn deploy(name: &str, crate_name: &str, fuel_per_call: u64) -> Command {
    Command::Deploy {
        name: name.into(),
        code: DeployCode::Inline(built(crate_name)),
        fuel_per_call,
        memory_limit_bytes: 32 << 20,
        timestamp_ms: 1,
        idempotency_key: None,
    }
}

fn apply_at(plugin: &str, input: serde_json::Value, timestamp_ms: u64) -> Command {
    Command::Apply {
        plugin: plugin.into(),
        input: input.to_string().into_bytes(),
        timestamp_ms,
        idempotency_key: None,
    }
}

fn update(settings: ClusterSettings, expected_index: u64) -> Command {
    Command::UpdateSettings {
        settings,
        expected_index,
    }
}

fn failed_code(r: &CommandResult) -> &str {
    match r {
        CommandResult::Failed(e) => &e.code,
        other => panic!("expected a failure, got {other}"),
    }
}

#[test]
fn settings_change_by_compare_and_set_and_invalid_ones_change_nothing() {
    let rt = runtime();
    let mut s = State::new();
    assert_eq!(s.settings_index(), 0);
    let mut wanted = ClusterSettings::default();
    wanted.limits.max_value_bytes = 1000;
    let r = s.apply_ok(&rt, 1, &update(wanted.clone(), 0));
    assert_eq!(r, CommandResult::SettingsUpdated(wanted.clone()));
    assert_eq!((s.settings(), s.settings_index()), (&wanted, 1));

    // A second change based on the pre-init view loses: it did not see index 1.
    let stale = ClusterSettings::default();
    assert_eq!(
        failed_code(&s.apply_ok(&rt, 2, &update(stale, 0))),
        SETTINGS_CONFLICT
    );
    let contradictory = ClusterSettings {
        default_fuel_per_call: 10,
        max_fuel_per_call: 1,
        ..ClusterSettings::default()
    };
    let before = s.hash();
    assert_eq!(
        failed_code(&s.apply_ok(&rt, 3, &update(contradictory, 1))),
        SettingsError::CODE
    );
    assert_eq!((s.settings(), s.settings_index()), (&wanted, 1));
    // Only the applied index moved; the hash covers settings, not the index.
    assert_eq!(s.hash(), before);
}

#[test]
fn ceilings_bind_deploys_and_plugins_deployed_before_them() {
    let rt = runtime();
    let mut s = State::new();
    let too_much = s.settings().max_fuel_per_call + 1;
    assert_eq!(
        failed_code(&s.apply_ok(&rt, 1, &deploy("c", "counter", too_much))),
        "fuel-too-large"
    );
    assert!(s.plugin("c").is_none());
    s.apply_ok(&rt, 2, &deploy("c", "counter", 50_000_000));
    let inc = json!({"increment": {"by": 1}});
    assert!(matches!(
        s.apply_ok(&rt, 3, &apply_at("c", inc.clone(), 3)),
        CommandResult::Applied(_)
    ));
    // Lowering the ceiling below what one increment costs caps the plugin
    // deployed earlier with 50M: the same command now runs out of fuel.
    let tight = ClusterSettings {
        default_fuel_per_call: 100,
        max_fuel_per_call: 100,
        ..ClusterSettings::default()
    };
    s.apply_ok(&rt, 4, &update(tight, 0));
    assert_eq!(
        failed_code(&s.apply_ok(&rt, 5, &apply_at("c", inc, 5))),
        "out-of-fuel"
    );
}

#[test]
fn settings_travel_in_snapshots_and_change_the_hash() {
    let rt = runtime();
    let mut a = State::new();
    let b = State::new();
    let mut changed = ClusterSettings::default();
    changed.max_stack_bytes *= 2;
    a.apply_ok(&rt, 1, &update(changed.clone(), 0));
    let mut b2 = b.clone();
    b2.advance(1);
    assert_ne!(a.hash(), b2.hash(), "settings are part of the state hash");
    let (back, _) = snapshot::decode(&snapshot::encode(&a, b"")).expect("decodes");
    assert_eq!(back.settings(), &changed);
    assert_eq!(back.settings_index(), 1);
    assert_eq!(back.hash(), a.hash());
}

#[test]
fn the_plugin_clock_never_goes_backwards() {
    let rt = runtime();
    let mut s = State::new();
    s.apply_ok(&rt, 1, &deploy("n", "nondet", 50_000_000));
    let seen = |r: CommandResult| match r {
        CommandResult::Applied(o) => {
            let v: serde_json::Value = serde_json::from_slice(&o.output).expect("json");
            v["timestamp_ms"].as_u64().expect("timestamp_ms")
        }
        other => panic!("expected output, got {other}"),
    };
    assert_eq!(
        seen(s.apply_ok(&rt, 2, &apply_at("n", json!({}), 5_000))),
        5_000
    );
    // A new leader whose clock is behind stamps an earlier time: the plugin
    // still sees the latest time it has seen.
    assert_eq!(
        seen(s.apply_ok(&rt, 3, &apply_at("n", json!({}), 4_000))),
        5_000
    );
    assert_eq!(
        seen(s.apply_ok(&rt, 4, &apply_at("n", json!({}), 6_000))),
        6_000
    );
}
