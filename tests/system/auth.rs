//! Client authentication on real nodes: the role × endpoint matrix on a
//! 3-node cluster (requests spread over all nodes, so followers authenticate,
//! forward the token, and the leader checks again); 401 without or with a
//! bad token; a revocation refused by every node once applied; open health
//! endpoints; the bootstrap admin token file; the CLI with no token typed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::harness::{
    Cluster, Node, Resp, WAIT, eventually, free_port, read_admin_token, send_without_token,
    test_config,
};
use crate::http_node::HttpNode;
use crate::process::{ProcNode, cairn_bin};

/// One request as a given token (or none) through `node`.
async fn as_token(
    node: &Node,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
) -> Result<Resp> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    send_without_token(
        node.http_client(),
        node.addr(),
        method,
        path,
        &headers,
        body.into(),
    )
    .await
}

/// Creates a token through `node` as admin; returns `(id, token, log_index)`.
async fn create_token(node: &Node, body: Value) -> Result<(String, String, u64)> {
    let r = node
        .req(Method::POST, "/v1/tokens", &[], body.to_string())
        .await?
        .expect(201)?
        .json();
    let field = |k: &str| {
        r[k].as_str()
            .map(str::to_string)
            .with_context(|| format!("no {k} in {r}"))
    };
    let index = r["log_index"]
        .as_u64()
        .with_context(|| format!("no log_index in {r}"))?;
    Ok((field("id")?, field("token")?, index))
}

/// Waits until every running node applied `index`.
async fn all_applied(cluster: &Cluster, index: u64) -> Result<()> {
    for n in cluster.running() {
        n.wait_applied(index).await?;
    }
    Ok(())
}

/// What a role may expect of a request.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Authorised: the handler answers with this status.
    Ok(u16),
    /// `403 forbidden`.
    Denied,
}
use Want::{Denied, Ok as Allowed};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_gets_exactly_its_endpoints_on_every_node() -> Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let n1 = cluster.node(1);
    let counter = cairn_host::plugins::example("counter").expect("counter");
    let kv = cairn_host::plugins::example("kv").expect("kv");
    n1.deploy("kv", kv).await?.expect(201)?;
    n1.deploy("bank", cairn_host::plugins::example("bank").expect("bank"))
        .await?
        .expect(201)?;

    let mut tokens = Vec::new();
    let mut last = 0;
    for (role, plugins) in [
        ("deployer", None),
        ("writer", None),
        ("reader", None),
        ("deployer", Some(["kv"])),
        ("writer", Some(["kv"])),
        ("reader", Some(["kv"])),
    ] {
        let mut body = json!({"role": role, "name": format!("{role} test")});
        if let Some(p) = plugins {
            body["plugins"] = json!(p);
        }
        let (_, token, index) = create_token(n1, body).await?;
        last = last.max(index);
        tokens.push((
            format!("{role}{}", if plugins.is_some() { "[kv]" } else { "" }),
            token,
        ));
    }
    let admin = n1.token().context("node 1 has an admin token")?;
    tokens.insert(0, ("admin".to_string(), admin));
    // A token works on a node once that node applied its creation.
    all_applied(&cluster, last).await?;

    let put = json!({"put": {"key": "k", "value": 1}}).to_string();
    let get = json!({"get": {"key": "k"}}).to_string();
    let open_bank = json!({"open": {"account": "ROLE"}}).to_string();
    // Columns: admin, deployer, writer, reader, deployer[kv], writer[kv], reader[kv].
    type Case = (&'static str, Method, String, Bytes, [Want; 7]);
    let d = |name: &str| format!("/v1/plugins/{name}");
    let counter_body = Bytes::from_static(counter);
    let cases: Vec<Case> = vec![
        // deploy/remove (each role with the right deploys its own plugin)
        (
            "deploy",
            Method::PUT,
            d("c-ROLE"),
            counter_body.clone(),
            [
                Allowed(201),
                Allowed(201),
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
            ],
        ),
        (
            "remove",
            Method::DELETE,
            d("c-ROLE"),
            Bytes::new(),
            [
                Allowed(200),
                Allowed(200),
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
            ],
        ),
        (
            // The same bytes and limits again: 200, unchanged (code is stored once).
            "redeploy kv",
            Method::PUT,
            d("kv"),
            Bytes::from_static(kv),
            [
                Allowed(200),
                Allowed(200),
                Denied,
                Denied,
                Allowed(200),
                Denied,
                Denied,
            ],
        ),
        // apply
        (
            "apply kv",
            Method::POST,
            "/v1/plugins/kv/apply".into(),
            put.clone().into(),
            [
                Allowed(200),
                Allowed(200),
                Allowed(200),
                Denied,
                Allowed(200),
                Allowed(200),
                Denied,
            ],
        ),
        (
            "apply bank",
            Method::POST,
            "/v1/plugins/bank/apply".into(),
            open_bank.into(),
            [
                Allowed(200),
                Allowed(200),
                Allowed(200),
                Denied,
                Denied,
                Denied,
                Denied,
            ],
        ),
        // query
        (
            "query kv",
            Method::POST,
            "/v1/plugins/kv/query".into(),
            get.clone().into(),
            [Allowed(200); 7],
        ),
        (
            "query bank",
            Method::POST,
            "/v1/plugins/bank/query".into(),
            json!({"total": {}}).to_string().into(),
            [
                Allowed(200),
                Allowed(200),
                Allowed(200),
                Allowed(200),
                Denied,
                Denied,
                Denied,
            ],
        ),
        (
            "plugin info",
            Method::GET,
            d("bank"),
            Bytes::new(),
            [
                Allowed(200),
                Allowed(200),
                Allowed(200),
                Allowed(200),
                Denied,
                Denied,
                Denied,
            ],
        ),
        (
            "plugin list",
            Method::GET,
            "/v1/plugins".into(),
            Bytes::new(),
            [Allowed(200); 7],
        ),
        // tokens
        (
            "list tokens",
            Method::GET,
            "/v1/tokens".into(),
            Bytes::new(),
            [Allowed(200), Denied, Denied, Denied, Denied, Denied, Denied],
        ),
        (
            "revoke token",
            Method::DELETE,
            "/v1/tokens/t999999".into(),
            Bytes::new(),
            [Allowed(404), Denied, Denied, Denied, Denied, Denied, Denied],
        ),
        // members: a removal of an unknown member passes authorisation, then is refused
        (
            "members",
            Method::DELETE,
            "/v1/cluster/members/99".into(),
            Bytes::new(),
            [Allowed(400), Denied, Denied, Denied, Denied, Denied, Denied],
        ),
        // settings: anyone reads them, only an admin changes them
        (
            "read settings",
            Method::GET,
            "/v1/cluster/settings".into(),
            Bytes::new(),
            [Allowed(200); 7],
        ),
        (
            "change settings",
            Method::PATCH,
            "/v1/cluster/settings".into(),
            "{}".into(),
            [Allowed(200), Denied, Denied, Denied, Denied, Denied, Denied],
        ),
        (
            "metrics",
            Method::GET,
            "/metrics".into(),
            Bytes::new(),
            [Allowed(200); 7],
        ),
        (
            "cluster",
            Method::GET,
            "/v1/cluster".into(),
            Bytes::new(),
            [Allowed(200); 7],
        ),
        (
            "state hash",
            Method::GET,
            "/v1/state-hash".into(),
            Bytes::new(),
            [Allowed(200); 7],
        ),
    ];
    let nodes: Vec<&Node> = cluster.running().collect();
    let mut failures = Vec::new();
    let mut sent = 0usize;
    for (what, method, path, body, wants) in &cases {
        for ((label, token), want) in tokens.iter().zip(wants) {
            let role_slug: String = label.chars().filter(char::is_ascii_alphanumeric).collect();
            let path = path.replace("ROLE", &role_slug);
            let body = match std::str::from_utf8(body) {
                Ok(text) => Bytes::from(text.replace("ROLE", &role_slug)),
                Err(_) => body.clone(),
            };
            // Spread over the nodes: followers forward writes to the leader.
            let node = nodes[sent % nodes.len()];
            sent += 1;
            let r = as_token(node, Some(token), method.clone(), &path, body).await?;
            let ok = match want {
                Allowed(status) => r.status == *status,
                Denied => r.status == 403 && r.code().as_deref() == Some("forbidden"),
            };
            if !ok {
                failures.push(format!(
                    "{what} as {label} via node {}: want {want:?}, got {} {}",
                    node.id,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        }
        // Without a token, or with a bad one: 401 on every client endpoint.
        let path = path.replace("ROLE", "admin");
        for bad in [None, Some("cairn_t1_00"), Some("not-a-token")] {
            let r = as_token(nodes[0], bad, method.clone(), &path, body.clone()).await?;
            if r.status != 401 || r.code().as_deref() != Some("unauthenticated") {
                failures.push(format!("{what} with token {bad:?}: got {}", r.status));
            }
            ensure!(
                r.headers.contains_key("www-authenticate"),
                "401 without WWW-Authenticate"
            );
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of the matrix failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    for node in &nodes {
        for open in ["/healthz", "/readyz"] {
            as_token(node, None, Method::GET, open, Bytes::new())
                .await?
                .expect(200)?;
        }
    }
    cluster.converge().await?;
    cluster.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_is_refused_by_every_node_once_applied() -> Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let kv = cairn_host::plugins::example("kv").expect("kv");
    cluster.node(1).deploy("kv", kv).await?.expect(201)?;
    // Created through node 2, revoked through node 3: both reach the leader.
    let (id, token, created_at) = create_token(
        cluster.node(2),
        json!({"role": "writer", "plugins": ["kv"], "name": "ci"}),
    )
    .await?;
    ensure!(
        token.starts_with(&format!("cairn_{id}_")),
        "token {id} looks like {token:.12}…"
    );
    all_applied(&cluster, created_at).await?;
    let put = json!({"put": {"key": "a", "value": 1}}).to_string();
    for n in cluster.running() {
        as_token(
            n,
            Some(&token),
            Method::POST,
            "/v1/plugins/kv/apply",
            put.clone(),
        )
        .await?
        .expect(200)?;
    }

    // The list never shows a secret or its hash.
    let list = cluster.node(3).get("/v1/tokens").await?.expect(200)?.json();
    let listed = list["tokens"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == json!(id)))
        .with_context(|| format!("{id} not listed in {list}"))?;
    assert_eq!(
        listed,
        &json!({"id": id, "name": "ci", "role": "writer", "plugins": ["kv"], "created_index": created_at})
    );
    ensure!(
        !list.to_string().contains(&token[token.len() - 16..]),
        "the list shows a secret"
    );

    let revoked = cluster
        .node(3)
        .req(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            &[],
            Bytes::new(),
        )
        .await?
        .expect(200)?
        .json();
    let revoked_at = revoked["log_index"].as_u64().context("log_index")?;
    all_applied(&cluster, revoked_at).await?;
    for n in cluster.running() {
        let r = as_token(
            n,
            Some(&token),
            Method::POST,
            "/v1/plugins/kv/apply",
            put.clone(),
        )
        .await?;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (401, Some("unauthenticated")),
            "node {}",
            n.id
        );
    }
    // Unknown ids are a 404; the last admin token stays.
    let r = cluster
        .node(1)
        .req(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            &[],
            Bytes::new(),
        )
        .await?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (404, Some("token-not-found"))
    );
    let admin_id = list["tokens"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["role"] == "admin"))
        .and_then(|t| t["id"].as_str())
        .context("an admin token is listed")?
        .to_string();
    let r = cluster
        .node(2)
        .req(
            Method::DELETE,
            &format!("/v1/tokens/{admin_id}"),
            &[],
            Bytes::new(),
        )
        .await?;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (409, Some("last-admin-token"))
    );
    // Bad create requests change nothing.
    for bad in [
        json!({"role": "root"}),
        json!({"role": "admin", "plugins": ["kv"]}),
        json!({"role": "reader", "plugins": []}),
    ] {
        let r = cluster
            .node(1)
            .req(Method::POST, "/v1/tokens", &[], bad.to_string())
            .await?;
        ensure!(
            r.status == 400,
            "{bad}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    cluster.converge().await?;
    cluster.stop_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_token_is_private_logged_by_path_and_made_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = ProcNode::start(1, dir.path(), vec![]).await?;
    let result = async {
        let path = node.data_dir.join(cairn_host::node::ADMIN_TOKEN_FILE);
        let token = read_admin_token(&node.data_dir).context("admin.token written")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode();
            ensure!(mode & 0o777 == 0o600, "admin.token has mode {mode:o}");
        }
        // The file is written before the line that names it.
        let shown = path.display().to_string();
        let log = eventually(WAIT, "the log names admin.token", || async {
            let log = node.log();
            Ok(log.contains(&shown).then_some(log))
        })
        .await?;
        ensure!(
            !log.contains(&token[token.len() - 32..]),
            "the log shows the secret"
        );
        node.restart().await?;
        ensure!(
            read_admin_token(&node.data_dir).as_ref() == Some(&token),
            "admin.token changed on restart"
        );
        let list = node.get("/v1/tokens").await?.expect(200)?.json();
        ensure!(
            list["tokens"].as_array().map(Vec::len) == Some(1),
            "one token after a restart: {list}"
        );
        ensure!(
            !node.log().contains(&token[token.len() - 32..]),
            "the log shows the secret"
        );
        Ok(())
    }
    .await;
    node.stop().await?;
    result
}

/// Runs the `cairn` binary in `cwd` with `env`, no token in the environment.
fn cairn(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<(bool, String, String)> {
    let mut cmd = Command::new(cairn_bin());
    cmd.current_dir(cwd)
        .env_remove("CAIRN_TOKEN")
        .env_remove("CAIRN_DATA_DIR")
        .env_remove("CAIRN_URL")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running cairn")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_needs_no_token_typed_next_to_the_data_dir() -> Result<()> {
    // The README's first session: a node with ./cairn-data, the CLI run beside it.
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let mut node = Node::start(test_config(1, port, dir.path().join("cairn-data"))).await?;
    let url = node.url();
    let cwd = dir.path();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(args);
        cairn(cwd, env, &all)
    };
    let (ok, out, err) = run(&[], &["deploy", "counter"])?;
    ensure!(ok, "deploy: {out}{err}");
    let (ok, out, err) = run(&[], &["apply", "counter", r#"{"increment":{"by":5}}"#])?;
    ensure!(ok && out.contains(r#"{"value":5}"#), "apply: {out}{err}");
    // The load generator sends the token too (its setup deploys kv).
    let (ok, out, err) = run(
        &[],
        &[
            "bench",
            "--workload",
            "apply",
            "--requests",
            "4",
            "--keys",
            "2",
        ],
    )?;
    ensure!(ok && out.contains("errors 0"), "bench: {out}{err}");

    // Elsewhere, CAIRN_DATA_DIR names the data dir.
    let elsewhere = tempfile::tempdir()?;
    let data_dir = dir.path().join("cairn-data");
    let env = [("CAIRN_DATA_DIR", data_dir.to_str().context("utf-8 path")?)];
    let (ok, out, err) = cairn(
        elsewhere.path(),
        &env,
        &["--url", &url, "query", "counter", r#"{"get":{}}"#],
    )?;
    ensure!(ok && out.contains(r#"{"value":5}"#), "query: {out}{err}");
    // Without either, a clear 401.
    let (ok, _, err) = cairn(elsewhere.path(), &[], &["--url", &url, "status"])?;
    ensure!(
        !ok && err.starts_with("error: unauthenticated"),
        "no token: {err}"
    );
    ensure!(
        err.contains("admin.token"),
        "the error names the file it looked for: {err}"
    );

    // Tokens through the CLI: a reader limited to counter.
    let (ok, out, err) = run(
        &[],
        &[
            "--json", "tokens", "create", "--role", "reader", "--plugin", "counter", "--name",
            "dash",
        ],
    )?;
    ensure!(ok, "create: {err}");
    let created: Value = serde_json::from_str(out.trim())?;
    let (id, token) = (
        created["id"].as_str().context("id")?,
        created["token"].as_str().context("token")?,
    );
    let (ok, _, err) = run(
        &[],
        &[
            "--token",
            token,
            "apply",
            "counter",
            r#"{"increment":{"by":1}}"#,
        ],
    )?;
    ensure!(
        !ok && err.starts_with("error: forbidden"),
        "reader apply: {err}"
    );
    let (ok, out, err) = run(
        &[("CAIRN_TOKEN", token)],
        &["query", "counter", r#"{"get":{}}"#],
    )?;
    ensure!(
        ok && out.contains(r#"{"value":5}"#),
        "reader query: {out}{err}"
    );
    let (ok, out, err) = run(&[], &["tokens", "list"])?;
    ensure!(
        ok && out.contains(id)
            && out.contains("reader")
            && !out.contains(&token[token.len() - 16..]),
        "list: {out}{err}"
    );
    let (ok, out, err) = run(&[], &["tokens", "revoke", id])?;
    ensure!(
        ok && out.contains(&format!("revoked token {id}")),
        "revoke: {out}{err}"
    );
    let (ok, _, err) = run(
        &[("CAIRN_TOKEN", token)],
        &["query", "counter", r#"{"get":{}}"#],
    )?;
    ensure!(
        !ok && err.starts_with("error: unauthenticated"),
        "revoked query: {err}"
    );
    node.stop().await
}
