//! Concurrent clients on a real 3-node cluster, across a leader stop and across a SIGSTOPped leader that wakes: the recorded kv history must be linearizable.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value as Json, json};

use super::Rng;
use super::checker::{Call, Observed, Op, Outcome, Ret, Value, check};
use crate::harness::{Cluster, WAIT, eventually, send_to};
use crate::http_node::wait_agreed_leader;
use crate::process::{ProcCluster, ProcNode};

const CLIENTS: usize = 6;
const OPS_PER_CLIENT: usize = 150;
/// Fewer for the variant on real (debug-built) processes, which apply slower.
const PAUSED_OPS_PER_CLIENT: usize = 80;
const KEYS: [&str; 3] = ["k1", "k2", "k3"];
/// Pause after an Unknown outcome: paces clients through the election instead of
/// burning their whole op budget on errors before a new leader exists.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Ops the other clients should finish while the leader is paused (most
/// clients soon wait on the paused node, so this is bounded by a timeout).
const PAUSED_PROGRESS_OPS: usize = 20;
const PAUSED_PROGRESS_WAIT: Duration = Duration::from_secs(3);

/// Shared state of the clients.
struct Shared {
    /// Logical clock for invoke/response stamps: one `SeqCst` counter gives a total
    /// order consistent with real time (a response stamped before an invoke was
    /// stamped really did happen first).
    clock: AtomicU64,
    /// Addresses clients may send to; the leader is removed before it is stopped.
    live: Mutex<Vec<String>>,
    /// Ops finished so far (to pick the moment to stop the leader).
    done: AtomicUsize,
}

impl Shared {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }
}

fn seed() -> u64 {
    std::env::var("CAIRN_LIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

fn json_value(v: &Json) -> Option<Value> {
    v.as_u64()
}

/// Parses the kv plugin's mismatch message `expected <json>, current <json>`.
fn mismatch_current(body: &Json) -> Observed {
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    let Some((_, current)) = msg.rsplit_once(", current ") else {
        return Observed::NotReported;
    };
    match serde_json::from_str::<Json>(current) {
        Ok(Json::Null) => Observed::Was(None),
        Ok(v) => v
            .as_u64()
            .map_or(Observed::NotReported, |v| Observed::Was(Some(v))),
        Err(_) => Observed::NotReported,
    }
}

/// One request's outcome; anything but a definite success or cas mismatch is Unknown
/// (a 503 before forwarding could be treated as "not applied", but Unknown is always safe).
fn outcome(call: Call, status: u16, body: &[u8]) -> Outcome {
    let Ok(body) = serde_json::from_slice::<Json>(body) else {
        return Outcome::Unknown;
    };
    match (call, status) {
        (Call::Put(_), 200) => Outcome::Ok(Ret::PutOk {
            previous: Observed::Was(json_value(&body["previous"])),
        }),
        (Call::Get, 200) => Outcome::Ok(Ret::GetOk(json_value(&body["value"]))),
        (Call::Cas { .. }, 200) => Outcome::Ok(Ret::CasOk),
        (Call::Cas { .. }, 422) if body["error"]["code"] == "cas-mismatch" => {
            Outcome::Ok(Ret::CasMismatch {
                current: mismatch_current(&body),
            })
        }
        _ => Outcome::Unknown,
    }
}

/// One client: `ops_per_client` random ops on random keys through random live nodes.
/// Returns its ops and, per op, the HTTP status and error code it saw.
async fn client(
    id: usize,
    seed: u64,
    ops_per_client: usize,
    shared: Arc<Shared>,
) -> (Vec<Op>, Vec<String>) {
    let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x9E37_79B9));
    let http = cairn_host::http_client::new_client();
    // Last value this client saw per key: cas expectations that often succeed.
    let mut seen: [Option<Value>; KEYS.len()] = [None; KEYS.len()];
    let (mut ops, mut statuses) = (Vec::new(), Vec::new());
    for seq in 0..ops_per_client {
        let k = rng.below(KEYS.len() as u64) as usize;
        let key = KEYS[k];
        // Unique per write, so a read names the write it observed.
        let value = (id as u64 + 1) * 1_000_000 + seq as u64;
        let call = match rng.below(10) {
            0..=2 => Call::Put(value),
            3..=6 => Call::Get,
            _ => Call::Cas {
                expected: seen[k],
                new: value,
            },
        };
        let (path, body) = match call {
            Call::Put(v) => ("apply", json!({"put": {"key": key, "value": v}})),
            Call::Get => ("query", json!({"get": {"key": key}})),
            Call::Cas { expected, new } => (
                "apply",
                json!({"cas": {"key": key, "expected": expected, "new": new}}),
            ),
        };
        let addr = {
            let live = shared.live.lock().unwrap();
            live[rng.below(live.len() as u64) as usize].clone()
        };
        let path = format!("/v1/plugins/kv/{path}");
        let body = serde_json::to_vec(&body).expect("json");
        let invoke = shared.tick();
        let resp = send_to(&http, &addr, Method::POST, &path, &[], body.into()).await;
        let response = shared.tick();
        let outcome = match &resp {
            Ok(r) => {
                let code = r.code().map_or(String::new(), |c| format!(" {c}"));
                statuses.push(format!("{}{code}", r.status));
                outcome(call, r.status, &r.body)
            }
            Err(_) => {
                statuses.push("transport error".to_string());
                Outcome::Unknown
            }
        };
        match outcome {
            Outcome::Ok(Ret::GetOk(v)) => seen[k] = v,
            Outcome::Ok(Ret::PutOk { .. } | Ret::CasOk) => seen[k] = Some(value),
            Outcome::Ok(Ret::CasMismatch {
                current: Observed::Was(v),
            }) => seen[k] = v,
            _ => {}
        }
        ops.push(Op {
            client: id,
            key: key.to_string(),
            call,
            outcome,
            invoke,
            response,
        });
        shared.done.fetch_add(1, Ordering::SeqCst);
        if outcome == Outcome::Unknown {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    (ops, statuses)
}

/// Runs `CLIENTS` clients over `addrs`; when a third of the ops are done,
/// `nemesis` disturbs the leader (its address is `leader_addr`) and returns;
/// then checks the whole history. Returns the summary line.
async fn run_and_check<F, Fut>(
    seed: u64,
    ops_per_client: usize,
    addrs: Vec<String>,
    nemesis: F,
) -> anyhow::Result<String>
where
    F: FnOnce(Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let shared = Arc::new(Shared {
        clock: AtomicU64::new(0),
        live: Mutex::new(addrs),
        done: AtomicUsize::new(0),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(id, seed, ops_per_client, shared.clone())))
        .collect();

    // Disturb the leader a third of the way through, so most ops run across the failover.
    let total = CLIENTS * ops_per_client;
    eventually(WAIT, "a third of the ops done", || async {
        Ok((shared.done.load(Ordering::SeqCst) >= total / 3).then_some(()))
    })
    .await?;
    let disturbed_at = shared.tick();
    nemesis(shared.clone()).await?;

    let mut history = Vec::with_capacity(total);
    let mut statuses = Vec::with_capacity(total);
    for c in clients {
        let (ops, st) = c.await?;
        history.extend(ops);
        statuses.extend(st);
    }
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for s in statuses {
        *by_status.entry(s).or_default() += 1;
    }
    let unknown = history
        .iter()
        .filter(|o| o.outcome == Outcome::Unknown)
        .count();
    let ok_after = history
        .iter()
        .filter(|o| o.invoke > disturbed_at && o.outcome != Outcome::Unknown)
        .count();
    let summary = format!(
        "seed {seed}: {} ops, {unknown} unknown, {ok_after} definite after the leader was disturbed, outcomes {by_status:?}",
        history.len()
    );
    eprintln!("{summary}");
    // The failover must actually have been exercised by the history, not only survived.
    assert!(
        ok_after >= 100,
        "too few ops after the leader was disturbed: {summary}"
    );
    assert!(unknown < total / 4, "too many unknown outcomes: {summary}");

    let checking = Instant::now();
    if let Err(failure) = check(&history) {
        let mut dump = String::new();
        let mut sorted: Vec<&Op> = history.iter().collect();
        sorted.sort_by_key(|o| o.invoke);
        for o in sorted {
            dump.push_str(&format!("\n  {} {o}", o.key));
        }
        panic!("{failure}\n{summary}\nfull history by invocation:{dump}");
    }
    eprintln!("history checked in {:?}", checking.elapsed());
    Ok(summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_are_linearizable() -> anyhow::Result<()> {
    let seed = seed();
    // Timing is not replayable, but client choices (keys, ops, nodes) are.
    eprintln!("linearizability seed {seed} (set CAIRN_LIN_SEED={seed} to replay client choices)");
    let started = Instant::now();
    let mut cluster = Cluster::start(3).await?;
    let leader = cluster.wait_leader().await?;
    let kv = cairn_host::plugins::example("kv").expect("kv embedded");
    cluster.node(leader).deploy("kv", kv).await?.expect(201)?;
    // Every node must know the plugin before clients spread over them.
    cluster.converge().await?;

    let addrs = cluster.running().map(|n| n.addr().to_string()).collect();
    let leader_addr = cluster.node(leader).addr().to_string();
    let cluster_ref = &mut cluster;
    run_and_check(seed, OPS_PER_CLIENT, addrs, |shared| async move {
        // Clients stop sending to the leader before it stops.
        shared.live.lock().unwrap().retain(|a| *a != leader_addr);
        cluster_ref.node_mut(leader).stop().await?;
        let new_leader = cluster_ref.wait_leader().await?;
        assert_ne!(new_leader, leader);
        Ok(())
    })
    .await?;
    eprintln!("whole test {:?}", started.elapsed());
    cluster.stop_all().await
}

/// The leader is SIGSTOPped while clients keep sending to every node, the
/// paused one included (their requests wait in its sockets), and woken once
/// the others elected a new leader and took writes: whatever it answers after
/// waking (reads from a lease that expired while it slept, above all) must
/// keep the history linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn histories_are_linearizable_across_a_paused_leader() -> anyhow::Result<()> {
    let seed = seed();
    eprintln!("linearizability seed {seed} (set CAIRN_LIN_SEED={seed} to replay client choices)");
    let cluster = ProcCluster::start(3, &[]).await?;
    let leader = cluster.wait_leader().await?;
    cluster.deploy_kv(leader).await?;
    cluster.converge().await?;

    let addrs = cluster.nodes.iter().map(|n| n.addr()).collect();
    let cluster_ref = &cluster;
    run_and_check(seed, PAUSED_OPS_PER_CLIENT, addrs, |shared| async move {
        cluster_ref.node(leader).pause()?;
        let others: Vec<&ProcNode> = cluster_ref
            .nodes
            .iter()
            .filter(|n| n.id != leader)
            .collect();
        let new_leader = wait_agreed_leader(&others, WAIT).await?;
        assert_ne!(new_leader, leader);
        // Let the clients that are not stuck on the paused node write through
        // the new leader, so reads queued at the old one have something to miss.
        let done = shared.done.load(Ordering::SeqCst);
        let _ = eventually(
            PAUSED_PROGRESS_WAIT,
            "ops done while the leader sleeps",
            || async {
                Ok(
                    (shared.done.load(Ordering::SeqCst) >= done + PAUSED_PROGRESS_OPS)
                        .then_some(()),
                )
            },
        )
        .await;
        cluster_ref.node(leader).resume()
    })
    .await?;
    cluster.converge().await?;
    cluster.finish().await
}
