//! `cairn new`: the Rust scaffold builds outside the repository with its own
//! `./build.sh` (pinned toolchain, size profile, vendored SDK), and the
//! component it prints deploys to a node and answers.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use crate::harness::Cluster;
use crate::process::cairn_bin;

/// Variables of the outer cargo that must not leak into the project's own build.
const OUTER_BUILD_VARS: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTDOC",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CARGO_MANIFEST_DIR",
    "CARGO_PRIMARY_PACKAGE",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_new_rust_builds_deploys_and_answers() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("hello");
    let out = Command::new(cairn_bin())
        .args(["new", "hello-counter", "--lang", "rust", "--dir"])
        .arg(&dir)
        .output()?;
    anyhow::ensure!(out.status.success(), "cairn new: {out:?}");
    // Absent templates are refused by name, not with an empty project.
    let js = Command::new(cairn_bin())
        .args(["new", "x", "--lang", "cobol", "--dir"])
        .arg(tmp.path().join("x"))
        .output()?;
    assert!(!js.status.success());

    // The project's own build, outside the workspace. A target dir under the
    // workspace's keeps the dependencies' build between runs.
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .join("target")
        .join("scaffold-rust");
    let mut build = Command::new(dir.join("build.sh"));
    build.current_dir(&dir).env("CARGO_TARGET_DIR", &target);
    for var in OUTER_BUILD_VARS {
        build.env_remove(var);
    }
    let built = build.output()?;
    anyhow::ensure!(
        built.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let stdout = String::from_utf8(built.stdout)?;
    let path = stdout
        .lines()
        .last()
        .expect("build.sh prints the path last");
    let wasm = std::fs::read(path.trim())?;
    println!("scaffolded rust component: {} bytes", wasm.len());
    assert!(wasm.starts_with(b"\0asm\x0d\0\x01\0"), "a component");

    let mut cluster = Cluster::start(1).await?;
    let node = cluster.node(cluster.wait_leader().await?);
    node.deploy("hello-counter", &wasm).await?.expect(201)?;
    let out = node
        .apply("hello-counter", &json!({"increment": {"by": 5}}))
        .await?
        .expect(200)?;
    assert_eq!(out.json(), json!({"value": 5}));
    let q = node
        .query("hello-counter", "", &json!({"get": {}}))
        .await?
        .expect(200)?;
    assert_eq!(q.json(), json!({"value": 5}));
    cluster.stop_all().await
}
