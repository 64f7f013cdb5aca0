//! Unit tests for the checker: linearizable histories pass, known violations fail, and large concurrent histories stay fast.

use std::time::{Duration, Instant};

use super::Rng;
use super::checker::{Call, Failure, Observed, Op, Outcome, Ret, Value, check};

const K: &str = "k";

fn op(client: usize, invoke: u64, response: u64, call: Call, outcome: Outcome) -> Op {
    Op {
        client,
        key: K.to_string(),
        call,
        outcome,
        invoke,
        response,
    }
}

fn put(c: usize, i: u64, r: u64, v: Value) -> Op {
    let previous = Observed::NotReported;
    op(c, i, r, Call::Put(v), Outcome::Ok(Ret::PutOk { previous }))
}

fn put_prev(c: usize, i: u64, r: u64, v: Value, prev: Option<Value>) -> Op {
    let previous = Observed::Was(prev);
    op(c, i, r, Call::Put(v), Outcome::Ok(Ret::PutOk { previous }))
}

fn put_unknown(c: usize, i: u64, v: Value) -> Op {
    op(c, i, 0, Call::Put(v), Outcome::Unknown)
}

fn get(c: usize, i: u64, r: u64, v: Option<Value>) -> Op {
    op(c, i, r, Call::Get, Outcome::Ok(Ret::GetOk(v)))
}

fn cas(c: usize, i: u64, r: u64, expected: Option<Value>, new: Value, ok: bool) -> Op {
    let ret = if ok {
        Ret::CasOk
    } else {
        Ret::CasMismatch {
            current: Observed::NotReported,
        }
    };
    op(c, i, r, Call::Cas { expected, new }, Outcome::Ok(ret))
}

fn assert_violation(ops: &[Op]) -> String {
    match check(ops) {
        Err(Failure::NotLinearizable { key, explanation }) => {
            assert_eq!(key, K);
            explanation
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn sequential_history_passes() {
    let h = [
        get(0, 0, 1, None),
        put_prev(0, 2, 3, 1, None),
        get(1, 4, 5, Some(1)),
        cas(1, 6, 7, Some(1), 2, true),
        cas(0, 8, 9, Some(1), 3, false),
        get(0, 10, 11, Some(2)),
        cas(1, 12, 13, Some(2), 4, true),
        put_prev(0, 14, 15, 5, Some(4)),
    ];
    assert_eq!(check(&h), Ok(()));
}

#[test]
fn concurrent_put_and_gets_pass() {
    // A slow put overlaps reads that see the old and then the new value.
    let h = [
        put(0, 0, 1, 1),
        put(0, 2, 20, 2),
        get(1, 3, 4, Some(1)),
        get(2, 5, 9, Some(2)),
        get(1, 6, 7, Some(2)),
        get(3, 8, 25, Some(2)),
    ];
    assert_eq!(check(&h), Ok(()));
    // Overlapping concurrent writes may land in either order.
    let h = [put(0, 0, 10, 1), put(1, 1, 10, 2), get(2, 11, 12, Some(1))];
    assert_eq!(check(&h), Ok(()));
}

#[test]
fn unknown_put_that_applied_or_not_passes() {
    // Applied, and seen long after the client gave up on it.
    let h = [
        put(0, 0, 1, 1),
        put_unknown(1, 2, 2),
        get(0, 10, 11, Some(1)),
        get(0, 50, 51, Some(2)),
        get(2, 52, 53, Some(2)),
    ];
    assert_eq!(check(&h), Ok(()));
    // Never applied.
    let h = [
        put(0, 0, 1, 1),
        put_unknown(1, 2, 2),
        get(0, 10, 11, Some(1)),
        get(2, 50, 51, Some(1)),
    ];
    assert_eq!(check(&h), Ok(()));
    // Never applied, with a cas mismatch that does not report the current value (the
    // unknown write is then kept rather than pruned, and must be placed last).
    let h = [
        put(0, 0, 1, 1),
        put_unknown(1, 2, 2),
        cas(0, 10, 11, Some(7), 8, false),
        get(2, 50, 51, Some(1)),
    ];
    assert_eq!(check(&h), Ok(()));
    // An unknown cas that applied.
    let h = [
        put(0, 0, 1, 1),
        op(
            1,
            2,
            0,
            Call::Cas {
                expected: Some(1),
                new: 3,
            },
            Outcome::Unknown,
        ),
        get(0, 10, 11, Some(3)),
    ];
    assert_eq!(check(&h), Ok(()));
    // Unknown gets carry no information and are ignored.
    let h = [put(0, 0, 1, 1), op(1, 2, 0, Call::Get, Outcome::Unknown)];
    assert_eq!(check(&h), Ok(()));
}

#[test]
fn stale_read_after_completed_put_fails() {
    let h = [put(0, 0, 1, 1), get(1, 2, 3, None)];
    let why = assert_violation(&h);
    assert!(why.contains("get() -> nil"), "{why}");
    let h = [put(0, 0, 1, 1), put(0, 2, 3, 2), get(1, 4, 5, Some(1))];
    assert_violation(&h);
}

#[test]
fn contradictory_read_orders_fail() {
    // Two concurrent puts; one reader sees 1 then 2, the other 2 then 1.
    let h = [
        put(0, 0, 100, 1),
        put(1, 0, 100, 2),
        get(2, 10, 20, Some(1)),
        get(2, 30, 40, Some(2)),
        get(3, 10, 20, Some(2)),
        get(3, 30, 40, Some(1)),
    ];
    assert_violation(&h);
}

#[test]
fn cas_against_overwritten_value_fails() {
    let h = [
        put(0, 0, 1, 1),
        put(1, 2, 3, 2),
        cas(2, 4, 5, Some(1), 3, true),
    ];
    assert_violation(&h);
    // And the converse: a mismatch although the expected value was in place.
    let h = [put(0, 0, 1, 1), cas(2, 4, 5, Some(1), 3, false)];
    assert_violation(&h);
}

#[test]
fn other_violations_fail() {
    // A value read before the (unknown) write of it was even invoked.
    let h = [get(0, 0, 1, Some(5)), put_unknown(1, 2, 5)];
    assert_violation(&h);
    // A put reporting a previous value the register never held then.
    let h = [put(0, 0, 1, 1), put_prev(0, 2, 3, 2, None)];
    assert_violation(&h);
    // A cas mismatch reporting a current value that contradicts the history.
    let mismatch = Ret::CasMismatch {
        current: Observed::Was(Some(9)),
    };
    let h = [
        put(0, 0, 1, 1),
        op(
            1,
            2,
            3,
            Call::Cas {
                expected: Some(4),
                new: 5,
            },
            Outcome::Ok(mismatch),
        ),
    ];
    assert_violation(&h);
}

#[test]
fn keys_are_checked_independently_and_explained() {
    let mut h = vec![put(0, 0, 1, 1), get(1, 2, 3, Some(1))];
    let mut other = put(0, 0, 1, 1);
    other.key = "other".into();
    h.push(other);
    let mut stale = get(1, 4, 5, None);
    stale.key = "other".into();
    h.push(stale);
    match check(&h) {
        Err(Failure::NotLinearizable { key, explanation }) => {
            assert_eq!(key, "other");
            assert!(explanation.contains("c0 [0..1] put(1)"), "{explanation}");
            assert!(
                explanation.contains("c1 [4..5] get() -> nil"),
                "{explanation}"
            );
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn malformed_history_is_rejected() {
    let h = [op(0, 0, 1, Call::Get, Outcome::Ok(Ret::CasOk))];
    assert!(matches!(check(&h), Err(Failure::Malformed(_))));
}

/// A linearizable history of `n` ops by `clients` concurrent clients on one key:
/// each op takes effect at a random point inside its interval, and results are
/// computed from the register in that order. Some writes end Unknown (applied or not).
fn simulate(seed: u64, n: usize, clients: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    // (linearization point, op, whether an unknown write applied)
    let mut planned: Vec<(u64, Op, bool)> = Vec::with_capacity(n);
    let mut free_at = vec![0u64; clients];
    for next_value in 1..=n as u64 {
        let c = rng.below(clients as u64) as usize;
        let invoke = free_at[c] + rng.below(5) * 2;
        // Even times for invocations/linearization, odd for responses: no ties.
        let lin = invoke + 2 + rng.below(20) * 2;
        let response = lin + 1 + rng.below(20) * 2;
        free_at[c] = response + 1;
        let call = match rng.below(10) {
            0..=2 => Call::Get,
            3..=6 => Call::Put(next_value),
            _ => Call::Cas {
                expected: Some(next_value.saturating_sub(1 + rng.below(2))),
                new: next_value,
            },
        };
        let unknown = !matches!(call, Call::Get) && rng.below(20) == 0;
        let outcome = if unknown {
            Outcome::Unknown
        } else {
            Outcome::Ok(Ret::CasOk)
        };
        let applied = !unknown || rng.below(2) == 0;
        planned.push((lin, op(c, invoke, response, call, outcome), applied));
    }
    planned.sort_by_key(|p| p.0);
    let mut state: Option<Value> = None;
    planned
        .into_iter()
        .map(|(_, mut o, applied)| {
            let known = matches!(o.outcome, Outcome::Ok(_));
            let before = state;
            match o.call {
                Call::Get => o.outcome = Outcome::Ok(Ret::GetOk(state)),
                Call::Put(v) => {
                    if applied {
                        state = Some(v);
                    }
                    if known {
                        let previous = Observed::Was(before);
                        o.outcome = Outcome::Ok(Ret::PutOk { previous });
                    }
                }
                Call::Cas { expected, new } => {
                    if applied && state == expected {
                        state = Some(new);
                    }
                    if known {
                        o.outcome = Outcome::Ok(if before == expected {
                            Ret::CasOk
                        } else {
                            Ret::CasMismatch {
                                current: Observed::Was(before),
                            }
                        });
                    }
                }
            }
            o
        })
        .collect()
}

#[test]
fn large_concurrent_histories_are_checked_quickly() {
    for (seed, clients) in [(1, 4), (2, 8), (3, 8)] {
        let mut h = simulate(seed, 1000, clients);
        let start = Instant::now();
        assert_eq!(check(&h), Ok(()), "seed {seed}");
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "seed {seed} took {took:?}");

        // Append a read of the value from before the last completed write: a stale read
        // the search must exhaust every alternative to reject.
        let end = h.iter().map(|o| o.response).max().unwrap_or(0) + 10;
        let written: Vec<Value> = h
            .iter()
            .filter_map(|o| match (o.call, o.outcome) {
                (Call::Put(v), Outcome::Ok(_)) => Some(v),
                _ => None,
            })
            .collect();
        let last = *written.last().expect("some put");
        h.push(put(99, end, end + 1, last + 1_000_000));
        h.push(get(99, end + 2, end + 3, Some(last)));
        let start = Instant::now();
        assert_violation(&h);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "seed {seed} took {took:?}");
    }
}
