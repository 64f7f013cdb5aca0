//! Test network built from Linux network namespaces: a bridge in the root namespace (which is
//! where the test's HTTP client runs) and one namespace per node, each joined to the bridge by a
//! veth pair, all on a private /24 that exists only on this machine for the life of the test.
//! Partitions are made by taking a node's bridge-side veth down. Everything is torn down on drop.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, bail};

/// Distinguishes several networks created by one test process (names also carry the pid).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `ip args…`; fails with its stderr if it exits non-zero.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("running ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why namespaces cannot be used here, or `None` if they can: root, `ip` present, and a probe
/// namespace can be created (and is removed again).
pub fn unsupported_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string);
    if euid.as_deref() != Some("0") {
        return Some(format!("not running as root (euid {euid:?})"));
    }
    let probe = format!("cairn-{}-probe", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e:#}"));
    }
    let _ = ip(&["netns", "del", &probe]);
    None
}

/// The names embedded in this module's objects: `cairn-<pid>-<seq>-…` namespaces and
/// `cb<pid>-<seq>` / `cv<pid>-<seq>n<i>` links. Returns the owning pid.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("cairn-")
        .or_else(|| name.strip_prefix("cb"))
        .or_else(|| name.strip_prefix("cv"))?;
    rest.split('-').next()?.parse().ok()
}

/// Removes namespaces and links left behind by earlier test processes that died without running
/// their destructors (e.g. SIGKILLed by a CI timeout): only objects named by this module whose
/// owning pid no longer exists, and only processes inside such a namespace.
pub fn remove_stale() {
    let dead = |pid: u32| {
        pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    };
    for line in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        if ns.starts_with("cairn-") && owner_pid(ns).is_some_and(dead) {
            kill_all_in(ns);
            let _ = ip(&["netns", "del", ns]);
        }
    }
    for name in link_names() {
        if (name.starts_with("cb") || name.starts_with("cv")) && owner_pid(&name).is_some_and(dead)
        {
            let _ = ip(&["link", "del", &name]);
        }
    }
}

/// SIGKILLs every process inside namespace `ns` (only ever processes a test put there).
fn kill_all_in(ns: &str) {
    for pid in ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
    {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

/// Names of the links in the root namespace (`ip -o link` prints `idx: name[@peer]: …`).
pub fn link_names() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Names of the network namespaces (`ip netns list` prints `name [(id: n)]`).
pub fn netns_names() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// A bridge plus `n` namespaces `ns[i]` with address `ips[i]`; the root namespace is `.1`.
pub struct TestNet {
    pub bridge: String,
    pub namespaces: Vec<String>,
    /// Bridge-side end of each namespace's veth; down = that namespace is cut off.
    pub veths: Vec<String>,
    pub ips: Vec<String>,
    torn_down: bool,
}

impl TestNet {
    /// Builds the network. On error the partly built network is removed by `Drop`.
    pub fn create(n: usize) -> Result<TestNet> {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let subnet = free_subnet()?;
        let net = TestNet {
            bridge: format!("cb{tag}"),
            namespaces: (1..=n).map(|i| format!("cairn-{tag}-n{i}")).collect(),
            veths: (1..=n).map(|i| format!("cv{tag}n{i}")).collect(),
            ips: (1..=n).map(|i| format!("{subnet}.{}", i + 1)).collect(),
            torn_down: false,
        };
        // Linux interface names are at most 15 bytes.
        for name in net.veths.iter().chain([&net.bridge]) {
            assert!(name.len() <= 15, "interface name {name} too long");
        }
        let bridge = net.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let (ns, veth, addr) = (
                net.namespaces[i].clone(),
                net.veths[i].clone(),
                net.ips[i].clone(),
            );
            ip(&["netns", "add", &ns])?;
            // The namespace end is created inside the namespace directly as `eth0`.
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Cuts namespace `i` off from the bridge (so from every other node and the client).
    pub fn isolate(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.veths[i], "down"]).map(drop)
    }

    /// Reconnects namespace `i` to the bridge.
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.veths[i], "up"]).map(drop)
    }

    /// Removes namespaces, veths and bridge. Processes inside the namespaces must already be
    /// gone (a namespace with live processes survives `ip netns del`), so any left are killed.
    /// Idempotent; errors (objects already gone) are ignored, and [`TestNet::leftovers`] checks.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        let existing = netns_names();
        for ns in self.namespaces.iter().filter(|ns| existing.contains(ns)) {
            kill_all_in(ns);
        }
        // Veths first: deleting the root end removes the pair at once, whereas a namespace's
        // own devices are destroyed asynchronously after `ip netns del`.
        let links = link_names();
        for link in self.veths.iter().chain([&self.bridge]) {
            if links.contains(link) {
                let _ = ip(&["link", "del", link]);
            }
        }
        for ns in self.namespaces.iter().filter(|ns| existing.contains(ns)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }

    /// Namespaces and links of this network that still exist (after teardown: none).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = netns_names()
            .into_iter()
            .filter(|n| self.namespaces.contains(n))
            .collect();
        left.extend(
            link_names()
                .into_iter()
                .filter(|l| self.veths.contains(l) || *l == self.bridge),
        );
        left
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// `10.213.<x>` for an `x` that no address in the root namespace uses yet, starting from one
/// derived from the pid so that concurrent test processes pick different subnets.
fn free_subnet() -> Result<String> {
    let addrs = ip(&["-4", "-o", "addr", "show"])?;
    let start = std::process::id() % 250;
    for k in 0..250 {
        let x = (start + k) % 250 + 1;
        let prefix = format!("10.213.{x}.");
        if !addrs.contains(&format!(" {prefix}")) {
            return Ok(format!("10.213.{x}"));
        }
    }
    bail!("no free 10.213.x.0/24 subnet")
}
