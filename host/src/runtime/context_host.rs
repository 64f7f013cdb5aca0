//! Host side of the `context` interface: facts about the command that are the
//! same on every node (index, leader timestamp, seeded randomness, events).

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};

use super::Event;
use super::bindings::context::Host;
use super::store::{CallMode, CallState};
use super::wasi::seed;

impl Host for CallState {
    fn log_index(&mut self) -> u64 {
        self.log_index
    }

    fn timestamp_ms(&mut self) -> u64 {
        self.timestamp_ms
    }

    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        let len = (len as usize).min(self.limits.max_random_bytes);
        // Each call gets its own stream so two calls in one command differ but
        // every node sees the same sequence.
        self.random_calls += 1;
        let purpose = format!("context-random-{}", self.random_calls);
        let mut rng = ChaCha20Rng::from_seed(seed(self.log_index, &self.plugin, &purpose));
        let mut out = vec![0u8; len];
        rng.fill_bytes(&mut out);
        out
    }

    fn emit(&mut self, topic: String, payload: Vec<u8>) {
        // Queries have no effects to report; events there are dropped.
        if self.mode == CallMode::Query {
            return;
        }
        let size = topic.len() + payload.len();
        if self.events.len() >= self.limits.max_events_per_call
            || self.event_bytes + size > self.limits.max_event_bytes_per_call
        {
            return;
        }
        self.event_bytes += size;
        self.events.push(Event { topic, payload });
    }
}
