//! `cairn serve` puts every thread of the node under `SCHED_BATCH` by
//! default (fewer wake-up preemptions between the threads that hand a write
//! along), and under the kernel's default with `--sched-policy normal`.

use std::path::Path;

use anyhow::{Context, Result, ensure};

use crate::process::ProcNode;

/// `SCHED_OTHER` and `SCHED_BATCH` as Linux numbers them.
const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// `(thread name, policy)` of every thread of process `pid`, from
/// `/proc/PID/task/TID/stat` (field 41, counted past the parenthesised name).
fn thread_policies(pid: u32) -> Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("task"))? {
        let dir = task?.path();
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        let (head, rest) = stat.rsplit_once(')').context("no ')' in a stat line")?;
        let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
        // `rest` starts at field 3 (state); the policy is field 41.
        let policy = rest
            .split_whitespace()
            .nth(41 - 3)
            .context("a stat line shorter than 41 fields")?
            .parse()?;
        out.push((name, policy));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_under_sched_batch_unless_told_otherwise() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut batch = ProcNode::start(1, dir.path(), Vec::new()).await?;
    let mut normal = ProcNode::start(
        2,
        dir.path(),
        vec!["--sched-policy".into(), "normal".into()],
    )
    .await?;
    // `start` returns once the node answers, so its apply and WAL threads exist.
    for (node, want) in [(&batch, SCHED_BATCH), (&normal, SCHED_OTHER)] {
        let threads = thread_policies(node.pid().context("node is running")?)?;
        for name in ["cairn-apply", "cairn-wal-flush", "tokio-rt-worker"] {
            ensure!(
                threads.iter().any(|(n, _)| n == name),
                "node {} has no {name} thread: {threads:?}",
                node.id
            );
        }
        let wrong: Vec<_> = threads.iter().filter(|(_, p)| *p != want).collect();
        ensure!(
            wrong.is_empty(),
            "node {}: threads not under policy {want}: {wrong:?}",
            node.id
        );
    }
    batch.stop().await?;
    normal.stop().await?;
    Ok(())
}
