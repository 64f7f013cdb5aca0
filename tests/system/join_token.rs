//! Joining with separate `cairn` processes: a node started with `--join` but
//! no token, with a malformed token, or with a token whose key was forged is
//! refused, gets no cluster secret, and `cairn serve` exits non-zero with the
//! reason; the cluster is untouched. With a token from `cairn join-token`
//! the node joins, becomes a voter and converges.

use std::time::Duration;

use anyhow::{Result, ensure};

use crate::harness::free_port;
use crate::http_node::HttpNode;
use crate::process::{ProcCluster, ProcNode, cairn_cli};

/// A refused start must end within this (the refusal is immediate; no retries).
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// `token` with its key replaced: the right format and addresses, a key the
/// cluster never derived.
fn forge(token: &str) -> String {
    let mut fields: Vec<&str> = token.splitn(5, '.').collect();
    let fake = "ab".repeat(32);
    fields[3] = &fake;
    fields.join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_needs_a_valid_join_token() -> Result<()> {
    let mut cluster = ProcCluster::start(1, &[]).await?;
    let first = cluster.node(1);
    // The CLI prints a token; it names node 1's peer address.
    let out = cairn_cli(vec!["--url".into(), first.url(), "join-token".into()]).await?;
    ensure!(out.status.success(), "cairn join-token: {out:?}");
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    ensure!(
        token.starts_with("cairn-join-1.") && token.ends_with(&first.peer_listen_addr()),
        "{token}"
    );

    let peer = first.peer_listen_addr();
    let refusals: [(Vec<String>, &str); 3] = [
        (vec!["--join".into(), peer.clone()], "--join-token"),
        (
            vec!["--join-token".into(), "not-a-token".into()],
            "malformed join token",
        ),
        (
            vec!["--join-token".into(), forge(&token)],
            "refused the join (unauthenticated)",
        ),
    ];
    for (i, (args, reason)) in refusals.into_iter().enumerate() {
        let id = 2 + i as u64;
        let node = ProcNode::spec(
            id,
            cluster.dir.path(),
            "127.0.0.1",
            free_port(),
            free_port(),
            Vec::new(),
            args.clone(),
        )?;
        let (status, log) = node.run_until_exit(EXIT_WITHIN).await?;
        ensure!(!status.success(), "{args:?}: exited {status}");
        ensure!(
            log.contains(reason),
            "{args:?}: log lacks {reason:?}:\n{log}"
        );
        ensure!(
            !node.data_dir.join("cluster.secret").exists(),
            "{args:?}: the refused node got the secret"
        );
    }
    cluster.wait_voter_ids(&[1]).await?;

    // With the real token (the harness asks node 1 for one) it joins.
    cluster.add(5, Vec::new()).await?;
    cluster.wait_voter_ids(&[1, 5]).await?;
    cluster.deploy_kv(1).await?;
    cluster.converge().await?;
    let status = cluster.node(5).cluster_json().await?;
    ensure!(
        status["members"].as_array().is_some_and(|m| m.len() == 2),
        "{status}"
    );
    cluster.finish().await
}
