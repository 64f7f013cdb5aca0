//! The first-party plugins as `.wasm` in the real runtime, and the on-disk
//! compiled-component cache.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ctx, runtime};
use crate::plugins::built;
use crate::runtime::*;

/// Runs `(mode, input)` calls of a first-party plugin in the real runtime,
/// committing successful writes, and returns each output or error code.
fn drive(plugin: &str, calls: &[(CallMode, Value)]) -> Vec<Result<Value, String>> {
    let rt = runtime();
    let wasm = Code::new(built(plugin));
    let mut kv = Kv::new();
    calls
        .iter()
        .enumerate()
        .map(|(i, (mode, input))| {
            let out = rt.call(
                &wasm,
                *mode,
                input.to_string().as_bytes(),
                &ctx(plugin, i as u64 + 1),
                &kv,
            );
            let CallOutcome { result, writes, .. } = out;
            commit(&mut kv, writes);
            result
                .map(|o| serde_json::from_slice(&o.output).expect("plugins answer JSON"))
                .map_err(|e| e.code())
        })
        .collect()
}

#[test]
fn counter_wasm_counts() {
    let out = drive(
        "counter",
        &[
            (CallMode::Apply, json!({"increment": {"by": 5}})),
            (CallMode::Apply, json!({"increment": {"by": 2}})),
            (CallMode::Query, json!({"get": {}})),
            (CallMode::Apply, json!({"nonsense": 1})),
        ],
    );
    assert_eq!(out[0], Ok(json!({"value": 5})));
    assert_eq!(out[2], Ok(json!({"value": 7})));
    assert_eq!(out[3], Err("bad-input".to_string()));
}

#[test]
fn kv_wasm_puts_swaps_and_lists_in_order() {
    let out = drive(
        "kv",
        &[
            (
                CallMode::Apply,
                json!({"put": {"key": "user/2", "value": "b"}}),
            ),
            (
                CallMode::Apply,
                json!({"put": {"key": "user/1", "value": "a"}}),
            ),
            (CallMode::Apply, json!({"put": {"key": "zeta", "value": 1}})),
            (
                CallMode::Apply,
                json!({"cas": {"key": "zeta", "expected": 2, "new": 3}}),
            ),
            (
                CallMode::Apply,
                json!({"cas": {"key": "zeta", "expected": 1, "new": 3}}),
            ),
            (CallMode::Query, json!({"get": {"key": "zeta"}})),
            (
                CallMode::Query,
                json!({"list": {"prefix": "user/", "limit": 1}}),
            ),
            (CallMode::Query, json!({"list": {"prefix": "user/"}})),
        ],
    );
    assert_eq!(out[3], Err("cas-mismatch".to_string()));
    assert!(out[4].is_ok(), "{:?}", out[4]);
    assert_eq!(out[5], Ok(json!({"value": 3})));
    assert_eq!(
        out[6].as_ref().unwrap()["entries"],
        json!([{"key": "user/1", "value": "a"}])
    );
    assert_eq!(
        out[7].as_ref().unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn bank_wasm_rejects_overdraft_and_conserves_money() {
    let out = drive(
        "bank",
        &[
            (
                CallMode::Apply,
                json!({"open": {"account": "alice", "initial": 100}}),
            ),
            (CallMode::Apply, json!({"open": {"account": "bob"}})),
            (
                CallMode::Apply,
                json!({"transfer": {"from": "alice", "to": "bob", "amount": 30}}),
            ),
            (
                CallMode::Apply,
                json!({"transfer": {"from": "bob", "to": "alice", "amount": 31}}),
            ),
            (CallMode::Query, json!({"balance": {"account": "bob"}})),
            (CallMode::Query, json!({"total": {}})),
        ],
    );
    assert_eq!(out[2], Ok(json!({"from_balance": 70, "to_balance": 30})));
    assert_eq!(out[3], Err("insufficient-funds".to_string()));
    assert_eq!(out[4], Ok(json!({"balance": 30})));
    assert_eq!(out[5].as_ref().unwrap()["total"], json!(100));
}

#[test]
fn compiled_components_are_reused_from_disk_only_when_this_node_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RuntimeConfig {
        compiled_cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let wasm = Code::new(built("counter"));
    let sha = Runtime::new(cfg.clone())
        .unwrap()
        .validate(wasm.bytes(), EngineParams::default(), usize::MAX)
        .unwrap();
    let artifact = dir.path().join(format!("{sha}.cwasm"));
    assert!(artifact.exists(), "the first compile writes an artifact");
    // Counter's sha256 with a component header but a body that cannot
    // compile: a call only works if the runtime takes the compiled artifact
    // from disk instead of compiling.
    let forged = Code {
        sha256: *wasm.sha256(),
        bytes: Arc::new(b"\0asm\x0d\x00\x01\x00 no sections here".to_vec()),
    };
    let call = |rt: &Runtime, code: &Code| {
        rt.call(
            code,
            CallMode::Apply,
            br#"{"increment":{"by":3}}"#,
            &ctx("counter", 1),
            &Kv::new(),
        )
        .result
    };
    // A second runtime (a restart) loads the artifact and runs it.
    let out = call(&Runtime::new(cfg.clone()).unwrap(), &forged);
    assert!(out.is_ok(), "artifact not loaded from disk: {out:?}");
    // A tampered artifact is never loaded: the forged bytes must be compiled,
    // which fails; the real bytes recompile and replace the artifact.
    let mut bytes = std::fs::read(&artifact).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&artifact, &bytes).unwrap();
    let out = call(&Runtime::new(cfg.clone()).unwrap(), &forged);
    assert!(
        matches!(out, Err(CallError::Host(_))),
        "tampered artifact was loaded: {out:?}"
    );
    assert!(call(&Runtime::new(cfg).unwrap(), &wasm).is_ok());
    assert_ne!(
        std::fs::read(&artifact).unwrap(),
        bytes,
        "the bad artifact was replaced by a fresh compile"
    );
}

/// Also the measurement behind the fuel defaults: run with `--nocapture`.
#[test]
fn tiny_applies_cost_a_few_thousand_fuel() {
    let rt = runtime();
    for (plugin, input) in [
        ("counter", json!({"increment": {"by": 1}})),
        ("kv", json!({"put": {"key": "a", "value": 1}})),
    ] {
        let out = rt.call(
            &Code::new(built(plugin)),
            CallMode::Apply,
            input.to_string().as_bytes(),
            &ctx(plugin, 1),
            &Kv::new(),
        );
        assert!(out.result.is_ok(), "{:?}", out.result);
        let fuel = out.stats.fuel_consumed;
        println!("{plugin}: fuel consumed {fuel}");
        // Both read and write one key: at least two host calls' worth, and
        // far below the default budget.
        assert!(fuel > 2 * ctx(plugin, 1).limits.fuel_per_host_call);
        assert!(fuel < 100_000, "{plugin}: {fuel}");
    }
}
