//! A full disk is an alarm, not a zombie: a `cairn` process on a small tmpfs
//! refuses writes (507) before its disk fills and resumes by itself when space
//! returns; with the alarm off, a failed log write stops Raft and the node
//! says so on `/healthz`, `/readyz`, `/metrics` and to writers, and a restart
//! with space keeps every acknowledged write.
//!
//! The tests mount tmpfs filesystems, so they need root (or CAP_SYS_ADMIN);
//! without it they fail with a message saying so rather than pass unchecked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::harness::{Resp, eventually};
use crate::http_node::{wait_agreed_leader, wait_voter_ids};
use crate::process::{ProcNode, kill_all};

const MIB: u64 = 1024 * 1024;
/// Bytes of each written value: the size the alarm was first observed with.
const VALUE_BYTES: usize = 200_000;
/// More writes than any filesystem here can hold; bounds the fill loops.
const MAX_WRITES: usize = 400;
/// How long a condition (health turning, alarm clearing) may take.
const WAIT: Duration = Duration::from_secs(10);

/// A tmpfs mounted on a fresh temp dir; unmounted on drop, also when the test failed.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a `size_bytes` tmpfs on a new temp dir.
    fn mount(size_bytes: u64) -> Result<Tmpfs> {
        let dir = tempfile::tempdir()?;
        Self::mount_at(dir.path(), size_bytes)?;
        Ok(Tmpfs { dir })
    }

    fn mount_at(at: &Path, size_bytes: u64) -> Result<()> {
        run_mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size_bytes}"),
            "tmpfs",
            &at.display().to_string(),
        ])
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs `mount ARGS`; fails with the reason (the tests need root to mount).
fn run_mount(args: &[&str]) -> Result<()> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .context("running mount (the disk-alarm tests mount a tmpfs and need root)")?;
    if !out.status.success() {
        bail!(
            "mount {} failed ({}): {} — the disk-alarm tests mount a tmpfs and need root \
             or CAP_SYS_ADMIN",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Unmounts `at`; lazily if it is still busy, so the temp dir can go.
fn unmount(at: &Path) {
    let ok = Command::new("umount")
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let lazy = Command::new("umount").arg("-l").arg(at).status();
        if !lazy.is_ok_and(|s| s.success()) {
            eprintln!("could not unmount the test tmpfs at {}", at.display());
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(self.dir.path());
    }
}

/// A tmpfs mounted on a directory the test made elsewhere (a node's log dir).
struct MountedAt(PathBuf);

impl Drop for MountedAt {
    fn drop(&mut self) {
        unmount(&self.0);
    }
}

/// A distinct, recognisable value of `VALUE_BYTES` for write `i`.
fn value(i: usize) -> String {
    let tag = format!("v{i:04}-");
    tag.repeat(VALUE_BYTES / tag.len())
}

fn key(i: usize) -> String {
    format!("big-{i:04}")
}

async fn put(node: &ProcNode, i: usize) -> Result<Resp> {
    let body = serde_json::to_vec(&json!({"put": {"key": key(i), "value": value(i)}}))?;
    node.req(Method::POST, "/v1/plugins/kv/apply", body).await
}

/// Reads every key in `acked` back (linearizably) and compares its value.
async fn check_readable(node: &ProcNode, acked: &[usize]) -> Result<()> {
    for &i in acked {
        let q = serde_json::to_vec(&json!({"get": {"key": key(i)}}))?;
        let r = node
            .req(Method::POST, "/v1/plugins/kv/query", q)
            .await?
            .expect(200)
            .with_context(|| format!("reading acknowledged {}", key(i)))?;
        ensure!(
            r.json()["value"] == json!(value(i)),
            "acknowledged {} reads back wrong",
            key(i)
        );
    }
    Ok(())
}

fn deploy_kv_body() -> Bytes {
    Bytes::from_static(cairn_host::plugins::example("kv").expect("kv example plugin"))
}

/// The value of an unlabelled sample line in `/metrics`.
async fn metric(node: &ProcNode, series: &str) -> Result<u64> {
    let r = node.get("/metrics").await?.expect(200)?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| anyhow!("no {series} in /metrics"))
}

/// Waits until `series` reads `want`.
async fn wait_metric(node: &ProcNode, series: &str, want: u64) -> Result<()> {
    eventually(WAIT, &format!("{series} {want}"), || async {
        let v = metric(node, series).await?;
        Ok((v == want).then_some(()))
    })
    .await
}

/// How many log lines contain `needle`.
fn log_count(node: &ProcNode, needle: &str) -> usize {
    node.log().lines().filter(|l| l.contains(needle)).count()
}

/// Runs `scenario`; on failure prints the node's log tail (before its tmpfs
/// goes away), then stops the node: cleanly after a pass, by SIGKILL otherwise.
async fn finish(mut node: ProcNode, result: Result<()>) -> Result<()> {
    match result {
        Ok(()) => node.stop().await,
        Err(e) => {
            eprintln!("---- node log tail ----\n{}", node.log_tail(40));
            node.kill();
            Err(e)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_refuses_writes_with_507_and_resumes_when_space_returns() -> Result<()> {
    // 24 MiB, 4 of them ballast, alarm below 8: about 10 MiB of writes fit
    // before the alarm, and deleting the ballast lifts free space above it.
    let fs = Tmpfs::mount(24 * MIB)?;
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 4 * MIB as usize])?;
    let min_free = 8 * MIB;
    let args = vec![
        "--min-free-disk-bytes".to_string(),
        min_free.to_string(),
        // No snapshot during the test: its size would depend on timing.
        "--snapshot-logs-since-last".into(),
        "100000".into(),
        // Log segments are zero-filled ahead of use; small ones take the volume's
        // space a little at a time, as writes arrive.
        "--log-segment-bytes".into(),
        "1048576".into(),
    ];
    let mut node = ProcNode::start(1, fs.path(), args).await?;
    let result = low_disk_scenario(&mut node, &ballast, min_free).await;
    finish(node, result).await
}

async fn low_disk_scenario(node: &mut ProcNode, ballast: &Path, min_free: u64) -> Result<()> {
    node.req(Method::PUT, "/v1/plugins/kv", deploy_kv_body())
        .await?
        .expect(201)?;
    assert_eq!(metric(node, "cairn_disk_alarm").await?, 0);
    assert_eq!(metric(node, "cairn_disk_min_free_bytes").await?, min_free);

    // Fill until the alarm: every answer before it must be a success.
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..MAX_WRITES {
        let r = put(node, i).await?;
        match r.status {
            200 => acked.push(i),
            507 => {
                refused = Some(r);
                break;
            }
            s => bail!(
                "write {i} failed with {s} before the disk alarm: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
    let refused = refused.ok_or_else(|| anyhow!("no 507 after {MAX_WRITES} writes"))?;
    ensure!(
        acked.len() >= 10,
        "only {} writes before the alarm",
        acked.len()
    );
    assert_eq!(refused.code().as_deref(), Some("insufficient-storage"));
    let msg = refused.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for part in [
        "min_free_disk_bytes",
        &min_free.to_string(),
        &node.data_dir.display().to_string(),
    ] {
        ensure!(msg.contains(part), "507 message lacks {part:?}: {msg}");
    }

    // While the alarm holds: writes (and deploys) stay refused, reads work,
    // the node is healthy and ready, and the gauges show it.
    let next = acked.len() + 1;
    for i in next..next + 3 {
        put(node, i).await?.expect(507)?;
    }
    node.req(Method::PUT, "/v1/plugins/kv2", deploy_kv_body())
        .await?
        .expect(507)?;
    check_readable(node, &acked).await?;
    node.get("/healthz").await?.expect(200)?;
    node.get("/readyz").await?.expect(200)?;
    assert_eq!(metric(node, "cairn_disk_alarm").await?, 1);
    let free = metric(node, "cairn_disk_free_bytes").await?;
    ensure!(free < min_free, "free {free} not below {min_free}");
    assert_eq!(metric(node, "cairn_raft_fatal").await?, 0);
    // One warning for the alarm, not one per refused request.
    assert_eq!(log_count(node, "disk alarm raised"), 1, "{}", node.log());

    // Free space: writes resume without a restart.
    std::fs::remove_file(ballast)?;
    let i = next + 10;
    put(node, i).await?.expect(200)?;
    acked.push(i);
    wait_metric(node, "cairn_disk_alarm", 0).await?;
    check_readable(node, &acked).await?;
    assert_eq!(log_count(node, "disk alarm cleared"), 1, "{}", node.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_write_stops_raft_visibly_and_a_restart_keeps_acked_writes() -> Result<()> {
    // Only the Raft log lives on the small filesystem (a separate log volume):
    // the node's own stderr log stays writable, so the test can check the
    // failure is logged once. The alarm is off, so the disk fills up.
    let dir = tempfile::tempdir()?;
    let log_dir = dir.path().join("node1").join("log");
    std::fs::create_dir_all(&log_dir)?;
    Tmpfs::mount_at(&log_dir, 8 * MIB)?;
    let mount = MountedAt(log_dir.clone());
    let args = vec![
        "--min-free-disk-bytes".to_string(),
        "0".into(),
        "--snapshot-logs-since-last".into(),
        "100000".into(),
        // Segments are zero-filled ahead of use: small ones fit the small volume
        // and fill it a segment at a time.
        "--log-segment-bytes".into(),
        "1048576".into(),
    ];
    let mut node = ProcNode::start(1, dir.path(), args).await?;
    let result = failed_disk_scenario(&mut node, &log_dir).await;
    let result = finish(node, result).await;
    drop(mount);
    result
}

async fn failed_disk_scenario(node: &mut ProcNode, log_dir: &Path) -> Result<()> {
    node.req(Method::PUT, "/v1/plugins/kv", deploy_kv_body())
        .await?
        .expect(201)?;
    let mut acked = Vec::new();
    let mut failed = None;
    for i in 0..MAX_WRITES {
        let r = put(node, i).await?;
        if r.status == 200 {
            acked.push(i);
        } else {
            failed = Some(r);
            break;
        }
    }
    let failed = failed.ok_or_else(|| anyhow!("the log never filled up"))?;
    ensure!(
        !acked.is_empty(),
        "no write succeeded before the disk filled"
    );
    ensure!(
        failed.status == 503 && failed.code().as_deref() == Some("storage-failed"),
        "the write that filled the disk got {} {:?}",
        failed.status,
        String::from_utf8_lossy(&failed.body)
    );
    let plain = |r: &Resp| -> Result<()> {
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for leak in ["LogId", "leader_id", "{", "std::io"] {
            ensure!(!msg.contains(leak), "{leak:?} leaks into {msg:?}");
        }
        ensure!(
            msg.contains("restart"),
            "message does not say restart: {msg}"
        );
        Ok(())
    };
    plain(&failed)?;

    // Later writes, health and readiness all say the storage failed.
    for i in acked.len() + 1..acked.len() + 4 {
        let r = put(node, i).await?.expect(503)?;
        assert_eq!(r.code().as_deref(), Some("storage-failed"));
        plain(&r)?;
    }
    for path in ["/healthz", "/readyz"] {
        eventually(
            WAIT,
            &format!("{path} reports the failed storage"),
            || async {
                let r = node.get(path).await?;
                Ok((r.status == 503 && r.code().as_deref() == Some("storage-failed")).then_some(r))
            },
        )
        .await
        .and_then(|r| plain(&r))?;
    }
    wait_metric(node, "cairn_raft_fatal", 1).await?;
    // Reads of this node's applied state still answer (stale reads need no Raft).
    let q = serde_json::to_vec(&json!({"get": {"key": key(0)}}))?;
    node.req(Method::POST, "/v1/plugins/kv/query?consistency=stale", q)
        .await?
        .expect(200)?;
    // Logged once at error level, however many requests failed.
    eventually(WAIT, "one error line for the failed storage", || async {
        let lines: Vec<String> = node
            .log()
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("storage-failed"))
            .map(str::to_string)
            .collect();
        match lines.len() {
            1 => Ok(Some(())),
            n => Err(anyhow!("{n} lines: {lines:#?}")),
        }
    })
    .await?;

    // Give the log room (grow the filesystem) and restart: everything
    // acknowledged is still there, and writes work again.
    node.kill();
    run_mount(&[
        "-o",
        &format!("remount,size={}", 64 * MIB),
        &log_dir.display().to_string(),
    ])?;
    node.restart().await?;
    eventually(WAIT, "ready after restart", || async {
        Ok((node.get("/readyz").await?.status == 200).then_some(()))
    })
    .await?;
    check_readable(node, &acked).await?;
    node.get("/healthz").await?.expect(200)?;
    let i = acked.len() + 10;
    put(node, i).await?.expect(200)?;
    assert_eq!(metric(node, "cairn_raft_fatal").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_leaders_disk_decides_and_followers_forward() -> Result<()> {
    // Node 1 (the leader) lives on a tmpfs the test can fill; node 3's
    // watermark is above any disk, so its alarm is raised from the start.
    let fs = Tmpfs::mount(32 * MIB)?;
    let others = tempfile::tempdir()?;
    let min_free = 8 * MIB;
    let mut nodes = vec![
        ProcNode::start(
            1,
            fs.path(),
            vec!["--min-free-disk-bytes".into(), min_free.to_string()],
        )
        .await?,
    ];
    let mut passed = false;
    let result = async {
        let join = vec!["--join-token".to_string(), nodes[0].join_token().await?];
        nodes.push(ProcNode::start(2, others.path(), join.clone()).await?);
        crate::harness::inherit_token(&nodes[0].addr(), &nodes[1].addr());
        let mut low = join.clone();
        low.extend(["--min-free-disk-bytes".into(), u64::MAX.to_string()]);
        nodes.push(ProcNode::start(3, others.path(), low).await?);
        crate::harness::inherit_token(&nodes[0].addr(), &nodes[2].addr());
        let all: Vec<&ProcNode> = nodes.iter().collect();
        wait_voter_ids(&all, &[1, 2, 3], WAIT).await?;
        let leader = wait_agreed_leader(&all, WAIT).await?;
        ensure!(
            leader == 1,
            "node {leader} leads; the scenario needs node 1"
        );
        let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);

        // Only a follower is low: it forwards writes, the leader takes them.
        assert_eq!(metric(n3, "cairn_disk_alarm").await?, 1);
        n3.req(Method::PUT, "/v1/plugins/kv", deploy_kv_body())
            .await?
            .expect(201)?;
        put(n3, 0).await?.expect(200)?;

        // The leader is low: writes through any node get its 507.
        let free = metric(n1, "cairn_disk_free_bytes").await?;
        let ballast = fs.path().join("ballast");
        let fill = free
            .checked_sub(min_free / 2)
            .context("tmpfs already low")?;
        std::fs::write(&ballast, vec![1u8; fill as usize])?;
        for via in [n2, n3, n1] {
            let r = put(via, 1).await?.expect(507)?;
            assert_eq!(r.code().as_deref(), Some("insufficient-storage"));
            let msg = r.json()["error"]["message"].to_string();
            let dir = n1.data_dir.display().to_string();
            ensure!(msg.contains(&dir), "507 does not name {dir}: {msg}");
        }
        check_readable(n2, &[0]).await?;
        assert_eq!(metric(n1, "cairn_disk_alarm").await?, 1);

        // Space returns on the leader: writes through a follower resume.
        std::fs::remove_file(&ballast)?;
        put(n2, 2).await?.expect(200)?;
        check_readable(n3, &[0, 2]).await?;
        for n in nodes.iter_mut() {
            n.stop().await?;
        }
        passed = true;
        Ok(())
    }
    .await;
    kill_all(&mut nodes, passed);
    result
}
