//! TLS with separate `cairn` processes: a CA and a server certificate made in
//! the test (rcgen); two nodes serve both ports over TLS, the second joins
//! through the first's TLS peer port; the CLI deploys, applies through the
//! follower (which forwards to the leader over TLS) and queries, trusting the
//! CA with `--cacert`, and fails without it. A node refuses to serve plain
//! HTTP on a non-loopback address unless `--insecure`, which it warns about
//! at every start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, ensure};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::harness::free_port;
use crate::http_node::{wait_agreed_leader, wait_voter_ids};
use crate::process::{ProcNode, cairn_bin, cairn_cli, kill_all, run_to_exit};

/// `ca.pem`, and `cert.pem` + `key.pem` for 127.0.0.1 and localhost signed by it.
fn make_pki(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cairn test CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let cert = params.signed_by(&key, &issuer)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_works_end_to_end_over_tls_with_cacert() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca, cert, key) = make_pki(dir.path())?;
    let path = |p: &Path| p.display().to_string();
    let tls: Vec<String> = vec![
        "--tls-cert".into(),
        path(&cert),
        "--tls-key".into(),
        path(&key),
        "--cacert".into(),
        path(&ca),
    ];
    let mut nodes = vec![ProcNode::start_tls(1, dir.path(), tls.clone(), &ca).await?];
    let mut passed = false;
    let result = async {
        wait_agreed_leader(&[&nodes[0]], crate::harness::WAIT).await?;
        let token = nodes[0].join_token().await?;
        ensure!(
            token.contains("https://127.0.0.1:"),
            "the token names TLS peers: {token}"
        );
        let mut args = tls.clone();
        args.extend(["--join-token".into(), token]);
        nodes.push(ProcNode::start_tls(2, dir.path(), args, &ca).await?);
        let all: Vec<&ProcNode> = nodes.iter().collect();
        wait_voter_ids(&all, &[1, 2], crate::harness::WAIT).await?;

        let cli = |url: String, rest: &[&str]| {
            let mut args = vec!["--url".to_string(), url, "--cacert".into(), path(&ca)];
            args.extend(rest.iter().map(|s| s.to_string()));
            cairn_cli(args)
        };
        let (leader, follower) = (nodes[0].url(), nodes[1].url());
        ensure!(follower.starts_with("https://"), "{follower}");
        let out = cli(leader.clone(), &["deploy", "counter"]).await?;
        ensure!(out.status.success(), "deploy: {}", text(&out));
        // Through the follower: it forwards to the leader over TLS.
        let out = cli(
            follower.clone(),
            &["apply", "counter", r#"{"increment":{"by":5}}"#],
        )
        .await?;
        ensure!(
            out.status.success() && text(&out).contains(r#""value":5"#),
            "apply via the follower: {}",
            text(&out)
        );
        let out = cli(follower.clone(), &["query", "counter", r#"{"get":{}}"#]).await?;
        ensure!(text(&out).contains(r#""value":5"#), "query: {}", text(&out));
        let out = cli(follower.clone(), &["status"]).await?;
        ensure!(
            text(&out).contains("https://127.0.0.1:"),
            "status: {}",
            text(&out)
        );

        // Without the CA the server is not trusted; plain HTTP gets no answer.
        let out = cairn_cli(vec!["--url".into(), follower.clone(), "status".into()]).await?;
        ensure!(
            !out.status.success() && text(&out).to_lowercase().contains("certificate"),
            "without --cacert: {}",
            text(&out)
        );
        let plain = follower.replace("https://", "http://");
        let out = cairn_cli(vec!["--url".into(), plain, "status".into()]).await?;
        ensure!(
            !out.status.success(),
            "plain http to a TLS port: {}",
            text(&out)
        );
        for n in &mut nodes {
            n.stop().await?;
        }
        passed = true;
        Ok(())
    }
    .await;
    kill_all(&mut nodes, passed);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_needs_insecure_which_warns_at_every_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // 0.0.0.0 is refused before anything is bound, for either port.
    for (listen, peer) in [("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "0.0.0.0")] {
        let data_dir = dir.path().join(format!("refused-{listen}"));
        let log = dir.path().join(format!("refused-{listen}.log"));
        let mut cmd = std::process::Command::new(cairn_bin());
        cmd.arg("serve")
            .args(["--listen", &format!("{listen}:{}", free_port())])
            .args(["--peer-listen", &format!("{peer}:{}", free_port())])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        let status = run_to_exit(cmd, &log, Duration::from_secs(20)).await?;
        let log = std::fs::read_to_string(&log)?;
        ensure!(!status.success(), "started without TLS on {listen}/{peer}");
        ensure!(
            log.contains("without TLS") && log.contains("--insecure"),
            "{log}"
        );
        ensure!(
            !data_dir.join("cluster.secret").exists(),
            "a refused node made a cluster"
        );
    }
    // --insecure is warned about at every start.
    let mut node = ProcNode::start(2, dir.path(), vec!["--insecure".into()]).await?;
    node.restart().await?;
    let warnings = node
        .log()
        .matches("--insecure: the client and peer ports serve plain HTTP")
        .count();
    node.stop().await?;
    ensure!(warnings == 2, "{warnings} warnings in:\n{}", node.log());
    Ok(())
}
