//! What a call pays and how far it may go: host imports cost fuel in
//! proportion to the bytes they move, and the per-call write and scan budgets
//! stop bombs before the host holds more than the budget.

use serde_json::{Value, json};

use super::*;

const MIB: usize = 1024 * 1024;

/// Runs `input` of the `misbehave` fixture under `limits` and `fuel`.
fn run(mode: CallMode, input: Value, limits: &Limits, fuel: u64, base: &Kv) -> CallOutcome {
    let ctx = CallContext {
        limits,
        fuel,
        ..ctx("fixture", 3)
    };
    runtime().call(
        &Code::new(built("misbehave")),
        mode,
        input.to_string().as_bytes(),
        &ctx,
        base,
    )
}

/// A store holding `count` entries of 1 MiB, written by the fixture itself.
fn filled(count: u32) -> Kv {
    let fill = json!({"op": "fill", "count": count, "size": MIB});
    let out = run(CallMode::Apply, fill, &LIMITS, FUEL, &Kv::new());
    assert!(out.result.is_ok(), "fill: {:?}", out.result);
    let mut kv = Kv::new();
    commit(&mut kv, out.writes);
    assert_eq!(kv.len(), count as usize);
    kv
}

#[test]
fn host_calls_cost_fuel_per_call_and_per_byte() {
    const VALUE_BYTES: usize = 10_000;
    let write = json!({"op": "write", "key": "k", "value": "x".repeat(VALUE_BYTES)});
    let free = Limits {
        fuel_per_host_call: 0,
        fuel_per_host_byte: 0,
        ..Limits::default()
    };
    let priced = Limits {
        fuel_per_host_call: 5_000,
        fuel_per_host_byte: 3,
        ..Limits::default()
    };
    let fuel = |limits: &Limits| {
        let out = run(CallMode::Apply, write.clone(), limits, FUEL, &Kv::new());
        assert!(out.result.is_ok(), "{:?}", out.result);
        out.stats.fuel_consumed
    };
    // The write is one `set` of a 1-byte key and the value; the guest's own
    // instructions are the same either way.
    let moved = (1 + VALUE_BYTES) as u64;
    assert_eq!(fuel(&priced) - fuel(&free), 5_000 + 3 * moved);
}

#[test]
fn a_host_call_that_cannot_pay_runs_out_of_fuel() {
    let expensive = Limits {
        fuel_per_host_byte: FUEL,
        ..Limits::default()
    };
    let write = json!({"op": "write", "key": "k", "value": "v"});
    let out = run(CallMode::Apply, write, &expensive, FUEL, &Kv::new());
    assert_eq!(out.result.unwrap_err(), CallError::OutOfFuel { fuel: FUEL });
    assert!(out.writes.is_empty());
    assert_eq!(out.stats.write_bytes, 0, "nothing was accepted unpaid");
}

#[test]
fn write_bomb_stops_at_the_write_budget() {
    let bomb = json!({"op": "write-bomb", "size": MIB});
    let out = run(CallMode::Apply, bomb.clone(), &LIMITS, FUEL, &Kv::new());
    let err = out.result.unwrap_err();
    assert_eq!(
        err,
        CallError::WriteBudgetExceeded {
            budget_bytes: LIMITS.max_write_bytes_per_call
        }
    );
    assert_eq!(err.code(), "write-budget-exceeded");
    assert_eq!(
        err.to_body().message,
        "the call wrote more than 16777216 bytes (max_write_bytes_per_call)"
    );
    assert!(out.writes.is_empty());
    // The host accepted up to the budget and not a byte more.
    let one = MIB + b"bomb".len();
    let budget = LIMITS.max_write_bytes_per_call;
    assert_eq!(out.stats.write_bytes, budget / one * one);
    // With less fuel than the budget costs, fuel stops it first.
    let fuel = 4_000_000;
    let out = run(CallMode::Apply, bomb, &LIMITS, fuel, &Kv::new());
    assert_eq!(out.result.unwrap_err(), CallError::OutOfFuel { fuel });
    assert!(out.stats.write_bytes < fuel as usize, "{:?}", out.stats);
}

#[test]
fn scan_bomb_stops_at_the_scan_budget_in_apply_and_query() {
    let kv = filled(8);
    let entry = MIB + b"fill/000000".len();
    let budget = LIMITS.max_scan_bytes_per_call;
    for mode in [CallMode::Apply, CallMode::Query] {
        let out = run(mode, json!({"op": "scan-bomb"}), &LIMITS, FUEL, &kv);
        let err = out.result.unwrap_err();
        assert_eq!(
            err,
            CallError::ScanBudgetExceeded {
                budget_bytes: budget
            }
        );
        assert_eq!(err.code(), "scan-budget-exceeded");
        assert!(out.writes.is_empty());
        // Whole scans of 8 entries, then as many entries as still fit.
        assert_eq!(out.stats.scan_bytes, budget / entry * entry, "{mode:?}");
    }
}

#[test]
fn a_scan_gathers_only_what_its_fuel_pays_for() {
    let kv = filled(8);
    let fuel = 3_500_000;
    let out = run(
        CallMode::Query,
        json!({"op": "scan-bomb"}),
        &LIMITS,
        fuel,
        &kv,
    );
    assert_eq!(out.result.unwrap_err(), CallError::OutOfFuel { fuel });
    // Three 1 MiB entries are affordable, the fourth is never copied.
    assert_eq!(out.stats.scan_bytes, 3 * (MIB + b"fill/000000".len()));
}

#[test]
fn print_bomb_is_stopped_by_fuel() {
    // WASI output is not charged per byte, but the guest pays for producing
    // it and the host keeps only a capped part: fuel ends the call (measured:
    // ~130 ms for 100M fuel in a debug build, ~30× a plain loop).
    let err = fails_cleanly(CallMode::Apply, json!({"op": "print-bomb"}));
    assert_eq!(err, CallError::OutOfFuel { fuel: FUEL });
}
