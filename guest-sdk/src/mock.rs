//! `MockHost`: an in-memory host for native tests that mirrors the real host's semantics (ordered KV, read-only queries, transactional applies, deterministic context).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use serde::de::DeserializeOwned;

use crate::ctx::{Ctx, Entry, Host};
use crate::error::{KvError, PluginError};
use crate::{Plugin, run_apply, run_query};

/// An event a plugin emitted with [`Ctx::emit`], as captured by [`MockHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The log index of the call that emitted it.
    pub index: u64,
    /// The topic.
    pub topic: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Event {
    /// Decodes the payload as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// An in-memory stand-in for a Cairn node, for testing plugins natively
/// (`cargo test`), like CosmWasm's mock dependencies.
///
/// It behaves like the real host where a plugin can tell:
/// - the KV store is ordered bytewise (a `BTreeMap`);
/// - [`MockHost::apply`] and friends run a command as a transaction at the next
///   log index: if the plugin returns `Err` (or panics), its writes and events
///   are discarded;
/// - [`MockHost::query`] and [`MockHost::query_ctx`] are read-only: writes fail
///   with [`KvError::ReadOnly`] and events are dropped;
/// - timestamp and randomness are deterministic and configurable; the
///   timestamp is the node's clock ([`MockHost::set_timestamp_ms`]): an apply
///   is stamped with it but never below the previous apply's stamp, and a
///   query sees it clamped to the last applied stamp, as on a real node.
///
/// It is single-threaded (`!Send`), like a plugin instance.
#[derive(Default)]
pub struct MockHost {
    state: Rc<State>,
}

/// A key and the value it held before a write (`None`: absent).
type Undo = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
struct State {
    kv: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// While a transaction runs: the previous value of every key it touched,
    /// in write order, so a failure can be undone without copying the store.
    undo: RefCell<Option<Vec<Undo>>>,
    events: RefCell<Vec<Event>>,
    index: Cell<u64>,
    /// The node's clock.
    timestamp_ms: Cell<u64>,
    /// Stamp of the last applied command; no call sees an earlier time.
    last_applied_ms: Cell<u64>,
    seed: Cell<u64>,
    rng: Cell<u64>,
    /// 0 means "no cap".
    scan_cap: Cell<u32>,
    /// 0 means "no limit".
    max_key_bytes: Cell<usize>,
    max_value_bytes: Cell<usize>,
}

impl State {
    fn reseed(&self) {
        // Like the host: the stream depends only on the seed and the log index.
        self.rng
            .set(self.seed.get() ^ self.index.get().wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }

    fn next_random(&self) -> u64 {
        // splitmix64: tiny, good enough for tests, and stable forever.
        let s = self.rng.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.rng.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
        let max_key = self.max_key_bytes.get();
        if max_key != 0 && key.len() > max_key {
            return Err(KvError::KeyTooLarge);
        }
        let max_value = self.max_value_bytes.get();
        if let Some(v) = value
            && max_value != 0
            && v.len() > max_value
        {
            return Err(KvError::ValueTooLarge);
        }
        let mut kv = self.kv.borrow_mut();
        let previous = match value {
            Some(v) => kv.insert(key.to_vec(), v.to_vec()),
            None => kv.remove(key),
        };
        if let Some(undo) = self.undo.borrow_mut().as_mut() {
            undo.push((key.to_vec(), previous));
        }
        Ok(())
    }
}

/// One view of the mock state; `read_only` is what the real host decides from
/// the kind of call (apply or query).
struct View {
    state: Rc<State>,
    read_only: bool,
}

impl Host for View {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state.kv.borrow().get(key).cloned()
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        if self.read_only {
            return Err(KvError::ReadOnly);
        }
        self.state.write(key, Some(value))
    }

    fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        if self.read_only {
            return Err(KvError::ReadOnly);
        }
        self.state.write(key, None)
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Entry> {
        let cap = self.state.scan_cap.get();
        let limit = if cap == 0 { limit } else { limit.min(cap) };
        if end.is_some_and(|end| end <= start) {
            return Vec::new();
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        self.state
            .kv
            .borrow()
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn log_index(&self) -> u64 {
        self.state.index.get()
    }

    fn timestamp_ms(&self) -> u64 {
        // An apply runs at its stamp (recorded as `last_applied_ms` when the
        // transaction began); a query at the clock, never below that stamp.
        self.state
            .timestamp_ms
            .get()
            .max(self.state.last_applied_ms.get())
    }

    fn random_bytes(&self, len: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize + 8);
        while out.len() < len as usize {
            out.extend_from_slice(&self.state.next_random().to_le_bytes());
        }
        out.truncate(len as usize);
        out
    }

    fn emit(&self, topic: &str, payload: &[u8]) {
        // The host drops events of queries.
        if !self.read_only {
            self.state.events.borrow_mut().push(Event {
                index: self.state.index.get(),
                topic: topic.to_owned(),
                payload: payload.to_vec(),
            });
        }
    }
}

/// Undoes a transaction's writes and events unless committed; runs on panic too.
struct Txn<'a> {
    state: &'a State,
    events_before: usize,
    committed: bool,
}

impl<'a> Txn<'a> {
    fn begin(state: &'a State) -> Self {
        let mut undo = state.undo.borrow_mut();
        assert!(undo.is_none(), "MockHost transactions do not nest");
        *undo = Some(Vec::new());
        Txn {
            state,
            events_before: state.events.borrow().len(),
            committed: false,
        }
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        let undo = self.state.undo.borrow_mut().take().unwrap_or_default();
        if self.committed {
            return;
        }
        let mut kv = self.state.kv.borrow_mut();
        for (key, previous) in undo.into_iter().rev() {
            match previous {
                Some(v) => kv.insert(key, v),
                None => kv.remove(&key),
            };
        }
        self.state.events.borrow_mut().truncate(self.events_before);
    }
}

impl MockHost {
    /// An empty store at log index 0, timestamp 0, seed 0, no limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the log index (the next [`MockHost::apply`] runs at `index + 1`).
    pub fn with_index(self, index: u64) -> Self {
        self.set_index(index);
        self
    }

    /// Sets the node's clock (see [`MockHost::set_timestamp_ms`]).
    pub fn with_timestamp_ms(self, ms: u64) -> Self {
        self.set_timestamp_ms(ms);
        self
    }

    /// Sets the seed of the deterministic random stream.
    pub fn with_seed(self, seed: u64) -> Self {
        self.state.seed.set(seed);
        self.state.reseed();
        self
    }

    /// Makes every `scan` return at most `cap` entries, as a real host may, to
    /// test that code pages correctly. `0` removes the cap.
    pub fn with_scan_cap(self, cap: u32) -> Self {
        self.state.scan_cap.set(cap);
        self
    }

    /// Makes writes of longer keys / larger values fail with
    /// [`KvError::KeyTooLarge`] / [`KvError::ValueTooLarge`]. `0` means no limit.
    pub fn with_limits(self, max_key_bytes: usize, max_value_bytes: usize) -> Self {
        self.state.max_key_bytes.set(max_key_bytes);
        self.state.max_value_bytes.set(max_value_bytes);
        self
    }

    /// The current log index (that of the last applied command).
    pub fn index(&self) -> u64 {
        self.state.index.get()
    }

    /// Sets the current log index.
    pub fn set_index(&self, index: u64) {
        self.state.index.set(index);
        self.state.reseed();
    }

    /// Sets the node's clock until changed: the next apply is stamped with it
    /// (never below the previous apply's stamp), and queries see it, clamped
    /// to the last applied stamp, exactly like a node serving a query.
    pub fn set_timestamp_ms(&self, ms: u64) {
        self.state.timestamp_ms.set(ms);
    }

    /// A writable context at the current index. Writes through it are applied
    /// at once (no transaction); use [`MockHost::transaction`] for rollback.
    pub fn ctx(&self) -> Ctx {
        self.view(false)
    }

    /// A read-only context, as a `query` gets: writes fail with
    /// [`KvError::ReadOnly`], events are dropped.
    pub fn query_ctx(&self) -> Ctx {
        self.view(true)
    }

    fn view(&self, read_only: bool) -> Ctx {
        Ctx::from_host(Rc::new(View {
            state: Rc::clone(&self.state),
            read_only,
        }))
    }

    /// Runs `f` as the host runs `apply`: at the next log index, committing
    /// its writes and events only if it returns `Ok` (a panic also rolls back).
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&mut Ctx) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        self.set_index(self.index() + 1);
        // The leader's stamp never goes backwards (the host clamps it too).
        let stamp = self
            .state
            .timestamp_ms
            .get()
            .max(self.state.last_applied_ms.get());
        self.state.last_applied_ms.set(stamp);
        let mut txn = Txn::begin(&self.state);
        let mut ctx = self.ctx();
        let result = f(&mut ctx);
        txn.committed = result.is_ok();
        result
    }

    /// Applies a typed command to plugin `P` (see [`MockHost::transaction`]).
    pub fn apply<P: Plugin>(&self, command: P::Command) -> Result<P::Output, PluginError> {
        self.transaction(|ctx| P::apply(ctx, command))
    }

    /// Runs `P::migrate(from_version)` as the host runs it inside an upgrade's
    /// log entry: a transaction at the next log index (an `Err` or a panic
    /// leaves the store as it was).
    pub fn migrate<P: Plugin>(&self, from_version: u64) -> Result<(), PluginError> {
        self.transaction(|ctx| P::migrate(ctx, from_version))
    }

    /// Runs a typed query against plugin `P`, read-only.
    pub fn query<P: Plugin>(&self, query: P::Query) -> Result<P::QueryOutput, PluginError> {
        P::query(&self.query_ctx(), query)
    }

    /// Applies raw input bytes exactly as the host would (JSON decode, apply,
    /// JSON encode, transaction) and returns the output parsed as JSON.
    pub fn apply_json<P: Plugin>(
        &self,
        input: impl AsRef<[u8]>,
    ) -> Result<serde_json::Value, PluginError> {
        let bytes = self.transaction(|ctx| run_apply::<P>(ctx, input.as_ref()))?;
        Ok(serde_json::from_slice(&bytes).expect("the SDK always encodes JSON"))
    }

    /// Runs a raw query exactly as the host would and returns the output as JSON.
    pub fn query_json<P: Plugin>(
        &self,
        input: impl AsRef<[u8]>,
    ) -> Result<serde_json::Value, PluginError> {
        let bytes = run_query::<P>(&self.query_ctx(), input.as_ref())?;
        Ok(serde_json::from_slice(&bytes).expect("the SDK always encodes JSON"))
    }

    /// Reads a key directly, bypassing any plugin.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state.kv.borrow().get(key).cloned()
    }

    /// Writes a key directly, bypassing any plugin and all limits (test setup).
    pub fn insert(&self, key: &[u8], value: &[u8]) {
        self.state
            .kv
            .borrow_mut()
            .insert(key.to_vec(), value.to_vec());
    }

    /// A copy of the whole store.
    pub fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.state.kv.borrow().clone()
    }

    /// Every event committed so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.state.events.borrow().clone()
    }

    /// Removes and returns every event committed so far.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.state.events.borrow_mut())
    }
}

// A panicking plugin cannot leave the mock inconsistent: transactions undo
// themselves on unwind, and no `RefCell` borrow is held while plugin code runs.
// So tests may `catch_unwind` around calls without `AssertUnwindSafe`.
impl std::panic::UnwindSafe for MockHost {}
impl std::panic::RefUnwindSafe for MockHost {}

impl std::fmt::Debug for MockHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHost")
            .field("index", &self.index())
            .field("keys", &self.state.kv.borrow().len())
            .field("events", &self.state.events.borrow().len())
            .finish()
    }
}
