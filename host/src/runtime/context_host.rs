//! Host side of the `context` interface: facts about the command that are the
//! same on every node (index, leader timestamp, seeded randomness, events).
//!
//! Linked by hand like `kv`, so every import is charged fuel (see `metering`).

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

use super::Event;
use super::metering::charge;
use super::store::{CallMode, CallState};
use super::wasi::seed;

type Ctx<'a> = StoreContextMut<'a, CallState>;

/// Links `cairn:plugin/context` into `linker`.
///
/// `version` is the package version to link it under (the host links every
/// version it runs; the functions are the same in each).
pub(super) fn add_to_linker(linker: &mut Linker<CallState>, version: &str) -> wasmtime::Result<()> {
    let mut context = linker.instance(&format!("cairn:plugin/context@{version}"))?;
    context.func_wrap("log-index", |mut store: Ctx<'_>, (): ()| {
        charge(&mut store, 0)?;
        Ok((store.data().log_index,))
    })?;
    context.func_wrap("timestamp-ms", |mut store: Ctx<'_>, (): ()| {
        charge(&mut store, 0)?;
        Ok((store.data().timestamp_ms,))
    })?;
    context.func_wrap("random-bytes", |mut store: Ctx<'_>, (len,): (u32,)| {
        let len = (len as usize).min(store.data().limits.max_random_bytes);
        charge(&mut store, len)?;
        Ok((store.data_mut().random_bytes(len),))
    })?;
    context.func_wrap(
        "emit",
        |mut store: Ctx<'_>, (topic, payload): (WasmStr, WasmList<u8>)| {
            // Borrowed straight from guest memory: nothing is copied before
            // the size is paid for.
            let topic_len = topic.to_str(&store)?.len();
            charge(&mut store, topic_len + payload.len())?;
            if store.data().admits_event(topic_len + payload.len()) {
                let topic = topic.to_str(&store)?.into_owned();
                let payload = payload.as_le_slice(&store).to_vec();
                let state = store.data_mut();
                state.event_bytes += topic.len() + payload.len();
                state.events.push(Event { topic, payload });
            }
            Ok(())
        },
    )?;
    Ok(())
}

impl CallState {
    /// `len` bytes of this command's deterministic randomness. Each call gets
    /// its own stream so two calls in one command differ but every node sees
    /// the same sequence.
    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        self.random_calls += 1;
        let purpose = format!("context-random-{}", self.random_calls);
        let mut rng = ChaCha20Rng::from_seed(seed(self.log_index, &self.plugin, &purpose));
        let mut out = vec![0u8; len];
        rng.fill_bytes(&mut out);
        out
    }

    /// Whether an event of `size` bytes is kept. Queries have no effects to
    /// report, so their events are dropped; so are events past the caps.
    fn admits_event(&self, size: usize) -> bool {
        self.mode == CallMode::Apply
            && self.events.len() < self.limits.max_events_per_call
            && self.event_bytes + size <= self.limits.max_event_bytes_per_call
    }
}
