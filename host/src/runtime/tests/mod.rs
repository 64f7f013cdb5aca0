//! Runtime tests against real components: every failure kind, rollback and
//! validation here; budgets, faults and the first-party plugins in submodules
//! (whole-command determinism is tested in `state`, which drives the runtime).

mod budgets;
mod faults;
mod plugins;

use serde_json::{Value, json};

use super::*;
use crate::plugins::built;

const FUEL: u64 = 50_000_000;

/// The default limits, as a static so contexts can borrow them.
static LIMITS: std::sync::LazyLock<Limits> = std::sync::LazyLock::new(Limits::default);

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime builds")
}

fn ctx(plugin: &str, index: u64) -> CallContext<'_> {
    CallContext {
        plugin,
        log_index: index,
        timestamp_ms: 1_700_000_000_000,
        fuel: FUEL,
        memory_limit_bytes: 32 << 20,
        limits: &LIMITS,
        engine: EngineParams::default(),
    }
}

fn call(rt: &Runtime, wasm: &[u8], mode: CallMode, input: Value, base: &Kv) -> CallOutcome {
    rt.call(
        &Code::new(wasm.to_vec()),
        mode,
        input.to_string().as_bytes(),
        &ctx("fixture", 7),
        base,
    )
}

/// Runs one misbehaving call of the `misbehave` fixture, checks that it wrote
/// nothing and that a normal write through the same runtime works right
/// after, and returns its error for the kind-specific check.
fn fails_cleanly(mode: CallMode, input: Value) -> CallError {
    let rt = runtime();
    let wasm = built("misbehave");
    let out = call(&rt, &wasm, mode, input, &Kv::new());
    assert!(
        out.writes.is_empty(),
        "a failed call left writes: {:?}",
        out.writes
    );
    let next = call(
        &rt,
        &wasm,
        CallMode::Apply,
        json!({"op": "write", "key": "after", "value": "ok"}),
        &Kv::new(),
    );
    assert!(
        next.result.is_ok(),
        "next call must work: {:?}",
        next.result
    );
    assert_eq!(next.writes.len(), 1);
    out.result.expect_err("the call must fail")
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let err = fails_cleanly(CallMode::Apply, json!({"op": "loop"}));
    assert_eq!(err, CallError::OutOfFuel { fuel: FUEL });
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let err = fails_cleanly(CallMode::Apply, json!({"op": "bomb"}));
    assert_eq!(
        err,
        CallError::MemoryLimit {
            limit_bytes: 32 << 20
        }
    );
    assert_eq!(err.code(), "memory-limit");
    assert_eq!(
        err.to_body().message,
        "memory limit of 33554432 bytes exceeded"
    );
}

#[test]
fn set_in_query_is_refused_even_when_ignored() {
    let err = fails_cleanly(CallMode::Query, json!({"op": "set-in-query"}));
    assert_eq!(err, CallError::WriteInQuery);
}

#[test]
fn plugin_error_and_panic_roll_back_every_write() {
    let fail = json!({"op": "write-then-fail", "key": "k", "value": "v"});
    let err = fails_cleanly(CallMode::Apply, fail);
    assert!(matches!(err, CallError::Plugin { .. }), "{err:?}");
    let panic = json!({"op": "write-then-panic", "key": "k", "value": "v"});
    let err = fails_cleanly(CallMode::Apply, panic);
    assert!(matches!(err, CallError::Trap(_)), "{err:?}");
}

#[test]
fn successful_writes_are_all_visible() {
    let rt = runtime();
    let wasm = built("misbehave");
    let mut kv = Kv::new();
    for i in 0..5 {
        let write = json!({"op": "write", "key": format!("k{i}"), "value": i.to_string()});
        let out = call(&rt, &wasm, CallMode::Apply, write, &kv);
        assert!(out.result.is_ok());
        commit(&mut kv, out.writes);
    }
    assert_eq!(kv.len(), 5);
    let out = call(
        &rt,
        &wasm,
        CallMode::Query,
        json!({"op": "get", "key": "k3"}),
        &kv,
    );
    let body: Value = serde_json::from_slice(&out.result.expect("get works").output).unwrap();
    assert!(body.to_string().contains('3'), "got {body}");
}

#[test]
fn validation_rejects_each_kind_of_bad_upload() {
    let rt = runtime();
    assert!(matches!(
        rt.validate(
            b"definitely not wasm at all",
            EngineParams::default(),
            usize::MAX
        ),
        Err(ValidateError::NotWasm)
    ));
    // The smallest valid core module: magic + version 1.
    assert!(matches!(
        rt.validate(b"\0asm\x01\0\0\0", EngineParams::default(), usize::MAX),
        Err(ValidateError::CoreModule)
    ));
    let err = rt
        .validate(&built("wrong-world"), EngineParams::default(), usize::MAX)
        .unwrap_err();
    assert!(matches!(err, ValidateError::WrongWorld(_)), "{err}");
    assert_eq!(err.code(), "wrong-world");
    let mut truncated = built("counter");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        rt.validate(&truncated, EngineParams::default(), usize::MAX),
        Err(ValidateError::Invalid(_))
    ));
    assert!(matches!(
        rt.validate(&built("counter"), EngineParams::default(), 1024),
        Err(ValidateError::TooLarge { .. })
    ));
    for name in ["counter", "kv", "bank", "misbehave", "nondet"] {
        rt.validate(&built(name), EngineParams::default(), usize::MAX)
            .unwrap_or_else(|e| panic!("{name} must validate: {e}"));
    }
}

#[test]
fn a_background_compile_is_what_the_first_call_uses() {
    let rt = runtime();
    let code = Code::new(built("counter"));
    rt.compile_in_background(&code, EngineParams::default());
    // The call waits for the compile under way (or finds it done) instead of
    // compiling again; either way it answers.
    let out = rt.call(
        &code,
        CallMode::Apply,
        br#"{"increment":{"by":3}}"#,
        &ctx("c", 1),
        &Kv::new(),
    );
    assert_eq!(out.result.expect("applies").output, br#"{"value":3}"#);
    // A 0.2.0 component has `migrate`, a 0.1.0 one has not.
    assert!(rt.exports_migrate(&code));
    assert!(!rt.exports_migrate(&Code::new(built("counter-v1"))));
}

#[test]
fn a_failed_background_compile_is_a_host_fault_and_is_retried() {
    let rt = runtime();
    let mut wasm = built("counter");
    wasm.truncate(wasm.len() / 2);
    let code = Code::new(wasm);
    rt.compile_in_background(&code, EngineParams::default());
    for _ in 0..2 {
        let out = rt.call(&code, CallMode::Apply, b"{}", &ctx("c", 1), &Kv::new());
        let Err(CallError::Host(fault)) = out.result else {
            panic!("{:?}", out.result)
        };
        assert!(fault.contains("cannot compile"), "{fault}");
    }
}
