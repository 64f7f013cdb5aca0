//! Network partition with real `cairn` processes, each in its own network namespace: the leader
//! is cut off from the other two nodes and from the client; the majority elects a new leader and
//! keeps acknowledging writes; after healing, the old leader follows the new one, every
//! acknowledged put is there and all three nodes converge to the same state hash.

/// Namespaces, bridge and veths for this test.
mod netns;

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use bytes::Bytes;
use http::Method;

use crate::harness::{WAIT, eventually};
use crate::http_node::{
    HttpNode, agreed_leader, converge_http, wait_agreed_leader, wait_voter_ids,
};
use crate::process::{ProcNode, check_acked, kill_all, writers::Writers};
use netns::{TestNet, remove_stale, unsupported_reason};

/// Every node listens on this port of its own namespace's address.
const PORT: u16 = 7070;
/// Deadline for elections and catch-up that involve a healed link: TCP connections opened
/// before the partition first have to time out or be replaced.
const HEAL_WAIT: Duration = Duration::from_secs(45);

/// The nodes and their network. Dropping it (also on failure or panic) kills every process
/// first, then removes the network; unless the test passed it prints each node's log tail.
struct Lab {
    nodes: Vec<ProcNode>,
    net: TestNet,
    dir: tempfile::TempDir,
    passed: bool,
}

impl Lab {
    /// The nodes with these ids, in that order.
    fn subset(&self, ids: &[u64]) -> Vec<&ProcNode> {
        ids.iter().map(|&id| self.node(id)).collect()
    }

    fn node(&self, id: u64) -> &ProcNode {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("no such node")
    }

    /// Starts node `id` (1-based) in namespace `id`; nodes after the first join with a token
    /// from node 1. Namespace addresses are not loopback, so the nodes serve plain HTTP only
    /// with `--insecure` (the network exists only inside this machine for the test).
    async fn start_node(&mut self, id: u64) -> Result<()> {
        let i = (id - 1) as usize;
        let mut extra = vec!["--insecure".to_string()];
        if let Some(first) = self.nodes.first() {
            extra.extend(["--join-token".to_string(), first.join_token().await?]);
        }
        // `ip netns exec` execs, so the child's pid is cairn's own.
        let wrapper = ["ip", "netns", "exec", &self.net.namespaces[i]]
            .map(String::from)
            .to_vec();
        let node =
            ProcNode::start_in(id, self.dir.path(), &self.net.ips[i], PORT, wrapper, extra).await?;
        self.nodes.push(node);
        Ok(())
    }

    /// One look: the leader that every node in `ids` names, if they agree and it says it leads.
    async fn agreed_leader(&self, ids: &[u64]) -> Result<Option<u64>> {
        agreed_leader(&self.subset(ids)).await
    }

    async fn wait_leader(&self, ids: &[u64], timeout: Duration) -> Result<u64> {
        wait_agreed_leader(&self.subset(ids), timeout).await
    }

    /// Waits until every node in `ids` lists exactly those voters.
    async fn wait_voters(&self, ids: &[u64]) -> Result<()> {
        wait_voter_ids(&self.subset(ids), ids, WAIT).await
    }

    /// Waits until all nodes report the same applied index and state hash.
    async fn converge(&self, timeout: Duration) -> Result<(u64, String)> {
        converge_http(&self.nodes.iter().collect::<Vec<_>>(), timeout).await
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        kill_all(&mut self.nodes, self.passed);
        self.net.teardown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_leader_is_replaced_and_rejoins_as_follower() -> Result<()> {
    if let Some(why) = unsupported_reason() {
        eprintln!("SKIPPED: partition test needs network namespaces: {why}");
        return Ok(());
    }
    let t0 = Instant::now();
    remove_stale();
    let mut lab = Lab {
        nodes: Vec::new(),
        net: TestNet::create(3)?,
        dir: tempfile::tempdir()?,
        passed: false,
    };
    let all = [1u64, 2, 3];

    lab.start_node(1).await?;
    lab.wait_leader(&[1], WAIT).await?;
    for id in [2, 3] {
        lab.start_node(id).await?;
        lab.wait_voters(&all[..id as usize]).await?;
    }
    let old = lab.wait_leader(&all, WAIT).await?;
    let wasm = cairn_host::plugins::example("kv").expect("kv example plugin");
    lab.node(old)
        .send(Method::PUT, "/v1/plugins/kv", Bytes::from_static(wasm))
        .await?
        .expect(201)?;

    // Some history before the partition, written through every node.
    let addrs: Vec<String> = lab.nodes.iter().map(ProcNode::addr).collect();
    let before = Writers::spawn("a", 2, addrs.clone(), 1_000);
    before.wait_acked(30, Duration::from_secs(30)).await?;
    let mut acked = before.stop().await?;

    // Partition: the old leader's bridge port goes down, so its namespace can reach neither
    // the other two namespaces nor the client in the root namespace.
    lab.net.isolate((old - 1) as usize)?;
    let t_part = Instant::now();
    let probe = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(lab.node(old).addr()),
    )
    .await;
    ensure!(
        !matches!(probe, Ok(Ok(_))),
        "the isolated node {old} is still reachable from the client"
    );

    let majority: Vec<u64> = all.iter().copied().filter(|&id| id != old).collect();
    let majority_addrs: Vec<String> = majority.iter().map(|&id| lab.node(id).addr()).collect();
    let during = Writers::spawn("p", 4, majority_addrs, 5_000);
    let new_leader = lab.wait_leader(&majority, HEAL_WAIT).await?;
    let t_elected = t_part.elapsed();
    during.wait_acked(50, Duration::from_secs(60)).await?;
    let t_50 = t_part.elapsed();
    // Stopped before healing, so every put counted here was acknowledged during the partition.
    let during = during.stop().await?;
    ensure!(
        during.len() >= 50,
        "only {} puts acknowledged",
        during.len()
    );
    let n_during = during.len();
    acked.extend(during);

    lab.net.heal((old - 1) as usize)?;
    let t_heal = Instant::now();
    // The old leader must step down and follow a leader from the majority (the one elected
    // during the partition, or another majority node if the old one's rejoin forced an election:
    // the old leader itself cannot win, its log lacks the partition's committed puts).
    let leader_after = eventually(
        HEAL_WAIT,
        "the old leader following a new leader",
        || async {
            let Some(l) = lab.agreed_leader(&majority).await? else {
                return Ok(None);
            };
            let c = lab.node(old).cluster_json().await?;
            if c["state"] == "follower" && c["leader_id"].as_u64() == Some(l) {
                Ok(Some(l))
            } else {
                Err(anyhow!("old leader {old} reports {c}"))
            }
        },
    )
    .await?;
    let t_rejoined = t_heal.elapsed();

    // Writes through all three again, the old leader included (it forwards to the new one).
    let after = Writers::spawn("h", 2, addrs, 1_000);
    after.wait_acked(20, Duration::from_secs(30)).await?;
    acked.extend(after.stop().await?);

    let found = lab.node(old).kv_scan("").await?;
    check_acked(&acked, &found)?;
    let (applied, hash) = lab.converge(HEAL_WAIT).await?;

    for n in &mut lab.nodes {
        n.stop().await?;
    }
    lab.passed = true;
    lab.net.teardown();
    let left = lab.net.leftovers();
    ensure!(
        left.is_empty(),
        "network objects left after teardown: {left:?}"
    );
    eprintln!(
        "partition: isolated leader {old}; node {new_leader} elected after {t_elected:?}; \
         {n_during} puts acknowledged during the partition (the 50th after {t_50:?}); after healing node {old} followed \
         {leader_after} within {t_rejoined:?}; {} acknowledged puts all present; converged at \
         {applied} {hash}; total {:?}",
        acked.len(),
        t0.elapsed()
    );
    Ok(())
}
