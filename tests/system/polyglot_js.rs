//! JavaScript plugins: the JS SDK's and JS kv's `node --test` suites pass, the JS kv builds into a component with the pinned tools, and on a real 3-node cluster it answers a history of commands exactly as the Rust kv does, with equal state hashes on every node; the JS scaffold template builds, tests, deploys and answers outside the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use http::Method;

use crate::harness::Cluster;

/// Limits the JS kv is deployed with. Measured on the real runtime: a put
/// costs ~1M fuel, a get ~0.65M, listing 10 entries ~4.6M (QuickJS
/// interprets; every JS operation is hundreds of Wasm instructions), and
/// memory peaks near 1.6 MiB. Generous headroom, still far below the defaults.
const JS_LIMITS: &str = "fuel_per_call=50000000&memory_limit_bytes=16777216";

/// The version of componentize-qjs the package-lock pins (checked, so a
/// different tool cannot slip in unnoticed).
const COMPONENTIZE_QJS_VERSION: &str = "0.4.5";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// Runs `cmd`, failing with its output if it fails; returns stdout.
fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {what} ({cmd:?})"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Checks that Node.js and the pinned build tools are installed; the error
/// says how to install them. Never skips: a missing tool fails the test.
fn check_tools(kv_dir: &Path) -> Result<()> {
    let node = Command::new("node").arg("--version").output();
    ensure!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "Node.js is not installed: the JavaScript plugin tests need `node` (>= 18) and `npm` on PATH"
    );
    let pkg = kv_dir.join("node_modules/componentize-qjs/package.json");
    let build = kv_dir.join("node_modules/.bin/cairn-js-build");
    ensure!(
        pkg.exists() && build.exists(),
        "the JavaScript build tools are not installed: run `npm ci --prefix plugins/js/kv` \
         (tests/run.sh does this before the tests)"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&pkg)?)?;
    ensure!(
        manifest["version"] == COMPONENTIZE_QJS_VERSION,
        "componentize-qjs {} is installed, the lockfile pins {COMPONENTIZE_QJS_VERSION}: run `npm ci --prefix plugins/js/kv`",
        manifest["version"]
    );
    Ok(())
}

/// Runs both `node --test` suites and builds the JS kv; returns the component.
fn test_and_build_js_kv(out_dir: &Path) -> Result<Vec<u8>> {
    let root = repo_root();
    let sdk = root.join("guest-sdk-js");
    let kv_dir = root.join("plugins/js/kv");
    check_tools(&kv_dir)?;

    // The SDK ships the WIT it builds against: the host's `cairn:plugin@0.1.0`
    // contract (still linked; JS plugins have no `migrate` yet), verbatim.
    let wit = std::fs::read_to_string(root.join("wit/v0.1.0/cairn.wit"))?;
    let sdk_wit = std::fs::read_to_string(sdk.join("wit/cairn.wit"))?;
    ensure!(
        wit == sdk_wit,
        "guest-sdk-js/wit/cairn.wit differs from wit/v0.1.0/cairn.wit: copy it over"
    );

    for dir in [&sdk, &kv_dir] {
        let out = run(
            Command::new("node").arg("--test").current_dir(dir),
            &format!("node --test in {}", dir.display()),
        )?;
        ensure!(
            out.contains("# fail 0") && !out.contains("# pass 0"),
            "unexpected node --test summary in {}:\n{out}",
            dir.display()
        );
    }

    let wasm = out_dir.join("kv.wasm");
    let stdout = run(
        Command::new("node")
            .arg(kv_dir.join("node_modules/.bin/cairn-js-build"))
            .arg("src/plugin.js")
            .arg("-o")
            .arg(&wasm)
            .current_dir(&kv_dir),
        "cairn-js-build",
    )?;
    // The build's last line names the component it wrote.
    let last = stdout.lines().last().unwrap_or_default();
    ensure!(
        Path::new(last) == wasm,
        "cairn-js-build's last line is {last:?}, expected {}",
        wasm.display()
    );
    Ok(std::fs::read(&wasm)?)
}

/// How often a deploy of a QuickJS component is sent (with one
/// Idempotency-Key, so a retry cannot deploy twice): compiling 1.8 MB in a
/// debug build on a loaded machine can outlast the harness's 15 s deadline.
const DEPLOY_ATTEMPTS: usize = 4;

/// Deploys `wasm` and returns once the cluster answered it (201, or 200 for a
/// retry that found it deployed).
async fn deploy_patiently(
    node: &crate::harness::Node,
    name: &str,
    wasm: &[u8],
    params: &str,
) -> Result<()> {
    let key = format!("polyglot-js-{name}");
    let mut last = None;
    for _ in 0..DEPLOY_ATTEMPTS {
        match node
            .deploy_with(name, wasm, params, &[("idempotency-key", &key)])
            .await
        {
            Ok(r) if r.status == 201 || r.status == 200 => return Ok(()),
            Ok(r) => bail!(
                "deploy of {name}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .expect("at least one attempt")
        .context(format!("deploy of {name}")))
}

/// One step of the shared history: `apply` or `query`, and the exact body bytes.
const HISTORY: &[(&str, &str)] = &[
    ("apply", r#"{"put":{"key":"a","value":1}}"#),
    ("query", r#"{"get":{"key":"a"}}"#),
    (
        "apply",
        r#"{"put":{"key":"a","value":{"b":[1.0,-0,1e20,18446744073709551615,-9223372036854775808],"a":"x\u0001\"/"}}}"#,
    ),
    ("apply", r#"{"get":{"key":"a"}}"#),
    ("apply", r#"{"cas":{"key":"a","expected":1,"new":2}}"#),
    ("apply", r#"{"cas":{"key":"n","new":1.5e-7}}"#),
    (
        "apply",
        r#"{"cas":{"key":"n","expected":1.5e-7,"new":0.1}}"#,
    ),
    ("apply", r#"{"cas":{"key":"n","expected":0.10,"new":1}}"#),
    ("apply", r#"{"cas":{"key":"n","expected":1.0,"new":3}}"#),
    ("apply", r#"{"put":{"key":"é","value":[]}}"#),
    ("apply", r#"{"put":{"key":"😀","value":{}}}"#),
    ("apply", r#"{"put":{"key":"\uffff","value":true}}"#),
    (
        "apply",
        r#"{"put":["user/1",{"z":1,"a":2,"m":{"y":null,"x":false}}]}"#,
    ),
    (
        "apply",
        r#"{"put":{"key":"user/2","value":12345678901234567890}}"#,
    ),
    (
        "apply",
        r#"{"put":{"key":"user/10","value":0.30000000000000004}}"#,
    ),
    ("query", r#"{"list":{"prefix":"user/","limit":2}}"#),
    ("apply", r#"{"delete":{"key":"user/2"}}"#),
    ("apply", r#"{"delete":{"key":"missing"}}"#),
    ("apply", r#"{"put":{"key":"a","value":null}}"#),
    ("apply", r#"{"put":{"key":"a","value":1,"value":2}}"#),
    ("apply", r#"{"nope":{}}"#),
    ("apply", r#"{"put":{"key":"a""#),
    (
        "apply",
        r#"{"put":{"key":"deep","value":[[[[1]]],{"k":[{}]}]}}"#,
    ),
    ("apply", r#"{"put":{"key":"big","value":1e308}}"#),
    ("apply", r#"{"put":{"key":"tiny","value":5e-324}}"#),
    (
        "apply",
        r#"{"put":{"key":"long","value":123456789012345678901234567890}}"#,
    ),
    (
        "apply",
        r#"{"put":{"key":"frac","value":[2.5e-5,1e-5,1e15,1e16,-1.25]}}"#,
    ),
    (
        "apply",
        r#"{"put":{"key":"esc","value":"\u00e9\t\u2028\ud83d\ude00\\"}}"#,
    ),
    ("apply", r#"{"cas":{"key":"esc","new":1}}"#),
    ("query", r#"{"get":{"key":"zz"}}"#),
    ("query", r#"{"list":{}}"#),
    ("query", r#"{"range":{"start":"b","end":"z"}}"#),
    ("query", r#"{"range":{"start":null}}"#),
    ("query", r#"{"list":{"limit":5000000000}}"#),
    ("query", r#"{"list":{"limit":2.0}}"#),
    ("query", r#"{"list":{"prefix":null}}"#),
    ("query", r#"{"put":{"key":"a","value":1}}"#),
];

/// Same status; for 200 the same bytes; for errors the same code, and the
/// same message unless it is `bad-input` (whose wording names the decoder).
fn same_answer(step: usize, body: &str, rust: &crate::harness::Resp, js: &crate::harness::Resp) {
    let show = |r: &crate::harness::Resp| String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(
        rust.status,
        js.status,
        "step {step} {body}: rust {} vs js {}",
        show(rust),
        show(js)
    );
    if rust.status == 200 {
        assert_eq!(show(rust), show(js), "step {step} {body}");
        return;
    }
    let (r, j) = (rust.json(), js.json());
    assert_eq!(r["error"]["code"], j["error"]["code"], "step {step} {body}");
    if r["error"]["code"] != "bad-input" {
        assert_eq!(
            r["error"]["message"], j["error"]["message"],
            "step {step} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn js_kv_matches_rust_kv_on_three_nodes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out_dir = tmp.path().to_path_buf();
    let js = tokio::task::spawn_blocking(move || test_and_build_js_kv(&out_dir)).await??;

    let cluster = Cluster::start(3).await?;
    let leader = cluster.wait_leader().await?;
    let ids: Vec<u64> = cluster.running().map(|n| n.id).collect();
    let rust = cairn_host::plugins::example("kv").expect("kv embedded");
    let first = cluster.node(leader);
    first.deploy("rkv", rust).await?.expect(201)?;
    deploy_patiently(first, "jkv", &js, JS_LIMITS).await?;

    let mut errors = 0;
    for (step, (kind, body)) in HISTORY.iter().enumerate() {
        // Spread the calls over all nodes: followers forward applies.
        let node = cluster.node(ids[step % ids.len()]);
        let mut answers = Vec::new();
        for plugin in ["rkv", "jkv"] {
            let path = format!("/v1/plugins/{plugin}/{kind}");
            answers.push(
                node.req(Method::POST, &path, &[], body.as_bytes().to_vec())
                    .await?,
            );
        }
        same_answer(step, body, &answers[0], &answers[1]);
        errors += usize::from(answers[0].status != 200);
    }
    // The history exercises failures too (cas mismatches, bad input), not only successes.
    assert!(errors >= 8, "only {errors} failing steps");

    // The JS kv wrote serde_json's spelling of what it stored.
    let got = cluster
        .node(leader)
        .req(
            Method::POST,
            "/v1/plugins/jkv/query",
            &[],
            r#"{"get":{"key":"a"}}"#.as_bytes().to_vec(),
        )
        .await?
        .expect(200)?;
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        r#"{"value":{"a":"x\u0001\"/","b":[1.0,-0.0,1e+20,18446744073709551615,-9223372036854775808]}}"#
    );

    let (index, hash) = cluster.converge().await?;
    assert!(index as usize >= HISTORY.len(), "applied index {index}");
    for n in cluster.running() {
        assert_eq!(n.state_hash(), (index, hash.clone()), "node {}", n.id);
    }
    Ok(())
}

/// The JS scaffold template (what `cairn new NAME --lang js` writes).
const TEMPLATE: &str = "host/src/cli/scaffold/js";

/// Files of `dir`, relative, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name == "node_modules" || name == "dist" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the project with `cairn new NAME --lang js` into `project`, links
/// the pinned tools CI installed for plugins/js/kv (no network), builds with
/// `./build.sh`, runs its tests; returns the component.
fn instantiate_and_build(project: &Path, name: &str) -> Result<Vec<u8>> {
    let root = repo_root();
    let kv_dir = root.join("plugins/js/kv");
    check_tools(&kv_dir)?;
    let template = root.join(TEMPLATE);

    // The vendored SDK is a copy of guest-sdk-js: the same files, byte for byte.
    let vendored = template.join("vendor/cairn-sdk");
    let sdk = root.join("guest-sdk-js");
    let vendored_files = files_under(&vendored)?;
    let sdk_files: Vec<PathBuf> = files_under(&sdk)?
        .into_iter()
        .filter(|p| {
            ["src", "bin", "wit", "package.json"]
                .iter()
                .any(|top| p.starts_with(top))
        })
        .collect();
    ensure!(
        vendored_files == sdk_files,
        "{TEMPLATE}/vendor/cairn-sdk lists {vendored_files:?}, guest-sdk-js has {sdk_files:?}: copy the SDK over"
    );
    for f in &sdk_files {
        ensure!(
            std::fs::read(sdk.join(f))? == std::fs::read(vendored.join(f))?,
            "{TEMPLATE}/vendor/cairn-sdk/{} differs from guest-sdk-js: copy the SDK over",
            f.display()
        );
    }

    // `cairn new` writes the project from the templates embedded in the
    // binary: every file of the template directory, names filled in.
    let out = Command::new(crate::process::cairn_bin())
        .args(["new", name, "--lang", "js", "--dir"])
        .arg(project)
        .output()?;
    ensure!(out.status.success(), "cairn new --lang js: {out:?}");
    ensure!(
        files_under(project)? == files_under(&template)?,
        "cairn new --lang js wrote {:?}, the template has {:?}: list every file in host/src/cli/scaffold/mod.rs",
        files_under(project)?,
        files_under(&template)?
    );
    let package = std::fs::read_to_string(project.join("package.json"))?;
    ensure!(
        package.contains(&format!("\"name\": \"{name}\"")),
        "{package}"
    );
    std::fs::create_dir_all(project.join("node_modules/@cairn"))?;
    std::os::unix::fs::symlink(
        "../../vendor/cairn-sdk",
        project.join("node_modules/@cairn/sdk"),
    )?;
    std::os::unix::fs::symlink(
        kv_dir.join("node_modules/componentize-qjs"),
        project.join("node_modules/componentize-qjs"),
    )?;

    let stdout = run(
        Command::new("./build.sh").current_dir(project),
        "the scaffold's build.sh",
    )?;
    let wasm = project.join(format!("dist/{name}.wasm"));
    let last = stdout.lines().last().unwrap_or_default();
    ensure!(
        Path::new(last) == wasm,
        "build.sh's last line is {last:?}, expected {}",
        wasm.display()
    );
    let out = run(
        Command::new("node").arg("--test").current_dir(project),
        "the scaffold's node --test",
    )?;
    ensure!(
        out.contains("# fail 0") && !out.contains("# pass 0"),
        "node --test:\n{out}"
    );
    Ok(std::fs::read(&wasm)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_scaffold_builds_tests_deploys_and_answers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("demo");
    let dir = project.clone();
    let wasm = tokio::task::spawn_blocking(move || instantiate_and_build(&dir, "demo")).await??;

    let cluster = Cluster::start(1).await?;
    let node = cluster.node(cluster.wait_leader().await?);
    deploy_patiently(node, "demo", &wasm, "").await?;
    let r = node
        .apply("demo", &serde_json::json!({"add": {"n": 5}}))
        .await?
        .expect(200)?;
    assert_eq!(r.json(), serde_json::json!({"total": 5}));
    let r = node
        .apply(
            "demo",
            &serde_json::json!({"add": {"n": 18446744073709551615u64}}),
        )
        .await?;
    assert_eq!(r.code().as_deref(), Some("overflow"));
    let r = node
        .query("demo", "", &serde_json::json!({"total": {}}))
        .await?
        .expect(200)?;
    assert_eq!(r.json(), serde_json::json!({"total": 5}));
    Ok(())
}
