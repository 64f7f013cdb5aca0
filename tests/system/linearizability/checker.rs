//! Linearizability checker for key-value register histories (Wing & Gong search with Lowe's memoisation, as in Porcupine).
//!
//! Linearizability is local: a history is linearizable iff its restriction to every
//! key is, so [`check`] partitions by key and searches each key on its own, which
//! keeps the search space (and the memo) per key small.
//!
//! Per key the history becomes a doubly linked list of call and return events in
//! time order. The search walks it: at a call it tries to linearize that op now
//! (the model must accept it); at a return it has hit an op that must already have
//! taken effect but has not, so it backtracks. Every (set of linearized ops, model
//! state) pair is visited at most once, which is what makes it tractable.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A register value. Tests use unique values per write so a read names the write it saw.
pub type Value = u64;

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Put(Value),
    Get,
    /// Set to `new` iff the register holds `expected` (`None`: absent).
    Cas {
        expected: Option<Value>,
        new: Value,
    },
}

/// A value the server may or may not have reported alongside a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    NotReported,
    /// The register held this (`None`: absent).
    Was(Option<Value>),
}

impl Observed {
    fn admits(self, state: Option<Value>) -> bool {
        match self {
            Observed::NotReported => true,
            Observed::Was(v) => v == state,
        }
    }
}

/// A definite result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// The put took effect; `previous` is what it replaced, if reported.
    PutOk {
        previous: Observed,
    },
    /// The read returned this (`None`: absent).
    GetOk(Option<Value>),
    CasOk,
    /// The cas did not apply; `current` is what the register held, if reported.
    CasMismatch {
        current: Observed,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok(Ret),
    /// Timeout, transport error or 5xx: it may or may not have taken effect, at any
    /// time after its invocation. Modelled as returning at +infinity.
    Unknown,
}

/// One client operation. Times come from one monotonic clock shared by all clients:
/// `a.response < b.invoke` must mean `a` finished before `b` started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub client: usize,
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
    pub invoke: u64,
    /// Ignored when the outcome is `Unknown`.
    pub response: u64,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |v: Option<Value>| v.map_or("nil".to_string(), |v| v.to_string());
        let obs = |o: Observed| match o {
            Observed::NotReported => String::new(),
            Observed::Was(x) => format!(" (was {})", v(x)),
        };
        write!(f, "c{} [{}..", self.client, self.invoke)?;
        match self.outcome {
            Outcome::Unknown => write!(f, "inf] ")?,
            Outcome::Ok(_) => write!(f, "{}] ", self.response)?,
        }
        match self.call {
            Call::Put(x) => write!(f, "put({x})")?,
            Call::Get => write!(f, "get()")?,
            Call::Cas { expected, new } => write!(f, "cas({}->{new})", v(expected))?,
        }
        match self.outcome {
            Outcome::Unknown => write!(f, " -> unknown"),
            Outcome::Ok(Ret::PutOk { previous }) => write!(f, " -> ok{}", obs(previous)),
            Outcome::Ok(Ret::GetOk(x)) => write!(f, " -> {}", v(x)),
            Outcome::Ok(Ret::CasOk) => write!(f, " -> ok"),
            Outcome::Ok(Ret::CasMismatch { current }) => write!(f, " -> mismatch{}", obs(current)),
        }
    }
}

/// Why a history was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No linearization exists for this key.
    NotLinearizable { key: String, explanation: String },
    /// The search exceeded its memo budget; nothing is proven either way.
    GaveUp { key: String, states: usize },
    /// The history itself is malformed (e.g. a get with a cas result).
    Malformed(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotLinearizable { key, explanation } => {
                write!(f, "key {key:?} is not linearizable: {explanation}")
            }
            Failure::GaveUp { key, states } => {
                write!(f, "gave up on key {key:?} after {states} memoised states")
            }
            Failure::Malformed(m) => write!(f, "malformed history: {m}"),
        }
    }
}

/// Memo entries per key before giving up (each is a bitset of ~n/64 words).
const STATE_BUDGET: usize = 2_000_000;

/// Checks the whole history, key by key, with a register that starts absent.
pub fn check(ops: &[Op]) -> Result<(), Failure> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    for (key, ops) in by_key {
        check_key(key, &ops)?;
    }
    Ok(())
}

/// The model: the register after `op`, or `None` if `op` cannot happen in `state`.
fn step(state: Option<Value>, op: &Op) -> Option<Option<Value>> {
    match (op.call, op.outcome) {
        (Call::Put(v), Outcome::Ok(Ret::PutOk { previous })) => {
            previous.admits(state).then_some(Some(v))
        }
        (Call::Put(v), Outcome::Unknown) => Some(Some(v)),
        (Call::Get, Outcome::Ok(Ret::GetOk(v))) => (v == state).then_some(state),
        (Call::Cas { expected, new }, Outcome::Ok(Ret::CasOk)) => {
            (state == expected).then_some(Some(new))
        }
        (Call::Cas { expected, .. }, Outcome::Ok(Ret::CasMismatch { current })) => {
            (state != expected && current.admits(state)).then_some(state)
        }
        // Whether an unknown cas applied is decided by the state it is linearized in.
        (Call::Cas { expected, new }, Outcome::Unknown) => {
            Some(if state == expected { Some(new) } else { state })
        }
        // Rejected up front by `prepare`.
        _ => None,
    }
}

/// The value an op's result proves the register held, if any.
fn observes(op: &Op) -> Option<Option<Value>> {
    match (op.call, op.outcome) {
        (_, Outcome::Ok(Ret::GetOk(v))) => Some(v),
        (
            _,
            Outcome::Ok(Ret::PutOk {
                previous: Observed::Was(v),
            }),
        ) => Some(v),
        (
            _,
            Outcome::Ok(Ret::CasMismatch {
                current: Observed::Was(v),
            }),
        ) => Some(v),
        (Call::Cas { expected, .. }, Outcome::Ok(Ret::CasOk)) => Some(expected),
        _ => None,
    }
}

/// Validates the ops of one key and drops those that cannot constrain the search:
///
/// - unknown gets (a read with no result says nothing);
/// - unknown writes whose value nobody ever observed, provided every cas mismatch on
///   the key reports the current value. Such a write can always be linearized last,
///   after everything, so dropping it changes nothing; and only a mismatch that does
///   *not* report the current value could ever need an unobserved value in between.
///   Without this, every unknown write during an election would double the memo.
fn prepare<'a>(key: &str, ops: &[&'a Op]) -> Result<Vec<&'a Op>, Failure> {
    for op in ops {
        let ok = matches!(
            (op.call, op.outcome),
            (_, Outcome::Unknown)
                | (Call::Put(_), Outcome::Ok(Ret::PutOk { .. }))
                | (Call::Get, Outcome::Ok(Ret::GetOk(_)))
                | (
                    Call::Cas { .. },
                    Outcome::Ok(Ret::CasOk | Ret::CasMismatch { .. })
                )
        );
        if !ok {
            return Err(Failure::Malformed(format!(
                "key {key:?}: call/result mismatch: {op}"
            )));
        }
        if matches!(op.outcome, Outcome::Ok(_)) && op.response < op.invoke {
            return Err(Failure::Malformed(format!(
                "key {key:?}: responds before invoked: {op}"
            )));
        }
    }
    let observed: HashSet<Value> = ops.iter().filter_map(|o| observes(o).flatten()).collect();
    let blind_mismatch = ops.iter().any(|o| {
        matches!(
            o.outcome,
            Outcome::Ok(Ret::CasMismatch {
                current: Observed::NotReported
            })
        )
    });
    Ok(ops
        .iter()
        .copied()
        .filter(|o| match (o.call, o.outcome) {
            (Call::Get, Outcome::Unknown) => false,
            (Call::Put(v) | Call::Cas { new: v, .. }, Outcome::Unknown) => {
                blind_mismatch || observed.contains(&v)
            }
            _ => true,
        })
        .collect())
}

/// A fixed-size bitset of linearized ops; the memo key together with the model state.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The deepest dead end of the search, kept to explain a violation.
struct DeadEnd {
    /// Ops linearized so far, in order.
    prefix: Vec<usize>,
    /// The register after them.
    state: Option<Value>,
    /// The op whose response was reached without it being linearizable.
    stuck: usize,
    /// Ops invoked before that response and not yet linearized.
    pending: Vec<usize>,
}

/// Checks one key's ops.
pub fn check_key(key: &str, ops: &[&Op]) -> Result<(), Failure> {
    let ops = prepare(key, ops)?;
    let n = ops.len();
    if n == 0 {
        return Ok(());
    }

    // Events: (time, is_return, op). Calls sort before returns at equal times, so
    // touching ops count as concurrent (the permissive reading). Unknown ops return at
    // +infinity: they may take effect at any point after their invocation.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoke, false, i));
        let resp = match op.outcome {
            Outcome::Unknown => u64::MAX,
            Outcome::Ok(_) => op.response,
        };
        events.push((resp, true, i));
    }
    events.sort_unstable();

    // Linked list over node indices: 0 is the head sentinel, 1..=2n the events,
    // 2n+1 the tail sentinel.
    const HEAD: usize = 0;
    let tail = 2 * n + 1;
    let mut next: Vec<usize> = (1..=tail + 1).collect();
    let mut prev: Vec<usize> = (0..=tail).map(|i| i.saturating_sub(1)).collect();
    let mut is_call = vec![false; tail + 1];
    let mut op_of = vec![usize::MAX; tail + 1];
    let mut mate = vec![usize::MAX; tail + 1];
    let mut call_node = vec![0; n];
    for (pos, &(_, is_ret, i)) in events.iter().enumerate() {
        let node = pos + 1;
        op_of[node] = i;
        is_call[node] = !is_ret;
        if is_ret {
            mate[call_node[i]] = node;
            mate[node] = call_node[i];
        } else {
            call_node[i] = node;
        }
    }

    // Removes a call and its return from the list (they stay linked to their old
    // neighbours so `unlift` can reinsert them in reverse order).
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        let ret = mate[call];
        next[prev[call]] = next[call];
        prev[next[call]] = prev[call];
        next[prev[ret]] = next[ret];
        prev[next[ret]] = prev[ret];
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, call: usize| {
        let ret = mate[call];
        next[prev[ret]] = ret;
        prev[next[ret]] = ret;
        next[prev[call]] = call;
        prev[next[call]] = call;
    };

    let mut state: Option<Value> = None;
    let mut bits = Bits::new(n);
    let mut memo: HashSet<(Bits, Option<Value>)> = HashSet::new();
    // (call node, state before it) for each op linearized so far, in order.
    let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
    let mut deepest: Option<DeadEnd> = None;

    let mut entry = next[HEAD];
    while next[HEAD] != tail {
        if is_call[entry] {
            let i = op_of[entry];
            if let Some(new_state) = step(state, ops[i]) {
                bits.set(i);
                if memo.insert((bits.clone(), new_state)) {
                    if memo.len() > STATE_BUDGET {
                        return Err(Failure::GaveUp {
                            key: key.to_string(),
                            states: memo.len(),
                        });
                    }
                    stack.push((entry, state));
                    state = new_state;
                    lift(&mut next, &mut prev, entry);
                    entry = next[HEAD];
                    continue;
                }
                bits.clear(i);
            }
            entry = next[entry];
        } else {
            // The op returning here was not linearized and nothing before it can be:
            // this prefix is a dead end.
            if deepest
                .as_ref()
                .is_none_or(|d| stack.len() > d.prefix.len())
            {
                let mut pending = Vec::new();
                let mut e = next[HEAD];
                while e != entry {
                    if is_call[e] {
                        pending.push(op_of[e]);
                    }
                    e = next[e];
                }
                deepest = Some(DeadEnd {
                    prefix: stack.iter().map(|&(c, _)| op_of[c]).collect(),
                    state,
                    stuck: op_of[entry],
                    pending,
                });
            }
            let Some((call, before)) = stack.pop() else {
                let d = deepest.expect("recorded above");
                return Err(Failure::NotLinearizable {
                    key: key.to_string(),
                    explanation: explain(&ops, &d),
                });
            };
            state = before;
            bits.clear(op_of[call]);
            unlift(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Ok(())
}

/// Describes the deepest dead end: the tail of the longest linearizable prefix, the
/// register value there, the op that had to take effect but could not, and the ops
/// concurrent with it that could have gone first.
fn explain(ops: &[&Op], dead_end: &DeadEnd) -> String {
    const SHOWN: usize = 8;
    let DeadEnd {
        prefix,
        state,
        stuck,
        pending,
    } = dead_end;
    let stuck = *stuck;
    let mut s = format!(
        "longest linearizable prefix has {} of {} ops",
        prefix.len(),
        ops.len()
    );
    let skip = prefix.len().saturating_sub(SHOWN);
    s.push_str(&format!("; its last {}:", prefix.len() - skip));
    for &i in &prefix[skip..] {
        s.push_str(&format!("\n    {}", ops[i]));
    }
    let v = state.map_or("nil".to_string(), |v| v.to_string());
    s.push_str(&format!(
        "\n  register then holds {v}; this op must take effect before its response but cannot:\n    {}",
        ops[stuck]
    ));
    let others: Vec<_> = pending.iter().filter(|&&i| i != stuck).collect();
    if !others.is_empty() {
        s.push_str("\n  ops invoked but not yet linearized at that point:");
        for &&i in others.iter().take(SHOWN) {
            s.push_str(&format!("\n    {}", ops[i]));
        }
        if others.len() > SHOWN {
            s.push_str(&format!("\n    ... and {} more", others.len() - SHOWN));
        }
    }
    s
}
