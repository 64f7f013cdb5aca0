//! Builds the first-party plugins and test fixtures to `wasm32-wasip2`, so the
//! binary can embed the example plugins and the tests can load real components
//! without a manual step.
//!
//! The plugins are built by a nested `cargo` with its own target directory
//! (the outer build holds the lock on its own), and the wasm target is added to
//! the pinned toolchain with rustup if it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every wasm crate the host embeds or its tests load.
const PLUGINS: &[&str] = &[
    "counter",
    "kv",
    "bank",
    "misbehave",
    "nondet",
    "wrong-world",
    "counter-v1",
    "counter-v2",
];
const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm";

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    for dir in ["plugins", "guest-sdk", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=CAIRN_WASM_TARGET_DIR");

    ensure_wasm_target();

    let target_dir = std::env::var_os("CAIRN_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("wasm-plugins"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--locked",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--target-dir",
        ])
        .arg(&target_dir);
    for p in PLUGINS {
        cmd.args(["-p", p]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host,
    // not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        status.success(),
        "building the plugins for {TARGET} failed (command: {cmd:?})"
    );

    let out = target_dir.join(TARGET).join(PROFILE);
    for p in PLUGINS {
        let file = out.join(format!("{}.wasm", p.replace('-', "_")));
        assert!(
            file.exists(),
            "expected {} after the plugin build",
            file.display()
        );
    }
    println!("cargo:rustc-env=CAIRN_PLUGIN_DIR={}", out.display());
}

/// Adds the wasm target to the active toolchain when its standard library is
/// missing (a fresh machine has only the host target).
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = &sysroot
        && has_target(sysroot)
    {
        return;
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &toolchain]);
    }
    let status = cmd.status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and rebuild"
    );
}

fn has_target(sysroot: &Path) -> bool {
    sysroot
        .join("lib")
        .join("rustlib")
        .join(TARGET)
        .join("lib")
        .exists()
}
