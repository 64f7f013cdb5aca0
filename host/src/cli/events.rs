//! `cairn watch NAME`: follows a plugin's event stream (Server-Sent Events,
//! see `api::events`), one line per event, reconnecting with `Last-Event-ID`
//! when the connection drops so no event is missed or printed twice.
//!
//! [`EventStream`] and [`SseParser`] are the client side of the stream, also
//! used by the system tests.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::api::{APPLIED_INDEX_HEADER, LAST_EVENT_ID_HEADER};
use crate::http_client::{self, HttpClient};

/// How long the node may take to answer the stream's request.
const WATCH_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Silence (not even a heartbeat, sent every 15 s by default) after which the
/// connection is taken for dead and opened again.
const WATCH_IDLE_TIMEOUT_MS: u64 = 45_000;
/// First pause before reconnecting; doubles up to [`WATCH_MAX_BACKOFF_MS`].
const WATCH_FIRST_BACKOFF_MS: u64 = 200;
/// Longest pause between reconnection attempts.
const WATCH_MAX_BACKOFF_MS: u64 = 5_000;
/// Longest SSE line accepted; the node never sends one near it (an event is
/// capped by the cluster's `limits.max_event_bytes_per_call`, hex doubles it).
const MAX_SSE_LINE_BYTES: usize = 64 * 1024 * 1024;
/// Largest error body read from a refused stream request.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// One event as the stream carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// `<log index>-<n>`.
    pub id: String,
    /// The plugin's topic.
    pub topic: String,
    /// The payload: one line of JSON (`{"hex": …}` for non-JSON bytes).
    pub data: String,
}

impl SseEvent {
    /// `<id> <topic> <payload>`.
    pub fn line(&self) -> String {
        format!("{} {} {}", self.id, self.topic, self.data)
    }

    /// `{"id":…,"topic":…,"payload":…}` on one line, the payload as JSON.
    pub fn json_line(&self) -> String {
        let payload = serde_json::from_str::<serde_json::Value>(&self.data)
            .map(|_| self.data.clone())
            .unwrap_or_else(|_| serde_json::Value::String(self.data.clone()).to_string());
        format!(
            "{{\"id\":{},\"topic\":{},\"payload\":{payload}}}",
            serde_json::Value::String(self.id.clone()),
            serde_json::Value::String(self.topic.clone()),
        )
    }
}

/// Incremental parser of an SSE byte stream: feed chunks, get whole events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Comment lines seen (the node's heartbeats).
    pub comments: u64,
    buf: Vec<u8>,
    id: Option<String>,
    topic: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Consumes `chunk`; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<SseEvent>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(end) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let line = &self.buf[start..start + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            start += end + 1;
            self.line(&line, &mut out);
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_SSE_LINE_BYTES {
            bail!("the event stream sent a line over {MAX_SSE_LINE_BYTES} bytes");
        }
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    id: self.id.take().unwrap_or_default(),
                    topic: self.topic.take().unwrap_or_default(),
                    data,
                });
            }
            self.id = None;
            self.topic = None;
            return;
        }
        if line.starts_with(':') {
            self.comments += 1; // the heartbeat
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_string();
        match field {
            "id" => self.id = Some(value),
            "event" => self.topic = Some(value),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(&value);
                }
                None => self.data = Some(value),
            },
            _ => {}
        }
    }
}

/// Where a stream starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the entries the node applies after the request.
    Now,
    /// At the first event of this log index.
    FromIndex(u64),
    /// Right after the event with this id (`Last-Event-ID`).
    After(String),
}

/// An open event stream.
pub struct EventStream {
    body: Incoming,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    /// The position the node started this stream at (its applied index + 1
    /// for [`Start::Now`]).
    pub start_index: Option<u64>,
}

/// A stream request the node refused (`404`, `410`, `503`, …).
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refused {
    /// The HTTP status.
    pub status: StatusCode,
    /// The node's `code: message`.
    pub message: String,
}

impl EventStream {
    /// Opens plugin `name`'s event stream on the node at `base`.
    pub async fn connect(
        client: &HttpClient,
        base: &str,
        token: Option<&str>,
        name: &str,
        start: &Start,
    ) -> anyhow::Result<Self> {
        let path = match start {
            Start::FromIndex(index) => format!("/v1/plugins/{name}/events?from_index={index}"),
            Start::Now | Start::After(_) => format!("/v1/plugins/{name}/events"),
        };
        let uri = http_client::url(base, &path)?;
        let mut req = http_client::request(Method::GET, uri, None, Bytes::new());
        if let Some(token) = token {
            http_client::set_bearer(&mut req, token)?;
        }
        if let Start::After(id) = start {
            req.headers_mut().insert(
                LAST_EVENT_ID_HEADER,
                http::HeaderValue::from_str(id).context("invalid event id")?,
            );
        }
        let timeout = Duration::from_millis(WATCH_CONNECT_TIMEOUT_MS);
        let resp = tokio::time::timeout(timeout, client.request(req))
            .await
            .with_context(|| format!("{base} did not answer within {WATCH_CONNECT_TIMEOUT_MS} ms"))?
            .with_context(|| format!("connecting to {base}"))?;
        let status = resp.status();
        if status != StatusCode::OK {
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ERROR_BODY_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = super::describe_failure(status, &body);
            return Err(Refused { status, message }.into());
        }
        let applied: Option<u64> = resp
            .headers()
            .get(APPLIED_INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let start_index = match start {
            Start::Now => applied.map(|i| i + 1),
            Start::FromIndex(index) => Some(*index),
            Start::After(_) => None,
        };
        Ok(Self {
            body: resp.into_body(),
            parser: SseParser::default(),
            ready: VecDeque::new(),
            start_index,
        })
    }

    /// Heartbeats (comments) received so far.
    pub fn heartbeats(&self) -> u64 {
        self.parser.comments
    }

    /// The next event; `Ok(None)` when the node ended the stream, `Err` when
    /// the connection broke or stayed silent past the idle timeout.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        let idle = Duration::from_millis(WATCH_IDLE_TIMEOUT_MS);
        // Each pass consumes one frame of a finite connection; the idle
        // timeout ends a silent one.
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let frame = tokio::time::timeout(idle, self.body.frame())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("no data or heartbeat for {WATCH_IDLE_TIMEOUT_MS} ms")
                })?;
            let Some(frame) = frame else {
                return Ok(None);
            };
            let frame = frame.context("event stream broke")?;
            if let Some(data) = frame.data_ref() {
                self.ready.extend(self.parser.feed(data)?);
            }
        }
    }
}

/// `cairn watch`: prints events until interrupted or the node ends the stream
/// for good (plugin removed, events dropped by retention).
pub async fn run(
    client: &HttpClient,
    base: &str,
    token: Option<&str>,
    name: &str,
    from_index: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let mut start = from_index.map_or(Start::Now, Start::FromIndex);
    let mut backoff_ms = WATCH_FIRST_BACKOFF_MS;
    // Runs until the node refuses the stream (an error) or Ctrl-C ends the process.
    loop {
        let mut stream = match EventStream::connect(client, base, token, name, &start).await {
            Ok(stream) => stream,
            Err(e) if e.is::<Refused>() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot open the event stream; retrying in {backoff_ms} ms");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(WATCH_MAX_BACKOFF_MS);
                continue;
            }
        };
        if let (Start::Now, Some(index)) = (&start, stream.start_index) {
            // Reconnecting before any event must not skip what happened meanwhile.
            start = Start::FromIndex(index);
        }
        let ended = loop {
            match stream.next().await {
                Ok(Some(event)) => {
                    backoff_ms = WATCH_FIRST_BACKOFF_MS;
                    println!(
                        "{}",
                        if json {
                            event.json_line()
                        } else {
                            event.line()
                        }
                    );
                    start = Start::After(event.id);
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        match ended {
            // The node ended the stream: reconnecting says why (404, 410) or resumes.
            None => tracing::info!("the node ended the event stream; reconnecting"),
            Some(e) => {
                tracing::warn!(error = %format!("{e:#}"), "event stream dropped; reconnecting in {backoff_ms} ms");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(WATCH_MAX_BACKOFF_MS);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks_and_skips_comments() {
        let mut p = SseParser::default();
        let stream = b": heartbeat\n\nid: 4-0\nevent: transfer\ndata: {\"a\":1}\n\nid: 5-0\r\nevent: t\r\ndata: x\r\ndata: y\r\n\r\n";
        let mut events = Vec::new();
        for chunk in stream.chunks(7) {
            events.extend(p.feed(chunk).unwrap());
        }
        assert_eq!(
            events,
            [
                SseEvent {
                    id: "4-0".into(),
                    topic: "transfer".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    id: "5-0".into(),
                    topic: "t".into(),
                    data: "x\ny".into()
                },
            ]
        );
        assert_eq!(p.comments, 1);
        assert_eq!(events[0].line(), "4-0 transfer {\"a\":1}");
        assert_eq!(
            events[0].json_line(),
            "{\"id\":\"4-0\",\"topic\":\"transfer\",\"payload\":{\"a\":1}}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&events[1].json_line()).unwrap()["payload"],
            "x\ny"
        );
    }
}
