//! The status page in a real headless Chromium, driven over WebDriver: it names
//! the leader, a write made while it is open shows up without a reload, the
//! leader's page shows replication progress and request rates, and a
//! screenshot lands in `target/dashboard.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`tests/run.sh` installs them).
//! Without `chromedriver` the test fails and says so: a browser test that
//! passes without a browser would prove nothing.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::{Cluster, Node, eventually, free_port};

/// Bound of one WebDriver command (a page load, a find, a screenshot).
const STEP: Duration = Duration::from_secs(15);
/// How long the page gets to show something (it polls every second).
const PAGE_WAIT: Duration = Duration::from_secs(15);
/// How long chromedriver gets to start listening.
const DRIVER_START: Duration = Duration::from_secs(10);
/// A `chromedriver` child process, killed when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` as found on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

async fn start_chromedriver() -> Result<Chromedriver> {
    let exe = on_path("chromedriver").ok_or_else(|| {
        anyhow!(
            "chromedriver is not installed: this test drives headless Chromium. \
             Run tests/run.sh, or: apt-get install chromium chromium-driver"
        )
    })?;
    let port = free_port();
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let driver = Chromedriver { child, port };
    eventually(DRIVER_START, "chromedriver to listen", || async move {
        Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;
    Ok(driver)
}

/// A headless Chromium session with a private profile in `profile`.
async fn open_browser(driver: &Chromedriver, profile: &Path) -> Result<Client> {
    let mut chrome = json!({
        "args": [
            "--headless=new",
            // Tests run as root in CI containers, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
            format!("--user-data-dir={}", profile.display()),
        ]
    });
    if let Some(binary) = on_path("chromium") {
        chrome["binary"] = json!(binary);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), chrome);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let url = format!("http://127.0.0.1:{}", driver.port);
    step(
        "opening a Chromium session",
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url),
    )
    .await
}

/// Runs one WebDriver command, bounded by [`STEP`].
async fn step<T, E>(what: &str, fut: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| anyhow!("{what}: no answer within {STEP:?}"))?
        .with_context(|| what.to_string())
}

/// The text of the element matching `css`, or `None` if there is none yet.
async fn text(browser: &Client, css: &str) -> Result<Option<String>> {
    let found = step(
        &format!("finding {css}"),
        browser.find_all(Locator::Css(css)),
    )
    .await?;
    match found.first() {
        Some(e) => Ok(Some(step(&format!("reading {css}"), e.text()).await?)),
        None => Ok(None),
    }
}

/// Waits until the element matching `css` has text satisfying `ok`; returns it.
async fn wait_text(
    browser: &Client,
    css: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> Result<String> {
    eventually(PAGE_WAIT, what, || async {
        let t = text(browser, css).await?;
        match t {
            Some(t) if ok(&t) => Ok(Some(t)),
            other => Err(anyhow!("{css} shows {other:?}")),
        }
    })
    .await
}

/// Runs `script` in the page and returns its result.
async fn js(browser: &Client, script: &str) -> Result<Value> {
    step("running a script", browser.execute(script, vec![])).await
}

/// `target/` of this build, from the test binary's path (`target/<profile>/deps/system-…`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot find target/ above {}", exe.display()))
}

/// The admin token the harness uses for `node`: the page must send it.
fn token(node: &Node) -> String {
    crate::harness::token_for(node.addr()).expect("the harness knows every node's token")
}

/// The page at `node` with the token in the fragment.
fn page_url(node: &Node) -> String {
    format!("{}/#token={}", node.url(), token(node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_shows_the_leader_and_updates_without_reload() -> Result<()> {
    // Before anything else, so a machine without a browser fails at once.
    let driver = start_chromedriver().await?;
    let profile = tempfile::tempdir()?;
    let mut cluster = Cluster::start(3).await?;
    let browser = open_browser(&driver, profile.path()).await?;
    // Close the session whatever happened, so Chromium does not outlive the test.
    let outcome = drive(&cluster, &browser).await;
    let closed = step("closing the browser", browser.close()).await;
    cluster.stop_all().await?;
    outcome?;
    closed
}

async fn drive(cluster: &Cluster, browser: &Client) -> Result<()> {
    let leader_id = cluster.wait_leader().await?;
    let leader = cluster.node(leader_id);
    let follower = cluster
        .running()
        .find(|n| n.id != leader_id)
        .ok_or_else(|| anyhow!("no follower"))?;

    // A follower's page names the leader.
    step("loading the page", browser.goto(&page_url(follower))).await?;
    wait_text(browser, "#leader-id", "the page to name the leader", |t| {
        t == leader_id.to_string()
    })
    .await?;
    assert_eq!(
        text(browser, "#node-id").await?.as_deref(),
        Some(follower.id.to_string().as_str())
    );
    // The token moved from the address bar into this tab's storage.
    let url = step("reading the url", browser.current_url()).await?;
    assert_eq!(url.fragment(), None, "token left in the address bar: {url}");
    assert_eq!(
        js(browser, "return sessionStorage.getItem('cairn-token')").await?,
        json!(token(follower))
    );
    assert_eq!(text(browser, "tr[data-plugin='counter']").await?, None);
    // Replication progress is the leader's to know: the follower's page links there.
    wait_text(
        browser,
        "#members-note a",
        "a link to the leader's page",
        |t| t == format!("node {leader_id}'s page"),
    )
    .await?;

    // A write made now shows up without a reload: a reload would drop this marker.
    js(browser, "window.cairnNoReload = true; return true").await?;
    leader
        .deploy(
            "counter",
            cairn_host::plugins::example("counter").expect("built in"),
        )
        .await?
        .expect(201)?;
    let applied = leader
        .apply("counter", &json!({"increment": {"by": 5}}))
        .await?
        .expect(200)?;
    let index = applied
        .header_u64("cairn-log-index")
        .ok_or_else(|| anyhow!("apply answered without cairn-log-index"))?;
    wait_text(
        browser,
        "tr[data-plugin='counter']",
        "the deployed plugin on the page",
        |t| t.starts_with("counter"),
    )
    .await?;
    wait_text(
        browser,
        "#applied",
        &format!("the page to show applied index {index}"),
        |t| t.parse::<u64>().is_ok_and(|i| i >= index),
    )
    .await?;
    assert_eq!(
        js(browser, "return window.cairnNoReload === true").await?,
        json!(true),
        "the page reloaded instead of updating in place"
    );

    // The leader's page shows how far each follower got, and request rates.
    step("loading the leader's page", browser.goto(&page_url(leader))).await?;
    // Members are listed by id, so node N is row N.
    for node in cluster.running().filter(|n| n.id != leader_id) {
        let matched = format!("#members tbody tr:nth-child({}) td:nth-child(4)", node.id);
        wait_text(
            browser,
            &matched,
            &format!("node {}'s matched index on the leader's page", node.id),
            |t| t.parse::<u64>().is_ok_and(|i| i >= index),
        )
        .await?;
    }
    // Applies made while the page watches give a rate above zero.
    let rates = "return [...document.querySelectorAll('#rates tbody td:nth-child(2)')]\
                 .map((td) => td.textContent)";
    eventually(PAGE_WAIT, "a request rate above zero", || async {
        leader
            .apply("counter", &json!({"increment": {"by": 1}}))
            .await?
            .expect(200)?;
        let shown = js(browser, rates).await?;
        let moving = shown.as_array().is_some_and(|cells| {
            cells
                .iter()
                .filter_map(|c| c.as_str()?.parse::<f64>().ok())
                .any(|r| r > 0.0)
        });
        Ok(moving.then_some(()))
    })
    .await?;

    // The whole page in one picture, for people (and the README).
    // The window's height is the page's plus what the window itself takes.
    let height = js(
        browser,
        "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight",
    )
    .await?
    .as_u64()
    .unwrap_or(900)
    .clamp(600, 2000) as u32;
    step("resizing", browser.set_window_size(1280, height)).await?;
    let png = step("taking a screenshot", browser.screenshot()).await?;
    if !png.starts_with(b"\x89PNG") {
        bail!("the screenshot is not a PNG");
    }
    let path = target_dir()?.join("dashboard.png");
    std::fs::write(&path, &png).with_context(|| format!("writing {}", path.display()))?;

    check_parsers(browser).await
}

/// The page's own parsers on inputs the cluster does not produce yet:
/// latency histograms in the OpenMetrics text a metrics library writes, and
/// an event stream framed as Server-Sent Events.
async fn check_parsers(browser: &Client) -> Result<()> {
    let got = js(
        browser,
        r##"const m = cairnStatus.parseMetrics([
             "# TYPE cairn_apply_seconds histogram",
             'cairn_apply_seconds_bucket{plugin="bank",le="0.001"} 50',
             'cairn_apply_seconds_bucket{plugin="bank",le="0.01"} 90',
             'cairn_apply_seconds_bucket{plugin="bank",le="+Inf"} 100',
             'cairn_apply_seconds_count{plugin="bank"} 100',
             'cairn_apply_seconds_created{plugin="bank"} 1.7e9',
             "# EOF", ""].join("\n"));
           const b = [...m.values()].filter((s) => s.name.endsWith("_bucket"))
             .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), n: s.value }));
           return [m.size, b.length, ...[0.5, 0.7, 0.99].map((q) => cairnStatus.quantile(b, q))];"##,
    )
    .await?;
    let got: Vec<Option<f64>> = serde_json::from_value(got)?;
    assert_eq!(&got[..2], &[Some(5.0), Some(3.0)], "{got:?}");
    let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 1e-9);
    assert!(close(got[2], 0.001) && close(got[3], 0.0055), "{got:?}");
    assert_eq!(got[4], None, "p99 falls in +Inf: {got:?}");

    let shown = js(
        browser,
        r#"const stream = new Response('id: 7-0\nevent: transfer\ndata: {"amount": 30}\n\n' +
             ': heartbeat\n\nid: 7-1\r\nevent: note\r\ndata: line one\r\ndata: line two\r\n\r\n').body;
           return cairnStatus.readStream(stream, new AbortController().signal).then(() =>
             [...document.querySelectorAll('#events li')].slice(0, 2)
               .map((li) => [...li.children].map((c) => c.textContent)));"#,
    )
    .await?;
    assert_eq!(
        shown,
        json!([
            ["7-1", "note", "line one\nline two"],
            ["7-0", "transfer", "{\"amount\":30}"]
        ])
    );
    Ok(())
}
