//! Plugins in Python: the Python SDK's own pytest suite passes, and the Python `kv` (plugins/python/kv), built with the pinned componentize-py by the documented command, behaves byte for byte like the Rust `kv` on a real 3-node cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use http::Method;

use crate::harness::{Cluster, Node, Resp, eventually};

/// The componentize-py version the SDK is built and tested with (also in `tests/run.sh`).
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// Deadline for `PUT /v1/plugins/pykv` (client side, and the nodes'
/// `deploy_timeout_ms`): the leader compiles the ~18 MB component (CPython
/// inside) within the request, single-threaded. Measured in a debug host on
/// a loaded 2-core machine (load ~12): 70 s; about 20 s idle.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline for every node to have applied the deploy and compiled it (in
/// the background). Measured: 88 s after the PUT answered, on the loaded
/// machine, when the compile still ran inside the apply.
const APPLY_DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);
/// Per-request deadline for the history's calls (the first call of a big
/// component may still wait for its compilation on a node).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for the fuel search: the cluster's default fuel per call.
const FUEL_SEARCH_MAX: u64 = 100_000_000;
/// Upper bound for the memory search, MiB (the cluster's default limit).
const MEMORY_SEARCH_MAX_MIB: u64 = 64;
const MIB: u64 = 1024 * 1024;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Runs `cmd`, failing with its output (and `hint`) unless it succeeds.
fn run(mut cmd: Command, hint: &str) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}; {hint}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{shown} failed ({}); {hint}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Builds plugins/python/kv with the documented command; returns the component.
fn build_python_kv(out_dir: &Path) -> Result<Vec<u8>> {
    let root = repo_root();
    let hint = format!(
        "the Python SDK needs componentize-py {COMPONENTIZE_PY_VERSION}: pip install componentize-py=={COMPONENTIZE_PY_VERSION}"
    );
    let version = run(
        {
            let mut c = Command::new("componentize-py");
            c.arg("--version");
            c
        },
        &hint,
    )?;
    ensure!(
        version.trim() == format!("componentize-py {COMPONENTIZE_PY_VERSION}"),
        "found {}, want componentize-py {COMPONENTIZE_PY_VERSION}; {hint}",
        version.trim()
    );
    let out = out_dir.join("kv.wasm");
    let mut cmd = Command::new(root.join("guest-sdk-python/build.sh"));
    cmd.arg(root.join("plugins/python/kv")).arg(&out);
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    let stdout = run(cmd, &hint)?;
    // The build command's last line is the path it wrote.
    let last = stdout.lines().last().unwrap_or_default();
    ensure!(
        Path::new(last) == out,
        "build.sh's last line is {last:?}, not {}",
        out.display()
    );
    Ok(std::fs::read(&out)?)
}

#[test]
fn python_sdk_and_python_kv_pass_their_pytest_suites() -> Result<()> {
    let root = repo_root();
    let mut cmd = Command::new("python3");
    cmd.current_dir(&root)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg("guest-sdk-python/tests")
        .arg("plugins/python/kv")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(cmd, "the Python tests need pytest: pip install pytest")?;
    // Not vacuous: both suites ran tests.
    let summary = out.lines().last().unwrap_or_default();
    let passed: u32 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ensure!(
        passed >= 10 && !summary.contains("failed"),
        "pytest: {summary}"
    );
    Ok(())
}

/// One call of the shared history: apply or query, raw request bytes.
type Call = (&'static str, &'static [u8]);

/// Every command shape of kv's wire format, its errors, and JSON that tells
/// encoders apart (floats, big integers, unicode, escapes, key order).
const HISTORY: &[Call] = &[
    ("apply", br#"{"put":{"key":"a","value":1}}"#),
    ("apply", br#"{"put":{"key":"a","value":{"z":[1,1.0,-0,0.1],"b":"\u00e9\n\u0001\"","a":null}}}"#),
    ("apply", br#"{"get":{"key":"a"}}"#),
    ("apply", br#"{"put":{"key":"user/2","value":1e20}}"#),
    ("apply", br#"{"put":{"key":"user/10","value":1.5e-7}}"#),
    ("apply", br#"{"put":{"key":"user/1","value":12345.678e10}}"#),
    ("apply", br#"{"put":{"key":"f","value":[0.00001,0.000001,1e15,1e16,-9223372036854775809,18446744073709551615]}}"#),
    ("apply", "{\"put\":{\"key\":\"\u{e9}t\u{e9}\",\"value\":\"\u{1f600}\"}}".as_bytes()),
    ("apply", br#"{"put":{"key":"z","value":true,"extra":1}}"#),
    ("apply", br#"{"put":["b",[]]}"#),
    ("query", br#"{"get":{"key":"a"}}"#),
    ("query", br#"{"get":{"key":"nope"}}"#),
    ("query", br#"{"list":{"prefix":"user/"}}"#),
    ("query", br#"{"list":{}}"#),
    ("query", br#"{"list":{"limit":2}}"#),
    ("query", br#"{"range":{"start":"b","end":"user/2"}}"#),
    ("query", br#"{"range":{"start":"z","end":"b"}}"#),
    ("query", br#"{"range":{"limit":0}}"#),
    ("query", br#"{"range":{}}"#),
    ("apply", br#"{"cas":{"key":"c","new":1}}"#),
    ("apply", br#"{"cas":{"key":"c","expected":1.0,"new":2}}"#),
    ("apply", br#"{"cas":{"key":"c","new":2}}"#),
    ("apply", br#"{"cas":{"key":"c","expected":true,"new":2}}"#),
    ("apply", br#"{"cas":{"key":"c","expected":1,"new":{"k":[1]}}}"#),
    ("apply", br#"{"cas":{"key":"c","expected":{"k":[1.0]},"new":3}}"#),
    ("apply", br#"{"cas":{"key":"c","expected":{"k":[1]}}}"#),
    ("apply", br#"{"delete":{"key":"a"}}"#),
    ("apply", br#"{"delete":{"key":"a"}}"#),
    ("apply", br#"{"put":{"key":"a","value":null}}"#),
    ("apply", br#"{"put":{"key":"a"}}"#),
    ("apply", br#"{"put":{"key":7,"value":1}}"#),
    ("apply", br#"{"nope":{"key":"a"}}"#),
    ("apply", br#""put""#),
    ("apply", br#"{"put":{"key":"a","value":1},"get":{"key":"a"}}"#),
    ("apply", br#"{"put":{"key":"a","key":"b","value":1}}"#),
    ("apply", br#"{"put":{"key":"a","value":1e400}}"#),
    ("apply", br#"{"put":{"key":"a","value":"\ud800"}}"#),
    ("apply", b"{\"put\":{\"key\":\"a\",\"value\":\"\xff\"}}"),
    ("apply", br#"{"put""#),
    ("query", br#"{"list":{"limit":-1}}"#),
    ("query", br#"{"list":{"limit":1.0}}"#),
    ("query", br#"{"list":{"prefix":null}}"#),
    ("query", br#"{"range":["a"]}"#),
    ("query", br#"{"range":["a","z",null]}"#),
    ("query", br#"{"list":{"prefix":"","limit":10000000}}"#),
    ("query", br#"{"list":{}}"#),
];

/// What a client can observe of a call: status, and the body for successes
/// or the error code (messages of `bad-input` name each language's parser).
fn observed(r: &Resp) -> (u16, String) {
    if r.status == 200 {
        return (200, String::from_utf8_lossy(&r.body).into_owned());
    }
    let v = r.json();
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    if code == "bad-input" {
        (r.status, code)
    } else {
        (r.status, format!("{code}: {}", v["error"]["message"]))
    }
}

async fn call(node: &Node, plugin: &str, (mode, body): Call) -> Result<Resp> {
    node.req_within(
        Method::POST,
        &format!("/v1/plugins/{plugin}/{mode}"),
        body.to_vec(),
        CALL_TIMEOUT,
    )
    .await
}

/// The smallest limit in `lo..=hi` for which `fits` holds (which must be monotone).
async fn smallest<F, Fut>(mut lo: u64, mut hi: u64, mut fits: F) -> Result<u64>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    ensure!(fits(hi).await?, "does not fit even in {hi}");
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(mid).await? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(hi)
}

/// Fuel and memory (MiB) `plugin` needs for `call`, found by setting its limits
/// on the real cluster (`PATCH /v1/plugins/{name}`) until the call just fits.
async fn measure(node: &Node, plugin: &str, c: Call) -> Result<(u64, u64)> {
    let fits = |params: String| async move {
        node.req(
            Method::PATCH,
            &format!("/v1/plugins/{plugin}?{params}"),
            &[],
            Vec::new(),
        )
        .await?
        .expect(200)?;
        Ok(call(node, plugin, c).await?.status == 200)
    };
    let mib = MIB;
    let memory = smallest(1, MEMORY_SEARCH_MAX_MIB, |m| {
        fits(format!(
            "fuel_per_call={FUEL_SEARCH_MAX}&memory_limit_bytes={}",
            m * mib
        ))
    })
    .await?;
    let fuel = smallest(1_000, FUEL_SEARCH_MAX, |f| {
        fits(format!(
            "fuel_per_call={f}&memory_limit_bytes={}",
            MEMORY_SEARCH_MAX_MIB * mib
        ))
    })
    .await?;
    Ok((fuel, memory))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_kv_gives_the_same_outputs_and_bytes_as_rust_kv_on_three_nodes() -> Result<()> {
    let build_dir = tempfile::tempdir()?;
    let out_dir = build_dir.path().to_path_buf();
    let started = Instant::now();
    let build = tokio::task::spawn_blocking(move || build_python_kv(&out_dir));

    let mut cluster = Cluster::start_with(3, &|c| {
        c.deploy_timeout_ms = DEPLOY_TIMEOUT.as_millis() as u64;
    })
    .await?;
    let leader_id = cluster.wait_leader().await?;
    let leader = cluster.node(leader_id);
    let rust_kv = cairn_host::plugins::example("kv").expect("kv embedded");
    leader.deploy("kv", rust_kv).await?.expect(201)?;

    let py_kv = build.await??;
    let built_in = started.elapsed();
    let deploy_started = Instant::now();
    let r = leader
        .req_within(
            Method::PUT,
            "/v1/plugins/pykv",
            py_kv.clone(),
            DEPLOY_TIMEOUT,
        )
        .await?
        .expect(201)?;
    let put_took = deploy_started.elapsed();
    let deploy_index = r.json()["log_index"].as_u64().context("log_index")?;
    for n in cluster.running() {
        eventually(
            APPLY_DEPLOY_TIMEOUT,
            &format!("node {} to apply the Python kv deploy", n.id),
            || async { Ok((n.state_hash().0 >= deploy_index).then_some(())) },
        )
        .await?;
        // Applying the deploy does not wait for a node's compile (it runs in
        // the background from the entry's append); the first call does. Wait
        // until every node answers one, so the history measures calls, not
        // compiles, and followers keep up with it.
        let params = format!("consistency=stale&min_index={deploy_index}");
        let probe = serde_json::json!({"get": {"key": "probe"}});
        eventually(
            APPLY_DEPLOY_TIMEOUT,
            &format!("node {} to compile the Python kv", n.id),
            || async {
                Ok(match n.query("pykv", &params, &probe).await {
                    Ok(r) if r.status < 500 => Some(()),
                    _ => None,
                })
            },
        )
        .await?;
    }
    let on_all = deploy_started.elapsed();
    println!(
        "python kv: {} bytes, built in {built_in:?}; PUT took {put_took:?}, callable on all 3 nodes after {on_all:?}",
        py_kv.len()
    );

    // The same history, command by command, against both plugins.
    let history_started = Instant::now();
    let mut latencies = Vec::new();
    for (i, &c) in HISTORY.iter().enumerate() {
        let t = Instant::now();
        let rust = observed(&call(leader, "kv", c).await?);
        let rust_took = t.elapsed();
        let t = Instant::now();
        let python = observed(&call(leader, "pykv", c).await?);
        latencies.push((c.0, rust_took, t.elapsed()));
        assert_eq!(
            python,
            rust,
            "call {i} {} {:?}: Python (left) and Rust (right) differ",
            c.0,
            String::from_utf8_lossy(c.1)
        );
    }
    let history_took = history_started.elapsed();
    // Not vacuous: the history both succeeds and fails.
    assert!(HISTORY.len() > 40);

    // Every node holds byte-identical data for both plugins, and all agree.
    let (index, hash) = cluster.converge().await?;
    for n in cluster.running() {
        let state = n.handle().service.state();
        let (rust, python) = (state.kv("kv"), state.kv("pykv"));
        assert!(rust.len() >= 5, "node {}: only {} keys", n.id, rust.len());
        assert_eq!(python, rust, "node {}: stored bytes differ", n.id);
        let r = n.get("/v1/state-hash").await?.expect(200)?.json();
        assert_eq!(
            (r["applied_index"].as_u64(), r["hash"].as_str()),
            (Some(index), Some(hash.as_str())),
            "node {}",
            n.id
        );
    }

    // What a call costs in the real runtime (limits found by search).
    let put: Call = ("apply", br#"{"put":{"key":"m","value":{"n":1}}}"#);
    let list: Call = ("query", br#"{"list":{"limit":10}}"#);
    let search_started = Instant::now();
    let mut costs = Vec::new();
    for plugin in ["kv", "pykv"] {
        for c in [put, list] {
            costs.push((plugin, c.0, measure(leader, plugin, c).await?));
        }
    }
    let median = |pick: fn(&(&str, Duration, Duration)) -> Duration, mode: &str| {
        let mut v: Vec<Duration> = latencies.iter().filter(|l| l.0 == mode).map(pick).collect();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "history of {} calls x 2 plugins: {history_took:?}; search: {:?}; median apply rust {:?} python {:?}, query rust {:?} python {:?}; (plugin, call, (fuel, MiB)): {costs:?}",
        HISTORY.len(),
        search_started.elapsed(),
        median(|l| l.1, "apply"),
        median(|l| l.2, "apply"),
        median(|l| l.1, "query"),
        median(|l| l.2, "query"),
    );
    for (plugin, mode, (fuel, mib)) in &costs {
        // Far inside the defaults (100M fuel, 64 MiB): Python stays usable
        // without raising any limit.
        assert!(
            *fuel < 10_000_000 && *mib < 48,
            "{plugin} {mode}: {fuel} fuel, {mib} MiB"
        );
    }
    cluster.stop_all().await
}

/// `cairn new --lang python` writes a project that passes its own tests,
/// builds with its one command (the path on the last line), deploys and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scaffold_builds_tests_deploys_and_answers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("demo");
    let dir = project.clone();
    let wasm = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let mut new = Command::new(crate::process::cairn_bin());
        new.args(["new", "demo", "--lang", "python", "--dir"])
            .arg(&dir);
        run(new, "cairn new --lang python")?;
        let mut test = Command::new("python3");
        test.current_dir(&dir)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let out = run(test, "the scaffold's tests need pytest: pip install pytest")?;
        ensure!(
            out.lines()
                .last()
                .is_some_and(|l| l.contains("passed") && !l.contains("failed")),
            "pytest in the scaffold: {out}"
        );
        let mut build = Command::new(dir.join("build.sh"));
        build.current_dir(&dir).env("PYTHONDONTWRITEBYTECODE", "1");
        let out = run(
            build,
            &format!("the scaffold builds with componentize-py {COMPONENTIZE_PY_VERSION}"),
        )?;
        let last = out.lines().last().unwrap_or_default().trim().to_string();
        let path = if Path::new(&last).is_absolute() {
            PathBuf::from(&last)
        } else {
            dir.join(&last)
        };
        std::fs::read(&path).with_context(|| format!("build.sh's last line {last:?}"))
    })
    .await??;

    let cluster = Cluster::start_with(1, &|c| {
        c.deploy_timeout_ms = DEPLOY_TIMEOUT.as_millis() as u64;
    })
    .await?;
    let node = cluster.node(cluster.wait_leader().await?);
    node.req_within(Method::PUT, "/v1/plugins/demo", wasm, DEPLOY_TIMEOUT)
        .await?
        .expect(201)?;
    let inc = serde_json::json!({"increment": {"by": 5}});
    let r = eventually(CALL_TIMEOUT, "the scaffolded plugin to answer", || async {
        let r = node.apply("demo", &inc).await?;
        Ok((r.status == 200).then_some(r))
    })
    .await?;
    ensure!(r.json() == serde_json::json!({"value": 5}), "{}", r.json());
    let r = node
        .query("demo", "", &serde_json::json!({"get": {}}))
        .await?
        .expect(200)?;
    ensure!(r.json() == serde_json::json!({"value": 5}), "{}", r.json());
    Ok(())
}
