//! `GET /v1/plugins/{name}/events`: a plugin's event log as Server-Sent
//! Events, read from this node's applied state (never forwarded: every node
//! holds the same log, so a follower's stream equals the leader's).
//!
//! Each event is one block:
//!
//! ```text
//! id: <log index>-<n>
//! event: <topic>
//! data: <payload>
//! ```
//!
//! A payload that is JSON is sent as JSON on one line (as is, or re-encoded
//! compactly when it spans lines); any other payload as `{"hex":"<hex of the
//! bytes>"}`, the encoding `apply?events=true` uses. CR and LF in a topic are
//! sent as spaces (an SSE field is one line).
//!
//! Where a stream starts: right after the event named by `Last-Event-ID` (what
//! an `EventSource` sends when it reconnects, so it wins over the query), else
//! at the first event of log index `?from_index=N`, else with the entries this
//! node applies after the request (the `cairn-applied-index` response header
//! says after which index). Asking for events retention dropped is a `410 gone`
//! carrying the oldest index still held.
//!
//! A stream reads at most `sse_batch_max_bytes` from the state at a time, only
//! when the connection has taken the previous batch, and keeps no state copy
//! between reads: a slow consumer pins one batch, never the log. An idle
//! stream sends a `: heartbeat` comment every `sse_heartbeat_interval_ms`. A
//! stream that falls behind retention, or whose plugin is removed, ends;
//! reconnecting tells why (`410`, `404`). Streams also end when the server
//! shuts down, so they do not hold it for its whole grace period.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderValue, Response, header};
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::api::client_api::APPLIED_INDEX_HEADER;
use crate::api::error::ApiError;
use crate::api::server::RequestHead;
use crate::api::service::{ClusterService, EventBatch};
use crate::state::{Event, EventId};

/// Request header an SSE client resumes with.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// The body of an event stream: frames produced as the node applies entries.
pub type EventStreamBody = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// What bounds one stream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLimits {
    /// Idle time after which a `: heartbeat` comment is sent.
    pub heartbeat: Duration,
    /// Event bytes read from the state per step.
    pub batch_max_bytes: u64,
}

/// Opens the stream of plugin `name`'s events for this request. The first read
/// happens now, so an unknown plugin (`404`), a dropped position (`410`) or a
/// bad `Last-Event-ID` / `from_index` (`400`) get a status, not an empty stream.
pub(crate) fn open<S: ClusterService>(
    service: &S,
    name: &str,
    head: &RequestHead,
    limits: StreamLimits,
    permit: OwnedSemaphorePermit,
    closing: watch::Receiver<bool>,
) -> Result<Response<EventStreamBody>, ApiError> {
    let applied = service.subscribe_applied();
    let applied_now = *applied.borrow();
    let from = match start_position(head)? {
        Some(from) => from,
        None => EventId::first_of(applied_now.saturating_add(1)),
    };
    let first = service.events_since(name, from, limits.batch_max_bytes)?;
    let watch = Watch {
        service: service.clone(),
        name: name.to_string(),
        next: from,
        applied,
        first: Some(first),
        limits,
        closing,
        _permit: permit,
    };
    let frames = futures_util::stream::unfold(watch, |mut w| async move {
        let bytes = w.next_frame().await?;
        Some((Ok(Frame::data(bytes)), w))
    });
    let mut resp = Response::new(StreamBody::new(frames.boxed()));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(APPLIED_INDEX_HEADER, HeaderValue::from(applied_now));
    Ok(resp)
}

/// Where the stream starts: `Last-Event-ID` (after that event) over
/// `from_index` (at that index); `None` for "from now".
fn start_position(head: &RequestHead) -> Result<Option<EventId>, ApiError> {
    let mut from = None;
    for (key, value) in crate::api::client_api::query_pairs(head.uri.query()) {
        match key {
            "from_index" => {
                let index = value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(
                        "bad-query",
                        format!("from_index must be a log index, not {value:?}"),
                    )
                })?;
                from = Some(EventId::first_of(index));
            }
            other => {
                return Err(ApiError::bad_request(
                    "bad-query",
                    format!("unknown query parameter {other:?} (events take from_index=N)"),
                ));
            }
        }
    }
    let last = head
        .headers
        .get(LAST_EVENT_ID_HEADER)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").trim())
        .filter(|v| !v.is_empty());
    if let Some(last) = last {
        let id: EventId = last.parse().map_err(|e: crate::state::BadEventId| {
            ApiError::bad_request("bad-event-id", e.to_string())
        })?;
        from = Some(id.after());
    }
    Ok(from)
}

/// One stream's position; owns nothing of the state between reads.
struct Watch<S> {
    service: S,
    name: String,
    /// The next event to send.
    next: EventId,
    applied: watch::Receiver<u64>,
    /// The read made when the stream was opened, sent first.
    first: Option<EventBatch>,
    limits: StreamLimits,
    /// Turns `true` when the server shuts down: the stream ends.
    closing: watch::Receiver<bool>,
    /// Frees a `max_event_streams` slot when the stream is dropped.
    _permit: OwnedSemaphorePermit,
}

impl<S: ClusterService> Watch<S> {
    /// The next bytes to send; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        // Each pass reads once, then either returns or waits for the node to
        // apply more (or for the heartbeat).
        loop {
            let batch = match self.first.take() {
                Some(batch) => batch,
                None => match self.service.events_since(
                    &self.name,
                    self.next,
                    self.limits.batch_max_bytes,
                ) {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::debug!(plugin = %self.name, next = %self.next, code = e.code(), "event stream ends");
                        return None;
                    }
                },
            };
            if let Some((last, _)) = batch.events.last() {
                self.next = last.after();
                return Some(format_events(&batch.events));
            }
            let read_at = batch.applied_index;
            tokio::select! {
                _ = self.closing.wait_for(|closing| *closing) => return None,
                changed = self.applied.wait_for(|index| *index > read_at) => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep(self.limits.heartbeat) => {
                    return Some(Bytes::from_static(b": heartbeat\n\n"));
                }
            }
        }
    }
}

/// The SSE blocks of `events`.
fn format_events(events: &[(EventId, Arc<Event>)]) -> Bytes {
    let mut out = String::new();
    for (id, event) in events {
        let topic: String = event
            .topic
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        out.push_str(&format!(
            "id: {id}\nevent: {topic}\ndata: {}\n\n",
            data_line(&event.payload)
        ));
    }
    Bytes::from(out)
}

/// A payload as one line of JSON: itself when it is JSON on one line,
/// re-encoded compactly when it is JSON over several, else `{"hex": …}`.
pub fn data_line(payload: &[u8]) -> String {
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() {
        if !payload.contains(&b'\n') && !payload.contains(&b'\r') {
            return String::from_utf8_lossy(payload).trim().to_string();
        }
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) {
            return value.to_string();
        }
    }
    serde_json::json!({ "hex": hex::encode(payload) }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(query: &str, last: Option<&str>) -> RequestHead {
        let mut headers = http::HeaderMap::new();
        if let Some(last) = last {
            headers.insert(LAST_EVENT_ID_HEADER, last.parse().unwrap());
        }
        RequestHead {
            method: http::Method::GET,
            uri: format!("/v1/plugins/p/events{query}").parse().unwrap(),
            headers,
        }
    }

    #[test]
    fn last_event_id_wins_over_from_index() {
        let at = |index, n| Some(EventId { index, n });
        assert_eq!(start_position(&head("", None)).unwrap(), None);
        assert_eq!(
            start_position(&head("?from_index=7", None)).unwrap(),
            at(7, 0)
        );
        assert_eq!(
            start_position(&head("?from_index=7", Some("9-2"))).unwrap(),
            at(9, 3)
        );
        assert_eq!(start_position(&head("", Some(" "))).unwrap(), None);
        for (query, last, code) in [
            ("?from_index=x", None, "bad-query"),
            ("?from=1", None, "bad-query"),
            ("", Some("9"), "bad-event-id"),
        ] {
            assert_eq!(
                start_position(&head(query, last)).unwrap_err().code(),
                code,
                "{query} {last:?}"
            );
        }
    }

    #[test]
    fn events_are_one_block_each_with_one_line_data() {
        let events = vec![
            (
                EventId { index: 4, n: 0 },
                Arc::new(Event {
                    topic: "transfer".into(),
                    payload: br#"{"amount":3}"#.to_vec(),
                }),
            ),
            (
                EventId { index: 4, n: 1 },
                Arc::new(Event {
                    topic: "two\nlines".into(),
                    payload: b"{\n  \"a\": [1,\n 2]\n}".to_vec(),
                }),
            ),
            (
                EventId { index: 5, n: 0 },
                Arc::new(Event {
                    topic: "raw".into(),
                    payload: vec![0xff, 0x0a],
                }),
            ),
        ];
        assert_eq!(
            format_events(&events),
            "id: 4-0\nevent: transfer\ndata: {\"amount\":3}\n\n\
             id: 4-1\nevent: two lines\ndata: {\"a\":[1,2]}\n\n\
             id: 5-0\nevent: raw\ndata: {\"hex\":\"ff0a\"}\n\n"
        );
    }
}
