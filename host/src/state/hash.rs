//! The canonical state hash: length-prefixed fields in map order, so two states
//! hash equal exactly when their contents are equal.

use sha2::{Digest, Sha256};

use super::State;

struct Hasher(Sha256);

impl Hasher {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_be_bytes());
        self.0.update(b);
    }
    fn u64(&mut self, v: u64) {
        self.0.update(v.to_be_bytes());
    }
}

pub(super) fn state_hash(state: &State) -> [u8; 32] {
    let mut h = Hasher(Sha256::new());
    h.bytes(b"cairn-state-hash-v1");
    h.u64(state.plugins.len() as u64);
    for (name, p) in &state.plugins {
        h.bytes(name.as_bytes());
        h.u64(p.version);
        h.bytes(p.sha256.as_bytes());
        h.u64(p.fuel_per_call);
        h.u64(p.memory_limit_bytes);
        h.u64(p.deployed_at_index);
        h.u64(p.size_bytes);
    }
    h.u64(state.code.len() as u64);
    for (sha, code) in &state.code {
        h.bytes(sha.as_bytes());
        h.bytes(code.bytes());
    }
    h.u64(state.kv.len() as u64);
    for (name, kv) in &state.kv {
        h.bytes(name.as_bytes());
        h.u64(kv.len() as u64);
        for (k, v) in kv {
            h.bytes(k);
            h.bytes(v);
        }
    }
    h.u64(state.idempotency.len() as u64);
    for (key, rec) in &state.idempotency {
        h.bytes(key.as_bytes());
        h.u64(rec.index);
        h.bytes(&rec.fingerprint);
        // The record is plain data; its bincode encoding is canonical.
        let enc = bincode::serde::encode_to_vec(&rec.result, bincode::config::standard())
            .unwrap_or_default();
        h.bytes(&enc);
    }
    // Settings decide outcomes, so nodes that disagree on them must not hash equal.
    let settings = bincode::serde::encode_to_vec(&state.settings, bincode::config::standard())
        .unwrap_or_default();
    h.bytes(&settings);
    h.u64(state.settings_index);
    // Tokens decide who may do what; a node that kept a revoked token must
    // not hash equal to one that dropped it.
    h.u64(state.tokens.len() as u64);
    for record in state.tokens.records() {
        let enc =
            bincode::serde::encode_to_vec(record, bincode::config::standard()).unwrap_or_default();
        h.bytes(&enc);
    }
    // Events are replicated state: watchers on any node must see the same ones.
    h.u64(state.events.len() as u64);
    for (name, log) in &state.events {
        h.bytes(name.as_bytes());
        match log.dropped_through() {
            Some(id) => {
                h.u64(1);
                h.u64(id.index);
                h.u64(u64::from(id.n));
            }
            None => h.u64(0),
        }
        h.u64(log.len() as u64);
        for (id, event) in log.iter() {
            h.u64(id.index);
            h.u64(u64::from(id.n));
            h.bytes(event.topic.as_bytes());
            h.bytes(&event.payload);
        }
    }
    h.0.finalize().into()
}
