//! The `cairn` binary: parse the command line, set up logging, run, report failure on one line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cairn_host::cli::{Cli, Commands, LogFormat, SchedPolicy};

/// Async workers of a node: `asked`, or half the cores (at least one).
/// Plugin calls and fsyncs run on other threads, so the async work (HTTP,
/// Raft) needs no more; and every extra worker is one more thread the
/// scheduler wakes to look for work: with one worker instead of two a 3-node
/// write on a 2-core machine took 11 context switches on the leader instead
/// of 21, and 18% less CPU.
fn async_worker_threads(asked: usize) -> usize {
    if asked > 0 {
        return asked;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

/// Puts the calling thread under `SCHED_BATCH`; every thread it starts
/// afterwards inherits the policy, so this runs before the first one.
///
/// A node is a handful of threads handing each write along (async worker,
/// WAL flusher, apply thread, on every node). Under the default policy each
/// hand-off's wake-up preempts whatever runs, so a busy machine spends its
/// time switching: with `SCHED_BATCH` a 3-node, 64-client put benchmark on 2
/// cores went from 19.2–20.1k to 21.0–21.8k writes/s and from 76–79 to 68–71
/// µs of CPU per write, one client's p50 unchanged (README, Benchmarks). No
/// privilege is needed to choose it.
#[cfg(target_os = "linux")]
fn use_batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a syscall on the calling thread (pid 0) reading `param`, which
    // outlives it; it touches no memory of ours.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot switch to SCHED_BATCH; the node runs under the default policy"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn use_batch_scheduling() {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node logs at info by default; client commands stay quiet unless asked (RUST_LOG).
    let default_level = if matches!(cli.command, Commands::Serve(_)) {
        // openraft narrates every vote and append at info; keep its warnings,
        // except the responder's "receiver dropped", which is every client that
        // disconnects while its write is in flight (the write still commits).
        "info,openraft=warn,openraft::raft::responder=error"
    } else {
        "warn"
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let log_format = match &cli.command {
        Commands::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    // Colour codes only help a person at a terminal; in files and journals they are noise.
    let ansi = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Commands::Serve(args) = &cli.command {
        if args.sched_policy == SchedPolicy::Batch {
            use_batch_scheduling();
        }
        builder.worker_threads(async_worker_threads(args.worker_threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cairn_host::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::async_worker_threads;

    #[test]
    fn worker_threads_default_to_half_the_cores_and_at_least_one() {
        assert_eq!(async_worker_threads(3), 3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(async_worker_threads(0), (cores / 2).max(1));
        assert!(async_worker_threads(0) >= 1);
    }
}
