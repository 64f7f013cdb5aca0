//! Native tests of the counter plugin through `MockHost`, using the exact JSON a client sends.

use cairn_sdk::MockHost;
use counter::{Command, Counter, Value};
use serde_json::json;

#[test]
fn increments_and_reads() {
    let mock = MockHost::new();
    assert_eq!(
        mock.query_json::<Counter>(r#"{"get":{}}"#),
        Ok(json!({"value": 0}))
    );
    assert_eq!(
        mock.apply_json::<Counter>(r#"{"increment":{"by":5}}"#),
        Ok(json!({"value": 5}))
    );
    assert_eq!(
        mock.apply_json::<Counter>(r#"{"increment":{"by":1}}"#),
        Ok(json!({"value": 6}))
    );
    assert_eq!(
        mock.apply_json::<Counter>(r#"{"get":{}}"#),
        Ok(json!({"value": 6}))
    );
    assert_eq!(
        mock.apply::<Counter>(Command::Increment { by: 4 }),
        Ok(Value { value: 10 })
    );
    assert_eq!(
        mock.query_json::<Counter>(r#"{"get":{}}"#),
        Ok(json!({"value": 10}))
    );
}

#[test]
fn overflow_is_rejected_and_changes_nothing() {
    let mock = MockHost::new();
    mock.apply_json::<Counter>(json!({"increment": {"by": u64::MAX}}).to_string())
        .unwrap();
    let err = mock
        .apply_json::<Counter>(r#"{"increment":{"by":1}}"#)
        .unwrap_err();
    assert_eq!(err.code, "overflow");
    assert_eq!(
        mock.query_json::<Counter>(r#"{"get":{}}"#),
        Ok(json!({"value": u64::MAX}))
    );
}

#[test]
fn bad_input() {
    let mock = MockHost::new();
    for input in [
        r#"{"increment":{"by":-1}}"#,
        r#""get""#,
        r#"{"decrement":{}}"#,
        r#"{"increment":{}}"#,
        "{",
    ] {
        let err = mock.apply_json::<Counter>(input).unwrap_err();
        assert_eq!(err.code, "bad-input", "{input}");
    }
    assert_eq!(mock.dump().len(), 0);
}
