//! Event log tests through `State::apply`: transfers of the `bank` plugin
//! fill it, the retention setting trims it, removal drops it, and snapshots
//! and the state hash carry it.

use serde_json::json;

use super::*;
use crate::plugins::built;
use crate::runtime::RuntimeConfig;

fn bank_with_accounts(rt: &Runtime) -> State {
    let mut s = State::new();
    let deploy = Command::Deploy {
        name: "bank".into(),
        code: DeployCode::Inline(built("bank")),
        fuel_per_call: 50_000_000,
        memory_limit_bytes: 32 << 20,
        timestamp_ms: 1,
        idempotency_key: None,
    };
    assert!(matches!(
        s.apply_ok(rt, 1, &deploy),
        CommandResult::Deployed(_)
    ));
    for (i, account) in ["alice", "bob"].into_iter().enumerate() {
        let open = json!({"open": {"account": account, "initial": 1000}});
        s.apply_ok(rt, 2 + i as u64, &bank(open));
    }
    s
}

fn bank(input: serde_json::Value) -> Command {
    Command::Apply {
        plugin: "bank".into(),
        input: input.to_string().into_bytes(),
        timestamp_ms: 2,
        idempotency_key: None,
    }
}

fn transfer(amount: u64) -> Command {
    bank(json!({"transfer": {"from": "alice", "to": "bob", "amount": amount}}))
}

fn all(s: &State) -> Vec<(String, String, serde_json::Value)> {
    let read = s
        .read_events("bank", EventId::first_of(0), u64::MAX)
        .expect("bank is deployed")
        .expect("nothing dropped");
    read.events
        .iter()
        .map(|(id, e)| {
            let payload = serde_json::from_slice(&e.payload).expect("json payload");
            (id.to_string(), e.topic.clone(), payload)
        })
        .collect()
}

#[test]
fn transfers_append_events_with_their_log_index() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut s = bank_with_accounts(&rt);
    s.apply_ok(&rt, 10, &transfer(5));
    // A failed command emits nothing.
    s.apply_ok(&rt, 11, &transfer(1_000_000));
    s.apply_ok(&rt, 12, &transfer(7));
    assert_eq!(
        all(&s),
        [
            (
                "10-0".into(),
                "transfer".into(),
                json!({"from": "alice", "to": "bob", "amount": 5})
            ),
            (
                "12-0".into(),
                "transfer".into(),
                json!({"from": "alice", "to": "bob", "amount": 7})
            ),
        ]
    );
    assert!(s.read_events("nope", EventId::first_of(0), 1).is_none());
}

#[test]
fn lowering_retention_trims_at_once_and_later_appends_keep_it() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut s = bank_with_accounts(&rt);
    for i in 0..5 {
        s.apply_ok(&rt, 10 + i, &transfer(1));
    }
    let mut small = s.settings().clone();
    small.event_retention_count = 3;
    small.limits.max_events_per_call = 3;
    let update = Command::UpdateSettings {
        settings: small,
        expected_index: s.settings_index(),
    };
    assert!(matches!(
        s.apply_ok(&rt, 20, &update),
        CommandResult::SettingsUpdated(_)
    ));
    let log = s.event_log("bank").expect("bank emitted");
    assert_eq!((log.len(), log.oldest_index()), (3, 12));
    s.apply_ok(&rt, 21, &transfer(1));
    let ids: Vec<String> = s
        .read_events("bank", EventId::first_of(13), u64::MAX)
        .expect("deployed")
        .expect("held")
        .events
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(ids, ["13-0", "14-0", "21-0"]);
    assert_eq!(
        s.read_events("bank", EventId::first_of(12), u64::MAX),
        Some(Err(Gone { oldest_index: 13 }))
    );
}

#[test]
fn removing_the_plugin_drops_its_events() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut s = bank_with_accounts(&rt);
    s.apply_ok(&rt, 10, &transfer(1));
    s.apply_ok(
        &rt,
        11,
        &Command::Remove {
            name: "bank".into(),
        },
    );
    assert!(s.event_log("bank").is_none());
    assert!(s.read_events("bank", EventId::first_of(0), 1).is_none());
    assert!(s.events.is_empty());
}

#[test]
fn snapshots_and_the_hash_carry_the_event_log() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut s = bank_with_accounts(&rt);
    for i in 0..4 {
        s.apply_ok(&rt, 10 + i, &transfer(2));
    }
    let mut small = s.settings().clone();
    small.event_retention_count = 2;
    small.limits.max_events_per_call = 2;
    s.apply_ok(
        &rt,
        20,
        &Command::UpdateSettings {
            settings: small,
            expected_index: s.settings_index(),
        },
    );
    let (back, _) = snapshot::decode(&snapshot::encode(&s, b"")).expect("decodes");
    assert_eq!(back.hash(), s.hash());
    assert_eq!(back.event_log("bank"), s.event_log("bank"));
    assert_eq!(
        back.event_log("bank").map(EventLog::bytes),
        Some(s.event_log("bank").unwrap().bytes())
    );
    // What retention dropped is remembered too: a read below it is still gone.
    assert_eq!(
        back.read_events("bank", EventId::first_of(10), 1),
        Some(Err(Gone { oldest_index: 12 }))
    );
    // The hash sees the events: the same KV without them hashes differently.
    let mut without = s.clone();
    without.events = imbl::OrdMap::new();
    assert_ne!(without.hash(), s.hash());
}
