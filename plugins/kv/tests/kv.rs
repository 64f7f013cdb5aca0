//! Native tests of the kv plugin through `MockHost`, using the exact JSON a client sends.

use cairn_sdk::MockHost;
use kv::Kv;
use serde_json::{Value, json};

fn apply(mock: &MockHost, input: Value) -> Result<Value, String> {
    mock.apply_json::<Kv>(input.to_string())
        .map_err(|e| e.to_string())
}

fn query(mock: &MockHost, input: Value) -> Value {
    mock.query_json::<Kv>(input.to_string()).unwrap()
}

#[test]
fn put_get_delete() {
    let mock = MockHost::new();
    assert_eq!(
        apply(&mock, json!({"put": {"key": "a", "value": 1}})),
        Ok(json!({"previous": null}))
    );
    assert_eq!(
        apply(
            &mock,
            json!({"put": {"key": "a", "value": {"x": [1, "two"]}}})
        ),
        Ok(json!({"previous": 1}))
    );
    assert_eq!(
        query(&mock, json!({"get": {"key": "a"}})),
        json!({"value": {"x": [1, "two"]}})
    );
    assert_eq!(
        apply(&mock, json!({"get": {"key": "a"}})),
        Ok(json!({"value": {"x": [1, "two"]}}))
    );
    assert_eq!(
        apply(&mock, json!({"delete": {"key": "a"}})),
        Ok(json!({"previous": {"x": [1, "two"]}}))
    );
    assert_eq!(
        apply(&mock, json!({"delete": {"key": "a"}})),
        Ok(json!({"previous": null}))
    );
    assert_eq!(
        query(&mock, json!({"get": {"key": "a"}})),
        json!({"value": null})
    );
    let err = apply(&mock, json!({"put": {"key": "a", "value": null}})).unwrap_err();
    assert!(err.starts_with("bad-input"), "{err}");
}

#[test]
fn compare_and_swap() {
    let mock = MockHost::new();
    // Absent expected means "must not exist".
    assert_eq!(
        apply(&mock, json!({"cas": {"key": "r", "new": 1}})),
        Ok(json!({"previous": null}))
    );
    assert_eq!(
        apply(
            &mock,
            json!({"cas": {"key": "r", "expected": null, "new": 2}})
        ),
        Err("cas-mismatch: expected null, current 1".into())
    );
    assert_eq!(
        apply(&mock, json!({"cas": {"key": "r", "expected": 1, "new": 2}})),
        Ok(json!({"previous": 1}))
    );
    assert_eq!(
        apply(&mock, json!({"cas": {"key": "r", "expected": 1, "new": 3}})),
        Err("cas-mismatch: expected 1, current 2".into())
    );
    assert_eq!(
        query(&mock, json!({"get": {"key": "r"}})),
        json!({"value": 2})
    );
    // `new` omitted deletes.
    assert_eq!(
        apply(&mock, json!({"cas": {"key": "r", "expected": 2}})),
        Ok(json!({"previous": 2}))
    );
    assert_eq!(
        apply(&mock, json!({"cas": {"key": "r", "expected": 2, "new": 1}})),
        Err("cas-mismatch: expected 2, current null".into())
    );
}

#[test]
fn listing_is_ordered_and_limited() {
    let mock = MockHost::new().with_scan_cap(2);
    for (i, k) in ["user/2", "user/1", "admin", "user/10", "zed"]
        .iter()
        .enumerate()
    {
        apply(&mock, json!({"put": {"key": k, "value": i}})).unwrap();
    }
    assert_eq!(
        query(&mock, json!({"list": {"prefix": "user/"}})),
        json!({"entries": [
            {"key": "user/1", "value": 1},
            {"key": "user/10", "value": 3},
            {"key": "user/2", "value": 0},
        ]})
    );
    let two = query(&mock, json!({"list": {"prefix": "user/", "limit": 2}}));
    assert_eq!(two["entries"].as_array().unwrap().len(), 2);
    assert_eq!(
        query(&mock, json!({"list": {}}))["entries"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        query(
            &mock,
            json!({"range": {"start": "b", "end": "user/2", "limit": 10}})
        ),
        json!({"entries": [{"key": "user/1", "value": 1}, {"key": "user/10", "value": 3}]})
    );
    assert_eq!(
        query(&mock, json!({"range": {"start": "user/2"}})),
        json!({"entries": [{"key": "user/2", "value": 0}, {"key": "zed", "value": 4}]})
    );
    assert_eq!(
        query(&mock, json!({"range": {"end": "b", "limit": 1}}))["entries"][0]["key"],
        "admin"
    );
}

#[test]
fn bad_input() {
    let mock = MockHost::new();
    for input in [
        json!({"put": {"key": "a"}}),
        json!({"frob": {}}),
        json!("get"),
    ] {
        assert!(
            apply(&mock, input.clone())
                .unwrap_err()
                .starts_with("bad-input"),
            "{input}"
        );
    }
    let err = mock.query_json::<Kv>(r#"{"get":{"key":1}}"#).unwrap_err();
    assert_eq!(err.code, "bad-input");
}
