//! Runtime benchmark: compile time, fresh-instance call latency and throughput
//! for `counter` and `kv`, next to the same plugins run natively (no Wasm) and
//! to a fresh instance that runs nothing (wasmtime's share of every call).
//!
//! Run: `cargo bench -p cairn-host --bench runtime` (set `CAIRN_BENCH_CALLS` to
//! change the number of calls per case, default 20000).

use std::time::{Duration, Instant};

use cairn_host::plugins::built;
use cairn_host::runtime::{
    CallContext, CallMode, Code, EngineParams, Kv, Limits, Runtime, RuntimeConfig,
};
use cairn_sdk::MockHost;

struct Case {
    plugin: &'static str,
    /// Input of call `i`.
    input: fn(usize) -> String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut samples: Vec<Duration>, total: Duration) {
    samples.sort();
    let n = samples.len();
    println!(
        "{label:<28} calls={n:<7} p50={:>8.2}µs p99={:>8.2}µs  {:>10.0} calls/s (one core)",
        percentile(&samples, 0.50).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        n as f64 / total.as_secs_f64()
    );
}

fn bench_wasm(case: &Case, calls: usize) {
    let wasm = built(case.plugin);
    // Compile time on a cold runtime (no cache), best of three.
    let compile = (0..3)
        .map(|_| {
            let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
            let t = Instant::now();
            rt.validate(&wasm, EngineParams::default(), usize::MAX)
                .expect("plugin validates");
            t.elapsed()
        })
        .min()
        .expect("three runs");
    println!(
        "{:<28} size={} bytes compile={:.1} ms",
        format!("{} (wasm)", case.plugin),
        wasm.len(),
        compile.as_secs_f64() * 1e3
    );

    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    rt.validate(&wasm, EngineParams::default(), usize::MAX)
        .expect("plugin validates");
    let code = Code::new(wasm);
    let limits = Limits::default();
    let mut kv = Kv::new();
    // The context of call `i`: its own log index, the same limits for all.
    let call_context = |i: usize| CallContext {
        plugin: case.plugin,
        log_index: i as u64 + 1,
        timestamp_ms: 0,
        fuel: 10_000_000,
        memory_limit_bytes: 64 << 20,
        limits: &limits,
        engine: EngineParams::default(),
    };
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for i in 0..calls {
        let input = (case.input)(i);
        let ctx = call_context(i);
        let t = Instant::now();
        let out = rt.call(&code, CallMode::Apply, input.as_bytes(), &ctx, &kv);
        cairn_host::runtime::commit(&mut kv, out.writes);
        samples.push(t.elapsed());
        assert!(out.result.is_ok(), "{:?}", out.result);
    }
    report(
        &format!("{} apply, fresh instance", case.plugin),
        samples,
        started.elapsed(),
    );

    // The fresh instance alone (store, instantiate, drop and slot reset, no
    // call): the floor wasmtime sets under every call.
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for i in 0..calls {
        let ctx = call_context(i);
        let t = Instant::now();
        rt.instantiate_only(&code, &ctx).expect("instantiates");
        samples.push(t.elapsed());
    }
    report(
        &format!("{} instance only, no call", case.plugin),
        samples,
        started.elapsed(),
    );
}

fn bench_native<P: cairn_sdk::Plugin>(case: &Case, calls: usize) {
    let host = MockHost::new();
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for i in 0..calls {
        let input = (case.input)(i);
        let t = Instant::now();
        let out = host.apply_json::<P>(input.as_bytes());
        samples.push(t.elapsed());
        assert!(out.is_ok(), "{out:?}");
    }
    report(
        &format!("{} apply, native", case.plugin),
        samples,
        started.elapsed(),
    );
}

fn main() {
    let calls: usize = std::env::var("CAIRN_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let counter = Case {
        plugin: "counter",
        input: |_| r#"{"increment":{"by":1}}"#.to_string(),
    };
    let kv = Case {
        plugin: "kv",
        input: |i| format!(r#"{{"put":{{"key":"key-{}","value":{i}}}}}"#, i % 1000),
    };
    bench_wasm(&counter, calls);
    bench_native::<counter::Counter>(&counter, calls);
    bench_wasm(&kv, calls);
    bench_native::<kv::Kv>(&kv, calls);
}
