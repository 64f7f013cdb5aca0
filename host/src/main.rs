//! The `cairn` binary: parse the command line, set up logging, run, report failure on one line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cairn_host::cli::{Cli, Commands, LogFormat};

/// Every request allocates and frees many small buffers across threads
/// (HTTP, Raft, a fresh Wasm store per call); glibc's malloc spent a fifth of
/// a loaded node's CPU on them, mimalloc a fraction of that (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
