//! The `cairn` binary as a user runs it: help, and one-line errors with a non-zero exit.
//!
//! Having an integration test here also makes `cargo test` build the binary up
//! front, which the process-based system tests in `tests/` then run.

use std::process::Command;

fn cairn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env_remove("CAIRN_URL")
        .output()
        .expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_command() {
    let (code, stdout, _) = cairn(&["--help"]);
    assert_eq!(code, 0);
    for command in [
        "serve",
        "deploy",
        "apply",
        "query",
        "status",
        "members",
        "plugins",
        "bench",
        "tokens",
        "backup",
        "join-token",
    ] {
        assert!(
            stdout.contains(command),
            "{command} missing from:\n{stdout}"
        );
    }
}

#[test]
fn failures_are_one_line_and_non_zero() {
    // Port 1 on loopback: nothing listens there.
    let (code, stdout, stderr) = cairn(&["--url", "http://127.0.0.1:1", "status"]);
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");

    let (code, _, stderr) = cairn(&["deploy", "not-an-example"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("not a built-in example"), "{stderr}");
}

#[test]
fn restore_from_a_missing_file_exits_non_zero_and_creates_nothing() {
    let dir = std::env::temp_dir().join(format!("cairn-cli-restore-{}", std::process::id()));
    let data_dir = dir.join("data");
    let missing = dir.join("no-such.backup");
    let (code, _, stderr) = cairn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--restore",
        missing.to_str().expect("utf-8 path"),
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot restore from"), "{stderr}");
    assert!(!data_dir.exists(), "data dir created for a refused restore");
}
