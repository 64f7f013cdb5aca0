//! Growth benchmark: memory per key, apply latency, and snapshot build/install
//! time and size as the state grows, through the node's own state machine.
//!
//! Run: `cargo bench -p cairn-host --bench growth`.
//!
//! What it does, in one process: opens the real [`StateMachine`] (the openraft
//! adapter a node runs) in a temp dir, applies a membership entry and a deploy
//! of the real `kv` component, then grows the `kv` plugin's state to each size
//! in `CAIRN_GROWTH_SIZES` (default `10000,100000,1000000`) with `put`
//! commands applied through `RaftStateMachine::apply` in batches of
//! `LOAD_BATCH_ENTRIES` (a follower catching up applies the same way). Every
//! put runs the wasm plugin in a fresh instance. Keys are 16 hex characters in
//! scrambled order (so inserts land all over the tree, not only at its end);
//! values are 100-byte JSON strings. At each size it then measures:
//!
//! * RSS (`VmRSS` of this process) and the growth since the plugin was
//!   deployed; the per-key figure is the slope between the sizes;
//! * apply latency: `CAIRN_GROWTH_SAMPLES` (default 5000) single-entry applies
//!   (overwriting random existing keys, so the size stays put), each timed
//!   around `RaftStateMachine::apply` — blocking-thread hop, O(1) state copy,
//!   wasm call, commit, publish: what one client's write costs at the state
//!   machine, without the log's fsync or HTTP; and as many `State::apply`
//!   calls alone (wasm call and copy-on-write commit) on a private copy;
//! * snapshot build: `RaftSnapshotBuilder::build_snapshot` (encode, write,
//!   fsync, rename), and its size in bytes;
//! * snapshot install: `RaftStateMachine::install_snapshot` into a second,
//!   empty state machine (checksum, decode, write, fsync), after which its
//!   state hash must equal the source's;
//! * the CPU parts of both alone (`snapshot::encode`, `snapshot::decode`),
//!   which the disk's speed does not blur;
//! * at the largest size, apply latency right after the installed copy is
//!   dropped, and while a snapshot is being built (the builder must not stall
//!   applies).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_host::raft::state_machine::StateMachine;
use cairn_host::raft::types::TypeConfig;
use cairn_host::runtime::{Runtime, RuntimeConfig};
use cairn_host::state::{Command, DeployCode, snapshot};
use futures_util::stream;
use openraft::alias::{EntryOf, EntryPayloadOf, LogIdOf};
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};

/// Puts applied per `RaftStateMachine::apply` call while growing the state
/// (the adapter's own sub-batch limit is 1024).
const LOAD_BATCH_ENTRIES: u64 = 1024;
/// An apply slower than this during a snapshot build is counted as a stall.
const SLOW_APPLY_MS: u64 = 10;
/// Applies timed right after the installed copy of the largest state is dropped.
const AFTER_DROP_APPLIES: u64 = 100;
/// Bytes of each stored value: a JSON string, quotes included.
const VALUE_BYTES: usize = 100;
/// The plugin's name in the state.
const PLUGIN: &str = "kv";
/// Fuel and memory of the deploy (the cluster defaults).
const FUEL_PER_CALL: u64 = 100_000_000;
const MEMORY_LIMIT_BYTES: u64 = 64 << 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A bijective scramble of `i` (splitmix64's finaliser), so keys are unique
/// and spread over the key space.
fn scramble(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `put` of key number `i` with a value that changes with `version`.
fn put(i: u64, version: u64) -> Vec<u8> {
    // The value is a JSON string: two quotes, a 20-digit version, filler.
    let filler = VALUE_BYTES - 2 - 20;
    format!(
        r#"{{"put":{{"key":"{:016x}","value":"{version:020}{}"}}}}"#,
        scramble(i),
        "v".repeat(filler)
    )
    .into_bytes()
}

fn log_id(index: u64) -> LogIdOf<TypeConfig> {
    LogIdOf::<TypeConfig> {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    }
}

fn entry(index: u64, payload: EntryPayloadOf<TypeConfig>) -> EntryResponder<TypeConfig> {
    (
        EntryOf::<TypeConfig> {
            log_id: log_id(index),
            payload,
        },
        None,
    )
}

fn apply_cmd(index: u64, input: Vec<u8>) -> EntryResponder<TypeConfig> {
    entry(
        index,
        EntryPayload::Normal(Command::Apply {
            plugin: PLUGIN.into(),
            input,
            timestamp_ms: index,
            idempotency_key: None,
        }),
    )
}

/// Reads a `kB` line of `/proc/self/status` in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// The state machine under test and the next free log index.
struct Node {
    sm: StateMachine,
    next_index: u64,
    keys: u64,
    rt: Arc<Runtime>,
}

impl Node {
    async fn apply(&mut self, items: Vec<EntryResponder<TypeConfig>>) {
        self.sm
            .apply(stream::iter(items.into_iter().map(Ok)))
            .await
            .expect("apply");
    }

    /// Puts new keys until the plugin holds `target` of them; entries/s.
    async fn grow_to(&mut self, target: u64) -> f64 {
        let started = Instant::now();
        let added = target - self.keys;
        while self.keys < target {
            let n = LOAD_BATCH_ENTRIES.min(target - self.keys);
            let batch = (0..n)
                .map(|k| apply_cmd(self.next_index + k, put(self.keys + k, 0)))
                .collect();
            self.apply(batch).await;
            self.next_index += n;
            self.keys += n;
        }
        added as f64 / started.elapsed().as_secs_f64()
    }

    /// Times `samples` single-entry applies overwriting random existing keys.
    async fn apply_latencies(&mut self, samples: u64, seed: u64) -> Vec<Duration> {
        let mut out = Vec::with_capacity(samples as usize);
        for s in 0..samples {
            let key = scramble(seed.wrapping_add(s)) % self.keys;
            let item = apply_cmd(self.next_index, put(key, self.next_index));
            self.next_index += 1;
            let t = Instant::now();
            self.apply(vec![item]).await;
            out.push(t.elapsed());
        }
        out.sort();
        out
    }

    /// Times `samples` calls of `State::apply` alone (the wasm call and the
    /// copy-on-write commit, then dropping the version before it, as
    /// publishing does) on a private copy of the state; nothing is kept.
    fn state_apply_latencies(&self, samples: u64, seed: u64) -> Vec<Duration> {
        let mut state = self.sm.applied().state;
        let mut out = Vec::with_capacity(samples as usize);
        for s in 0..samples {
            let key = scramble(seed.wrapping_add(s)) % self.keys;
            let index = self.next_index + s;
            let cmd = Command::Apply {
                plugin: PLUGIN.into(),
                input: put(key, index),
                timestamp_ms: index,
                idempotency_key: None,
            };
            let published = state.clone();
            let t = Instant::now();
            state.apply(&self.rt, index, &cmd).expect("no host fault");
            drop(published);
            out.push(t.elapsed());
        }
        out.sort();
        out
    }
}

struct Row {
    keys: u64,
    load_per_sec: f64,
    rss: u64,
    rss_growth: u64,
    apply: Vec<Duration>,
    state_apply: Vec<Duration>,
    snap: Snap,
}

/// Snapshot timings at one size.
struct Snap {
    /// `build_snapshot`: encode, write, fsync, rename.
    build: Duration,
    /// `install_snapshot`: checksum, decode, write, fsync.
    install: Duration,
    /// The CPU part of a build alone: `snapshot::encode`.
    encode: Duration,
    /// The CPU part of an install alone: `snapshot::decode` (checksum included).
    decode: Duration,
    bytes: usize,
}

async fn snapshot_round(node: &mut Node, dir: &Path) -> Snap {
    let state = node.sm.applied().state;
    let t = Instant::now();
    let encoded = snapshot::encode(&state, b"");
    let encode = t.elapsed();
    let t = Instant::now();
    let decoded = snapshot::decode(&encoded).expect("decode");
    let decode = t.elapsed();
    drop((decoded, encoded, state));

    let t = Instant::now();
    let snap = node
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");
    let build = t.elapsed();
    let bytes = snap.snapshot.into_inner();
    let size = bytes.len();

    let install_dir = tempfile::tempdir_in(dir).expect("tempdir");
    let mut other = StateMachine::open(install_dir.path(), node.rt.clone()).expect("open");
    let t = Instant::now();
    other
        .install_snapshot(&snap.meta, Cursor::new(bytes))
        .await
        .expect("install snapshot");
    let install = t.elapsed();
    // Determinism: the installed state is the built one, hash for hash.
    assert_eq!(
        other.applied().state.hash(),
        node.sm.applied().state.hash(),
        "installed state differs from the source"
    );
    Snap {
        build,
        install,
        encode,
        decode,
        bytes: size,
    }
}

async fn run() {
    let sizes: Vec<u64> = std::env::var("CAIRN_GROWTH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("CAIRN_GROWTH_SIZES: numbers"))
        .collect();
    let samples: u64 = env_or("CAIRN_GROWTH_SAMPLES", 5000);
    let dir = tempfile::tempdir().expect("tempdir");

    let rt = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
    let sm = StateMachine::open(&dir.path().join("sm"), rt.clone()).expect("open");
    let mut node = Node {
        sm,
        next_index: 1,
        keys: 0,
        rt,
    };
    let members = openraft::Membership::<u64, cairn_host::raft::types::Node>::new_with_defaults(
        vec![BTreeSet::from([1])],
        [1],
    );
    let deploy = Command::Deploy {
        name: PLUGIN.into(),
        code: DeployCode::Inline(cairn_host::plugins::built("kv")),
        fuel_per_call: FUEL_PER_CALL,
        memory_limit_bytes: MEMORY_LIMIT_BYTES,
        timestamp_ms: 1,
        idempotency_key: None,
    };
    node.apply(vec![
        entry(1, EntryPayload::Membership(members)),
        entry(2, EntryPayload::Normal(deploy)),
    ])
    .await;
    node.next_index = 3;
    // Warm the pool and the code paths before the baseline.
    node.grow_to(1000).await;
    let rss_base = proc_status_bytes("VmRSS");
    println!(
        "kv plugin deployed, 1000 keys; RSS {:.1} MiB; {samples} apply samples per size",
        mib(rss_base)
    );

    let mut rows = Vec::new();
    for &size in &sizes {
        let load_per_sec = node.grow_to(size).await;
        let rss = proc_status_bytes("VmRSS");
        eprintln!("{size} keys loaded; timing {samples} applies");
        let apply = node.apply_latencies(samples, size).await;
        let state_apply = node.state_apply_latencies(samples, size + 1);
        let snap = snapshot_round(&mut node, dir.path()).await;
        let row = Row {
            keys: size,
            load_per_sec,
            rss,
            rss_growth: rss.saturating_sub(rss_base),
            apply,
            state_apply,
            snap,
        };
        println!(
            "{:>9} keys: load {:>7.0}/s  RSS {:>7.1} MiB (+{:.1})  apply p50 {:.1} µs p99 {:.1} µs  \
             State::apply p50 {:.1} µs  build {:.0} ms (encode {:.0})  install {:.0} ms (decode {:.0})  \
             snapshot {} bytes",
            row.keys,
            row.load_per_sec,
            mib(row.rss),
            mib(row.rss_growth),
            us(percentile(&row.apply, 0.5)),
            us(percentile(&row.apply, 0.99)),
            us(percentile(&row.state_apply, 0.5)),
            ms(row.snap.build),
            ms(row.snap.encode),
            ms(row.snap.install),
            ms(row.snap.decode),
            row.snap.bytes
        );
        rows.push(row);
    }

    // The install's copy of the largest state was just dropped: the first
    // applies after that pay the allocator for taking the freed memory back.
    let after_drop = node.apply_latencies(AFTER_DROP_APPLIES, 1).await;
    // Applies while a snapshot of the largest state is being built.
    let builder = {
        let mut b = node.sm.get_snapshot_builder().await;
        tokio::spawn(async move { b.build_snapshot().await.expect("build") })
    };
    let mut during = Vec::new();
    while !builder.is_finished() {
        during.extend(node.apply_latencies(100, node.next_index).await);
    }
    builder.await.expect("builder task");
    during.sort();

    print_table(&rows, &during);
    println!(
        "slowest of the {AFTER_DROP_APPLIES} applies right after dropping a {}-key state: {:.1} ms",
        rows.last().map_or(0, |r| r.keys),
        after_drop.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}

fn print_table(rows: &[Row], during: &[Duration]) {
    println!();
    println!(
        "| keys | load (puts/s) | RSS MiB | RSS growth MiB | bytes/key | apply p50 / p99 µs | State::apply p50 / p99 µs | snapshot build (encode) ms | snapshot install (decode) ms | snapshot bytes | snapshot bytes/key |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} ({:.0}) | {:.0} ({:.0}) | {} | {:.1} |",
            r.keys,
            r.load_per_sec,
            mib(r.rss),
            mib(r.rss_growth),
            r.rss_growth as f64 / r.keys as f64,
            us(percentile(&r.apply, 0.5)),
            us(percentile(&r.apply, 0.99)),
            us(percentile(&r.state_apply, 0.5)),
            us(percentile(&r.state_apply, 0.99)),
            ms(r.snap.build),
            ms(r.snap.encode),
            ms(r.snap.install),
            ms(r.snap.decode),
            r.snap.bytes,
            r.snap.bytes as f64 / r.keys as f64
        );
    }
    if let [.., a, b] = rows {
        let slope = (b.rss as f64 - a.rss as f64) / (b.keys - a.keys) as f64;
        println!();
        println!(
            "RSS per 1M keys (slope {} → {} keys): {:.0} MiB ({slope:.0} bytes/key); peak RSS (VmHWM) {:.1} MiB",
            a.keys,
            b.keys,
            slope * 1e6 / (1024.0 * 1024.0),
            mib(proc_status_bytes("VmHWM"))
        );
    }
    if !during.is_empty() {
        println!(
            "apply while a {}-key snapshot is built: {} applies, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs, {} over {SLOW_APPLY_MS} ms",
            rows.last().map_or(0, |r| r.keys),
            during.len(),
            us(percentile(during, 0.5)),
            us(percentile(during, 0.99)),
            us(*during.last().expect("non-empty")),
            during
                .iter()
                .filter(|d| **d > Duration::from_millis(SLOW_APPLY_MS))
                .count()
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run());
}
