//! Watching events: a watcher on a follower sees exactly the events of 1,000
//! transfers made through the leader, in log order, across a disconnect and a
//! `Last-Event-ID` resume; the leader's stream is the same; a position below
//! the cluster's event retention answers `410 gone` with the oldest index;
//! streams per node are bounded.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use cairn_host::cli::events::{EventStream, Refused, SseEvent, Start};
use cairn_host::http_client::{self, HttpClient};
use http::Method;
use serde_json::{Value, json};

use crate::harness::{Cluster, send_to};

const TRANSFERS: u64 = 1000;
/// Concurrent clients making the transfers (keeps the test a few seconds long).
const CLIENTS: u64 = 8;
const ACCOUNTS: u64 = 4;
/// Event streams each node serves in this test.
const MAX_STREAMS: u64 = 2;
/// The nodes' heartbeat interval in this test.
const HEARTBEAT_MS: u64 = 100;
/// Longest wait for one event while transfers are flowing.
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// Reads `n` events from `stream`.
async fn take(stream: &mut EventStream, n: usize) -> Result<Vec<SseEvent>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let event = tokio::time::timeout(EVENT_WAIT, stream.next())
            .await
            .map_err(|_| anyhow!("no event within {EVENT_WAIT:?} after {} events", out.len()))??
            .ok_or_else(|| anyhow!("the node ended the stream after {} events", out.len()))?;
        out.push(event);
    }
    Ok(out)
}

/// Makes `TRANSFERS` transfers through `leader_addr` from `CLIENTS` tasks;
/// returns the expected events in log order: `(id, topic, payload)`.
async fn transfer_all(leader_addr: String) -> Result<Vec<(String, String, Value)>> {
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        let addr = leader_addr.clone();
        tasks.push(tokio::spawn(async move {
            let client = http_client::new_client();
            let mut made = Vec::new();
            for i in (client_no..TRANSFERS).step_by(CLIENTS as usize) {
                let (from, to) = (
                    format!("a{}", i % ACCOUNTS),
                    format!("a{}", (i + 1) % ACCOUNTS),
                );
                let amount = i + 1; // unique, so every event is told apart
                let body = json!({"transfer": {"from": from, "to": to, "amount": amount}});
                let path = "/v1/plugins/bank/apply";
                let resp = send_to(
                    &client,
                    &addr,
                    Method::POST,
                    path,
                    &[],
                    body.to_string().into(),
                )
                .await?
                .expect(200)?;
                let index = resp
                    .header_u64(cairn_host::api::LOG_INDEX_HEADER)
                    .context("an apply answers its log index")?;
                made.push((
                    format!("{index}-0"),
                    "transfer".to_string(),
                    json!({"from": from, "to": to, "amount": amount}),
                    index,
                ));
            }
            anyhow::Ok(made)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by_key(|e| e.3);
    Ok(all.into_iter().map(|(id, t, p, _)| (id, t, p)).collect())
}

fn as_tuples(events: &[SseEvent]) -> Result<Vec<(String, String, Value)>> {
    events
        .iter()
        .map(|e| {
            Ok((
                e.id.clone(),
                e.topic.clone(),
                serde_json::from_str(&e.data)?,
            ))
        })
        .collect()
}

async fn connect(client: &HttpClient, addr: &str, start: Start) -> Result<EventStream> {
    let token = crate::harness::token_for(addr);
    EventStream::connect(client, addr, token.as_deref(), "bank", &start).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_streams_every_transfer_event_across_a_resume() -> Result<()> {
    let mut cluster = Cluster::start_with(3, &|c| {
        c.max_event_streams = MAX_STREAMS;
        c.sse_heartbeat_interval_ms = HEARTBEAT_MS;
    })
    .await?;
    let leader_id = cluster.wait_leader().await?;
    let follower_id = (1..=3).find(|id| *id != leader_id).expect("a follower");
    let (leader, follower) = (cluster.node(leader_id), cluster.node(follower_id));
    leader
        .deploy(
            "bank",
            cairn_host::plugins::example("bank").expect("bank is built in"),
        )
        .await?
        .expect(201)?;
    let mut last_setup = 0;
    for a in 0..ACCOUNTS {
        let open = json!({"open": {"account": format!("a{a}"), "initial": 1_000_000}});
        let resp = leader.apply("bank", &open).await?.expect(200)?;
        last_setup = resp
            .header_u64(cairn_host::api::LOG_INDEX_HEADER)
            .context("index")?;
    }
    let from = last_setup + 1;
    // A node answers from its applied state: the follower must know the plugin.
    follower.wait_applied(last_setup).await?;
    let client = http_client::new_client();

    // An unknown plugin is a 404; bad positions are 400s.
    let resp = follower.get("/v1/plugins/nope/events").await?.expect(404)?;
    assert_eq!(resp.code().as_deref(), Some("plugin-not-found"));
    let resp = follower
        .req(
            Method::GET,
            "/v1/plugins/bank/events",
            &[("last-event-id", "x")],
            "",
        )
        .await?
        .expect(400)?;
    assert_eq!(resp.code().as_deref(), Some("bad-event-id"));

    // The watcher connects to a follower before the transfers start.
    let mut stream = connect(&client, follower.addr(), Start::FromIndex(from)).await?;
    let transfers = tokio::spawn(transfer_all(leader.addr().to_string()));
    let half = (TRANSFERS / 2) as usize;
    let mut seen = take(&mut stream, half).await?;
    // Disconnect midway (transfers go on), then resume after the last event seen.
    drop(stream);
    let last = seen.last().expect("events").id.clone();
    let mut stream = connect(&client, follower.addr(), Start::After(last)).await?;
    seen.extend(take(&mut stream, TRANSFERS as usize - half).await?);
    let expected = transfers.await??;
    assert_eq!(expected.len() as u64, TRANSFERS);
    let seen = as_tuples(&seen)?;
    if seen != expected {
        let first_diff = seen.iter().zip(&expected).position(|(a, b)| a != b);
        bail!("the follower's stream differs from the transfers at {first_diff:?}");
    }

    // The leader's stream of the same range is the same sequence.
    let mut on_leader = connect(&client, leader.addr(), Start::FromIndex(from)).await?;
    let leaders = as_tuples(&take(&mut on_leader, TRANSFERS as usize).await?)?;
    ensure!(
        leaders == expected,
        "the leader's stream differs from the follower's"
    );
    drop(on_leader);

    // Streams per node are bounded: the follower holds one; a second fits, a third is refused.
    let mut second = connect(&client, follower.addr(), Start::Now).await?;
    match connect(&client, follower.addr(), Start::Now).await {
        Err(e) => {
            let refused = e.downcast_ref::<Refused>().context("refused by the node")?;
            assert_eq!(refused.status.as_u16(), 503, "{refused}");
            assert!(refused.message.starts_with("overloaded"), "{refused}");
        }
        Ok(_) => bail!("a stream over max_event_streams was served"),
    }
    // A quiet stream sends heartbeats (nothing is written now: no event comes).
    let quiet = Duration::from_millis(HEARTBEAT_MS * 6);
    ensure!(
        tokio::time::timeout(quiet, second.next()).await.is_err(),
        "an event arrived on a quiet cluster"
    );
    ensure!(
        second.heartbeats() >= 2,
        "{} heartbeats in {quiet:?} at one per {HEARTBEAT_MS} ms",
        second.heartbeats()
    );
    drop(second);
    drop(stream);

    // Keep only the last 100 events: asking below them is gone, with the oldest index.
    let keep = 100;
    let resp = leader
        .req(
            Method::PATCH,
            "/v1/cluster/settings",
            &[],
            json!({"event_retention_count": keep, "limits": {"max_events_per_call": keep}})
                .to_string(),
        )
        .await?
        .expect(200)?;
    assert_eq!(resp.json()["event_retention_count"], keep);
    let (settings_index, _) = leader.state_hash();
    follower.wait_applied(settings_index).await?;
    let oldest_kept = TRANSFERS as usize - keep as usize;
    let oldest_index: u64 = expected[oldest_kept].0.trim_end_matches("-0").parse()?;
    let gone = follower
        .get(&format!("/v1/plugins/bank/events?from_index={from}"))
        .await?
        .expect(410)?;
    assert_eq!(gone.code().as_deref(), Some("gone"));
    let body = gone.json();
    assert_eq!(body["error"]["oldest_index"], oldest_index, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&oldest_index.to_string()), "{message}");
    // Resuming right after the last dropped event has no gap; one before it has.
    let last_dropped = expected[oldest_kept - 1].0.clone();
    let before = expected[oldest_kept - 2].0.clone();
    let resp = follower
        .req(
            Method::GET,
            "/v1/plugins/bank/events",
            &[("last-event-id", &before)],
            "",
        )
        .await?
        .expect(410)?;
    assert_eq!(resp.code().as_deref(), Some("gone"));
    let mut tail = connect(&client, follower.addr(), Start::After(last_dropped)).await?;
    let kept = as_tuples(&take(&mut tail, keep as usize).await?)?;
    ensure!(kept == expected[oldest_kept..], "the retained tail differs");
    drop(tail);

    cluster.converge().await?;
    // Stopping a node ends its streams cleanly (not cut off after the grace period).
    let mut open = connect(&client, follower.addr(), Start::Now).await?;
    cluster.node_mut(follower_id).stop().await?;
    let end = tokio::time::timeout(EVENT_WAIT, open.next()).await?;
    ensure!(
        matches!(end, Ok(None)),
        "the stream did not end cleanly: {end:?}"
    );
    cluster.stop_all().await
}
