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
