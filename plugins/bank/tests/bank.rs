//! Native tests of the bank plugin through `MockHost`: errors, atomicity, events and conservation.

use bank::{Bank, Output, Query, TransferEvent};
use cairn_sdk::MockHost;
use serde_json::{Value, json};

fn apply(mock: &MockHost, input: Value) -> Result<Value, String> {
    mock.apply_json::<Bank>(input.to_string())
        .map_err(|e| e.code)
}

fn query(mock: &MockHost, input: Value) -> Result<Value, String> {
    mock.query_json::<Bank>(input.to_string())
        .map_err(|e| e.code)
}

fn total(mock: &MockHost) -> Value {
    query(mock, json!({"total": {}})).unwrap()
}

#[test]
fn accounts_and_errors() {
    let mock = MockHost::new();
    assert_eq!(
        apply(&mock, json!({"open": {"account": "alice", "initial": 100}})),
        Ok(json!({"balance": 100}))
    );
    assert_eq!(
        apply(&mock, json!({"open": {"account": "bob"}})),
        Ok(json!({"balance": 0}))
    );
    assert_eq!(
        apply(&mock, json!({"open": {"account": "bob", "initial": 5}})),
        Err("account-exists".into())
    );
    assert_eq!(
        apply(&mock, json!({"deposit": {"account": "bob", "amount": 7}})),
        Ok(json!({"balance": 7}))
    );
    assert_eq!(
        apply(&mock, json!({"withdraw": {"account": "bob", "amount": 2}})),
        Ok(json!({"balance": 5}))
    );
    assert_eq!(
        apply(&mock, json!({"withdraw": {"account": "bob", "amount": 6}})),
        Err("insufficient-funds".into())
    );
    assert_eq!(
        apply(&mock, json!({"deposit": {"account": "carol", "amount": 1}})),
        Err("no-such-account".into())
    );
    assert_eq!(
        apply(
            &mock,
            json!({"deposit": {"account": "alice", "amount": u64::MAX}})
        ),
        Err("overflow".into())
    );
    assert_eq!(
        apply(&mock, json!({"deposit": {"account": "bob", "amount": -1}})),
        Err("bad-input".into())
    );
    assert_eq!(
        query(&mock, json!({"balance": {"account": "bob"}})),
        Ok(json!({"balance": 5}))
    );
    assert_eq!(
        query(&mock, json!({"balance": {"account": "zed"}})),
        Err("no-such-account".into())
    );
    assert_eq!(total(&mock), json!({"total": 105, "accounts": 2}));
}

#[test]
fn transfers_are_atomic_conserve_money_and_emit_events() {
    let mock = MockHost::new();
    apply(&mock, json!({"open": {"account": "alice", "initial": 100}})).unwrap();
    apply(
        &mock,
        json!({"open": {"account": "bob", "initial": u64::MAX - 10}}),
    )
    .unwrap();
    let before = mock.dump();

    // Each failure leaves the store exactly as it was.
    for (cmd, code) in [
        (
            json!({"transfer": {"from": "alice", "to": "bob", "amount": 101}}),
            "insufficient-funds",
        ),
        (
            json!({"transfer": {"from": "alice", "to": "nobody", "amount": 1}}),
            "no-such-account",
        ),
        (
            json!({"transfer": {"from": "nobody", "to": "alice", "amount": 1}}),
            "no-such-account",
        ),
        (
            json!({"transfer": {"from": "alice", "to": "bob", "amount": 11}}),
            "overflow",
        ),
    ] {
        assert_eq!(apply(&mock, cmd), Err(code.into()));
        assert_eq!(mock.dump(), before);
    }
    assert!(mock.events().is_empty());

    assert_eq!(
        apply(
            &mock,
            json!({"transfer": {"from": "alice", "to": "bob", "amount": 10}})
        ),
        Ok(json!({"from_balance": 90, "to_balance": u64::MAX}))
    );
    assert_eq!(
        apply(
            &mock,
            json!({"transfer": {"from": "alice", "to": "alice", "amount": 90}})
        ),
        Ok(json!({"from_balance": 90, "to_balance": 90}))
    );
    let events = mock.take_events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].topic, "transfer");
    let event: TransferEvent = events[0].json().unwrap();
    assert_eq!(
        event,
        TransferEvent {
            from: "alice".into(),
            to: "bob".into(),
            amount: 10
        }
    );
    // The total exceeds u64 and is still exact.
    let expected = u128::from(u64::MAX) + 90;
    assert_eq!(
        mock.query::<Bank>(Query::Total {}),
        Ok(Output::Total {
            total: expected,
            accounts: 2
        })
    );
}

#[test]
fn total_is_invariant_under_many_transfers() {
    let mock = MockHost::new().with_scan_cap(3);
    let names: Vec<String> = (0..10).map(|i| format!("acct-{i}")).collect();
    for n in &names {
        apply(&mock, json!({"open": {"account": n, "initial": 1000}})).unwrap();
    }
    let mut seed = 17u64;
    for _ in 0..500 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let from = &names[(seed >> 33) as usize % 10];
        let to = &names[(seed >> 45) as usize % 10];
        let amount = (seed >> 20) % 400;
        let _ = apply(
            &mock,
            json!({"transfer": {"from": from, "to": to, "amount": amount}}),
        );
        assert_eq!(total(&mock), json!({"total": 10_000, "accounts": 10}));
    }
}
