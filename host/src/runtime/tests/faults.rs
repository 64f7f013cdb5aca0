//! Traps and host faults: stored failures carry our own fixed text, the stack
//! cap follows the cluster's engine parameters, and a fault of the host is
//! never recorded as a command's outcome.

use serde_json::json;

use super::*;
use crate::state::{Command, CommandResult, Output, QueryError, State};

fn deploy(name: &str, crate_name: &str) -> Command {
    Command::Deploy {
        name: name.into(),
        code: crate::state::DeployCode::Inline(built(crate_name)),
        fuel_per_call: FUEL,
        memory_limit_bytes: 32 << 20,
        timestamp_ms: 1_700_000_000_000,
        idempotency_key: None,
    }
}

fn recurse(rt: &Runtime, depth: Option<u64>, max_stack_bytes: usize) -> Result<Output, CallError> {
    let ctx = CallContext {
        engine: EngineParams {
            max_stack_bytes,
            ..EngineParams::default()
        },
        ..ctx("fixture", 1)
    };
    let input = json!({"op": "recurse", "depth": depth}).to_string();
    let code = Code::new(built("misbehave"));
    rt.call(&code, CallMode::Query, input.as_bytes(), &ctx, &Kv::new())
        .result
}

#[test]
fn runaway_recursion_is_a_stack_overflow_in_our_words() {
    let err = fails_cleanly(CallMode::Apply, json!({"op": "recurse"}));
    // Exactly our text: nothing of wasmtime's wording ("wasm trap: call stack
    // exhausted", backtraces) reaches a stored result.
    assert_eq!(err, CallError::Trap("stack overflow".into()));
    assert_eq!(err.to_body().message, "plugin trapped: stack overflow");
}

#[test]
fn a_panic_carries_our_text_and_the_guest_message_only() {
    let err = fails_cleanly(CallMode::Apply, json!({"op": "panic", "msg": "boom-42"}));
    let CallError::Trap(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.starts_with("unreachable executed; guest stderr: "),
        "{msg}"
    );
    assert!(msg.contains("boom-42"), "{msg}");
    assert!(!msg.contains("wasm"), "engine text leaked: {msg}");
}

#[test]
fn max_stack_bytes_decides_whether_a_recursion_overflows() {
    let rt = runtime();
    // ~50 bytes of native stack per level: 3000 levels need ~150 KiB.
    let depth = Some(3_000);
    assert!(recurse(&rt, depth, 512 * 1024).is_ok());
    assert_eq!(
        recurse(&rt, depth, 64 * 1024),
        Err(CallError::Trap("stack overflow".into()))
    );
    // A cap above what the calling thread has runs on a thread of its own
    // instead of overflowing the host's stack (which would kill the process).
    assert!(recurse(&rt, Some(30_000), 512 * 1024).is_err());
    assert!(recurse(&rt, Some(30_000), 8 << 20).is_ok());
    assert!(recurse(&rt, None, 8 << 20).is_err(), "still bounded");
}

#[test]
fn deploy_failures_are_recorded_in_our_words() {
    let rt = runtime();
    let mut s = State::new();
    let bad = |wasm: Vec<u8>| Command::Deploy {
        name: "bad".into(),
        code: crate::state::DeployCode::Inline(wasm),
        fuel_per_call: FUEL,
        memory_limit_bytes: 32 << 20,
        timestamp_ms: 1_700_000_000_000,
        idempotency_key: None,
    };
    let recorded = |s: &mut State, index, cmd| match s.apply(&rt, index, &cmd) {
        Ok(CommandResult::Failed(e)) => (e.code, e.message),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        recorded(&mut s, 1, bad(b"not wasm at all".to_vec())).0,
        "not-wasm"
    );
    let core = b"\0asm\x01\0\0\0".to_vec();
    assert_eq!(recorded(&mut s, 2, bad(core)).0, "not-a-component");
    // What only a compile finds is refused before proposing, in our words.
    let record = ValidateError::Invalid("engine text v48".into()).to_record();
    assert_eq!(record.message, "the component failed to parse or compile");
    let record = ValidateError::WrongWorld("linker text".into()).to_record();
    assert_eq!(
        record.message,
        "the component does not implement the cairn:plugin world"
    );
}

#[test]
fn code_that_fails_to_compile_in_the_log_is_a_host_fault_never_a_result() {
    // No leader proposes such code (it compiles before proposing); a deploy
    // entry's apply does not compile (that happens in the background), so a
    // failure surfaces at the first call of the plugin as this node's fault.
    let rt = runtime();
    let mut s = State::new();
    for (index, wasm) in [
        (1, {
            let mut w = built("counter");
            w.truncate(w.len() / 2);
            w
        }),
        (3, built("wrong-world")),
    ] {
        let name = format!("bad{index}");
        let deploy = Command::Deploy {
            name: name.clone(),
            code: crate::state::DeployCode::Inline(wasm),
            fuel_per_call: FUEL,
            memory_limit_bytes: 32 << 20,
            timestamp_ms: 1_700_000_000_000,
            idempotency_key: None,
        };
        assert!(matches!(
            s.apply(&rt, index, &deploy),
            Ok(CommandResult::Deployed(_))
        ));
        let call = Command::Apply {
            plugin: name,
            input: b"{}".to_vec(),
            timestamp_ms: 1_700_000_000_001,
            idempotency_key: None,
        };
        let fault = s.clone().apply(&rt, index + 1, &call).unwrap_err();
        assert!(fault.0.contains("cannot compile"), "{fault}");
    }
}

#[test]
fn a_busy_pool_is_a_host_fault_never_a_recorded_result() {
    let rt = Runtime::new(RuntimeConfig {
        pooled_instances: 1,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let mut s = State::new();
    assert!(matches!(
        s.apply(&rt, 1, &deploy("c", "counter")),
        Ok(CommandResult::Deployed(_))
    ));
    let increment = Command::Apply {
        plugin: "c".into(),
        input: br#"{"increment":{"by":2}}"#.to_vec(),
        timestamp_ms: 1_700_000_000_001,
        idempotency_key: Some("once".into()),
    };
    let held = rt.occupy_slot(&Code::new(built("counter")), &ctx("c", 1));
    // The apply retries, then hands the fault up instead of recording it.
    let mut attempt = s.clone();
    let fault = attempt.apply(&rt, 2, &increment).unwrap_err();
    assert!(fault.0.contains("concurrent limit"), "{fault}");
    assert_eq!(attempt.idempotent_result("c", "once"), None);
    let query = s.query(&rt, "c", br#"{"get":{}}"#, 0);
    assert!(matches!(query, Err(QueryError::Host(_))), "{query:?}");
    // Once the slot is free, the same command applies normally.
    drop(held);
    let Ok(CommandResult::Applied(out)) = s.apply(&rt, 2, &increment) else {
        panic!("the retry after the pool freed up must apply")
    };
    assert_eq!(out.output, br#"{"value":2}"#);
    assert!(s.query(&rt, "c", br#"{"get":{}}"#, 0).is_ok());
}
