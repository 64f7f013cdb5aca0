//! The per-plugin event log: the events successful applies emitted, kept in the
//! replicated state under the cluster's retention (count and bytes), so any
//! node can stream them from its applied state and a watcher can resume from
//! an event id with no gap and no duplicate.
//!
//! An event's id is `<log index>-<n>`: the index of the command that emitted
//! it and its position among that command's events. Retention drops whole
//! commands, oldest first, so an index is either fully held or fully gone and
//! resuming from the oldest index held never misses part of a command.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Event;

/// Where an event sits in its plugin's log; ordered by index, then position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    /// Log index of the command that emitted it.
    pub index: u64,
    /// Position among that command's events, from 0.
    pub n: u32,
}

impl EventId {
    /// The first event a command at `index` can have: where `from_index` starts.
    pub fn first_of(index: u64) -> Self {
        Self { index, n: 0 }
    }

    /// The position right after this event: where a watcher that saw it resumes.
    pub fn after(self) -> Self {
        match self.n.checked_add(1) {
            Some(n) => Self { n, ..self },
            None => Self::first_of(self.index.saturating_add(1)),
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.index, self.n)
    }
}

/// Why a string is not an event id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event ids look like <log index>-<n>, e.g. 42-0; got {0:?}")]
pub struct BadEventId(pub String);

impl FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadEventId(s.chars().take(64).collect());
        let (index, n) = s.trim().split_once('-').ok_or_else(bad)?;
        Ok(Self {
            index: index.parse().map_err(|_| bad())?,
            n: n.parse().map_err(|_| bad())?,
        })
    }
}

/// Bytes an event counts for under `event_retention_bytes` (as for the
/// per-call cap `limits.max_event_bytes_per_call`): topic plus payload.
pub fn event_bytes(event: &Event) -> u64 {
    (event.topic.len() + event.payload.len()) as u64
}

/// A read that starts below what retention still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("events before index {oldest_index} were dropped by retention")]
pub struct Gone {
    /// The oldest log index whose events are still held (or, when none are,
    /// the index after the last one dropped): a resume from it misses nothing more.
    pub oldest_index: u64,
}

/// Events read from a log, in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventRead {
    /// The events, each with its id.
    pub events: Vec<(EventId, Arc<Event>)>,
    /// Whether more events were held past the last one (the byte cap cut the read).
    pub more: bool,
}

/// One plugin's retained events. A persistent map, so appending is
/// O(log n) and cloning the state for a snapshot stays O(1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLog {
    /// `Arc`: the map copies node entries on write, events are copied once.
    events: imbl::OrdMap<EventId, Arc<Event>>,
    /// Sum of [`event_bytes`] over `events`.
    bytes: u64,
    /// The newest event retention dropped: reads from at or before it are [`Gone`].
    dropped_through: Option<EventId>,
}

impl EventLog {
    /// A log holding `events` (id order) after `dropped_through` was dropped
    /// (how a snapshot restores it).
    pub fn from_parts(
        events: impl IntoIterator<Item = (EventId, Event)>,
        dropped_through: Option<EventId>,
    ) -> Self {
        let mut log = Self {
            dropped_through,
            ..Self::default()
        };
        for (id, event) in events {
            log.bytes += event_bytes(&event);
            log.events.insert(id, Arc::new(event));
        }
        log
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes held (see [`event_bytes`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The newest event retention dropped, if any.
    pub fn dropped_through(&self) -> Option<EventId> {
        self.dropped_through
    }

    /// Every held event in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&EventId, &Arc<Event>)> {
        self.events.iter()
    }

    /// The oldest log index a read can start from without a gap.
    pub fn oldest_index(&self) -> u64 {
        match (self.events.get_min(), self.dropped_through) {
            (Some((id, _)), _) => id.index,
            (None, Some(dropped)) => dropped.index.saturating_add(1),
            (None, None) => 0,
        }
    }

    /// Appends the events of the command at `index` (ids `index-0`, `index-1`, …).
    pub fn append(&mut self, index: u64, events: &[Event]) {
        for (n, event) in events.iter().enumerate() {
            let id = EventId {
                index,
                n: u32::try_from(n).unwrap_or(u32::MAX),
            };
            self.bytes += event_bytes(event);
            self.events.insert(id, Arc::new(event.clone()));
        }
    }

    /// Whether the log holds more than `max_count` events or `max_bytes` bytes.
    pub fn over(&self, max_count: u64, max_bytes: u64) -> bool {
        self.events.len() as u64 > max_count || self.bytes > max_bytes
    }

    /// Drops whole commands, oldest first, until both limits hold.
    pub fn trim(&mut self, max_count: u64, max_bytes: u64) {
        while self.over(max_count, max_bytes) {
            let Some(oldest) = self.events.get_min().map(|(id, _)| id.index) else {
                break;
            };
            while let Some((id, _)) = self.events.get_min()
                && id.index == oldest
            {
                let id = *id;
                if let Some(event) = self.events.remove(&id) {
                    self.bytes -= event_bytes(&event);
                }
                self.dropped_through = Some(id);
            }
        }
    }

    /// Events from `from` on (inclusive), at most `max_bytes` of them but
    /// always at least one when any is held; [`Gone`] when retention dropped
    /// an event at or after `from`.
    pub fn read(&self, from: EventId, max_bytes: u64) -> Result<EventRead, Gone> {
        if self.dropped_through.is_some_and(|dropped| dropped >= from) {
            return Err(Gone {
                oldest_index: self.oldest_index(),
            });
        }
        let mut read = EventRead::default();
        let mut bytes = 0;
        for (id, event) in self.events.range(from..) {
            let size = event_bytes(event);
            if !read.events.is_empty() && bytes + size > max_bytes {
                read.more = true;
                break;
            }
            bytes += size;
            read.events.push((*id, event.clone()));
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(topic: &str, payload: &str) -> Event {
        Event {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn ids(read: &EventRead) -> Vec<String> {
        read.events.iter().map(|(id, _)| id.to_string()).collect()
    }

    #[test]
    fn ids_number_events_within_their_command_and_parse_back() {
        let mut log = EventLog::default();
        log.append(5, &[ev("a", "1"), ev("b", "22")]);
        log.append(9, &[ev("c", "333")]);
        let all = log.read(EventId::first_of(0), u64::MAX).unwrap();
        assert_eq!(ids(&all), ["5-0", "5-1", "9-0"]);
        assert_eq!(all.events[1].1.topic, "b");
        assert_eq!(log.bytes(), 2 + 3 + 4);
        assert_eq!(
            "5-1".parse::<EventId>().unwrap(),
            EventId { index: 5, n: 1 }
        );
        for bad in ["5", "x-1", "5-", "-1", "5-1-2"] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
        // Resuming after an event skips exactly it.
        let after = log
            .read("5-0".parse::<EventId>().unwrap().after(), u64::MAX)
            .unwrap();
        assert_eq!(ids(&after), ["5-1", "9-0"]);
        assert_eq!(
            ids(&log.read(EventId::first_of(6), u64::MAX).unwrap()),
            ["9-0"]
        );
    }

    #[test]
    fn reads_are_capped_by_bytes_but_always_progress() {
        let mut log = EventLog::default();
        log.append(1, &[ev("t", "xxxxxxxxx"), ev("t", "y"), ev("t", "z")]);
        let read = log.read(EventId::first_of(0), 3).unwrap();
        assert_eq!(ids(&read), ["1-0"], "one event even over the cap");
        assert!(read.more);
        let read = log.read(EventId { index: 1, n: 1 }, 4).unwrap();
        assert_eq!(ids(&read), ["1-1", "1-2"]);
        assert!(!read.more);
    }

    #[test]
    fn retention_by_count_drops_whole_commands_oldest_first() {
        let mut log = EventLog::default();
        for index in 1..=5 {
            log.append(index, &[ev("t", "a"), ev("t", "b")]);
            log.trim(5, u64::MAX);
        }
        // 10 events made, 5 allowed: commands 1-3 went whole, never half of one.
        assert!(log.read(EventId::first_of(0), u64::MAX).is_err());
        assert_eq!(log.len(), 4);
        assert_eq!(log.oldest_index(), 4);
        assert_eq!(log.dropped_through(), Some(EventId { index: 3, n: 1 }));
        assert_eq!(
            log.read(EventId::first_of(2), u64::MAX),
            Err(Gone { oldest_index: 4 })
        );
        // Right after the last dropped event is no gap.
        let read = log
            .read(EventId { index: 3, n: 1 }.after(), u64::MAX)
            .unwrap();
        assert_eq!(ids(&read), ["4-0", "4-1", "5-0", "5-1"]);
        assert_eq!(
            ids(&log.read(EventId::first_of(4), u64::MAX).unwrap()),
            ["4-0", "4-1", "5-0", "5-1"]
        );
    }

    #[test]
    fn retention_by_bytes_drops_the_oldest_until_it_fits() {
        let mut log = EventLog::default();
        log.append(1, &[ev("t", "aaaa")]); // 5 bytes
        log.append(2, &[ev("t", "bbbb")]);
        log.append(3, &[ev("t", "cccc")]);
        log.trim(u64::MAX, 11);
        assert_eq!(log.bytes(), 10);
        assert_eq!(log.oldest_index(), 2);
        assert!(log.read(EventId::first_of(1), 100).is_err());
        // Lowering the limit drops more; an empty log still knows what it dropped.
        log.trim(u64::MAX, 1);
        assert!(log.is_empty());
        assert_eq!(log.oldest_index(), 4);
        assert_eq!(
            log.read(EventId::first_of(3), 100),
            Err(Gone { oldest_index: 4 })
        );
        assert_eq!(
            log.read(EventId::first_of(4), 100),
            Ok(EventRead::default())
        );
    }

    #[test]
    fn a_log_rebuilt_from_its_parts_is_equal() {
        let mut log = EventLog::default();
        log.append(1, &[ev("t", "a")]);
        log.append(2, &[ev("u", "bb"), ev("v", "")]);
        log.trim(2, u64::MAX);
        let parts: Vec<(EventId, Event)> = log.iter().map(|(id, e)| (*id, (**e).clone())).collect();
        assert_eq!(EventLog::from_parts(parts, log.dropped_through()), log);
    }
}
