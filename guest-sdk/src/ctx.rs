//! `Ctx`: the plugin's handle to the host (KV store and command context), backed by the WIT imports on wasm or by `MockHost` in native tests.

use std::rc::Rc;

use serde::Serialize;

use crate::error::{KvError, PluginError};

/// One key and its value, as returned by [`Ctx::scan`].
pub type Entry = (Vec<u8>, Vec<u8>);

/// How many entries [`Entries`] asks the host for per `scan` call. Big enough
/// that listing a page is one host call, small enough not to copy much that a
/// caller may not read. The host may cap it further.
const SCAN_PAGE: usize = 256;

/// What a [`Ctx`] talks to. Kept private so the only backends are the real
/// host (WIT imports) and [`crate::MockHost`], which must behave alike.
///
/// Every method takes `&self`: the wasm backend is stateless and the mock uses
/// interior mutability. Read-only enforcement is the backend's job, exactly as
/// on the real host, so `Ctx` cannot accidentally be more lenient than it.
pub(crate) trait Host {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    fn delete(&self, key: &[u8]) -> Result<(), KvError>;
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Entry>;
    fn log_index(&self) -> u64;
    fn timestamp_ms(&self) -> u64;
    fn random_bytes(&self, len: u32) -> Vec<u8>;
    fn emit(&self, topic: &str, payload: &[u8]);
}

/// The plugin's view of the host during one `apply` or `query` call.
///
/// `apply` receives `&mut Ctx` and `query` receives `&Ctx`; the methods that
/// mutate (`set`, `delete`, `emit`) take `&mut self`, so the compiler already
/// stops a query from writing. The host enforces it too: a write that reaches
/// it during `query` fails with [`KvError::ReadOnly`] (and so does
/// [`crate::MockHost`]).
///
/// Everything an `apply` sees through `Ctx` is identical on every node: the
/// log index, the leader's timestamp, and randomness seeded from the log index.
/// A `query` sees the serving node's clock (see [`Ctx::timestamp_ms`]).
pub struct Ctx {
    host: Rc<dyn Host>,
}

impl Ctx {
    pub(crate) fn from_host(host: Rc<dyn Host>) -> Self {
        Self { host }
    }

    /// The Raft log index of the command being applied; during `query`, the
    /// index of the last command applied to the state being read.
    pub fn index(&self) -> u64 {
        self.host.log_index()
    }

    /// Milliseconds since the Unix epoch. Use this instead of any clock.
    ///
    /// In `apply`: the leader's stamp for the command, identical on every node
    /// and never below the previous command's. In `query`: the serving node's
    /// clock, never below the last applied command's stamp, so a query can
    /// tell whether a deadline has passed without a write (queries change no
    /// state, so this costs no determinism).
    pub fn timestamp_ms(&self) -> u64 {
        self.host.timestamp_ms()
    }

    /// `len` deterministic pseudo-random bytes (seeded from the log index and
    /// plugin name; not secret). Successive calls in one command differ.
    pub fn random_bytes(&self, len: u32) -> Vec<u8> {
        self.host.random_bytes(len)
    }

    /// A deterministic pseudo-random `u64` (see [`Ctx::random_bytes`]).
    pub fn random_u64(&self) -> u64 {
        let bytes = self.random_bytes(8);
        let mut buf = [0u8; 8];
        // The host returns exactly `len` bytes; copy defensively anyway.
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[..n]);
        u64::from_le_bytes(buf)
    }

    /// Emits an event. Events of a successful `apply` are returned to the
    /// caller next to the output; events of a failed call are dropped.
    pub fn emit(&mut self, topic: &str, payload: impl AsRef<[u8]>) {
        self.host.emit(topic, payload.as_ref());
    }

    /// Emits an event whose payload is `value` encoded as JSON.
    pub fn emit_json<T: Serialize + ?Sized>(
        &mut self,
        topic: &str,
        value: &T,
    ) -> Result<(), PluginError> {
        let payload = serde_json::to_vec(value).map_err(|e| {
            PluginError::new(
                PluginError::BAD_OUTPUT,
                format!("cannot encode event {topic:?}: {e}"),
            )
        })?;
        self.emit(topic, payload);
        Ok(())
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.host.get(key)
    }

    /// Stores `value` under `key`. Visible to later reads of this call at once,
    /// committed only if `apply` returns `Ok`.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.host.set(key, value)
    }

    /// Removes `key`; removing a missing key is not an error.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), KvError> {
        self.host.delete(key)
    }

    /// One host `scan` call: entries with `start <= key < end` (no `end`: to
    /// the end of the store) in ascending key order, at most `limit` of them —
    /// possibly fewer even if more exist, because the host may cap `limit`.
    /// Use [`Ctx::entries`] to read a whole range.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Entry> {
        self.host.scan(start, end, limit)
    }

    /// Iterates entries with `start <= key < end` in key order, at most `limit`
    /// of them (`usize::MAX` for all), calling `scan` page by page as needed.
    pub fn entries(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Entries<'_> {
        Entries {
            ctx: self,
            next_start: Some(start.to_vec()),
            end: end.map(<[u8]>::to_vec),
            page: Vec::new().into_iter(),
            remaining: limit,
        }
    }

    /// A second, writable handle to the same host, obtainable even from the
    /// `&Ctx` of a query.
    ///
    /// This defeats the compile-time guard on purpose: writes made through it
    /// during `query` still reach the host, which refuses them with
    /// [`KvError::ReadOnly`]. It exists for tests and fixtures that check that
    /// enforcement; ordinary plugins never need it.
    pub fn unguarded(&self) -> Ctx {
        Ctx {
            host: Rc::clone(&self.host),
        }
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("index", &self.index())
            .finish_non_exhaustive()
    }
}

/// Iterator over a key range, returned by [`Ctx::entries`]. Fetches pages of
/// entries from the host lazily, so stopping early costs nothing extra.
#[derive(Debug)]
pub struct Entries<'c> {
    ctx: &'c Ctx,
    /// Where the next page starts; `None` once the range is exhausted.
    next_start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    page: std::vec::IntoIter<Entry>,
    remaining: usize,
}

impl Iterator for Entries<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.remaining == 0 {
            return None;
        }
        if let Some(entry) = self.page.next() {
            self.remaining -= 1;
            return Some(entry);
        }
        let start = self.next_start.take()?;
        // Ask for no more than the caller still wants, so a small `limit`
        // is a single small host call.
        let want = self.remaining.min(SCAN_PAGE) as u32;
        let page = self.ctx.scan(&start, self.end.as_deref(), want);
        // Only an empty page proves the end: the host may return fewer
        // entries than asked for.
        let last = page.last()?;
        // The smallest key after `last` is `last` followed by a zero byte.
        let mut next = last.0.clone();
        next.push(0);
        self.next_start = Some(next);
        self.page = page.into_iter();
        self.next()
    }
}

/// The real host: the `cairn:plugin` WIT imports. Stateless.
pub(crate) struct WasmHost;

impl Host for WasmHost {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        crate::bindings::cairn::plugin::kv::get(key)
    }

    fn set(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        crate::bindings::cairn::plugin::kv::set(key, value).map_err(kv_error)
    }

    fn delete(&self, key: &[u8]) -> Result<(), KvError> {
        crate::bindings::cairn::plugin::kv::delete(key).map_err(kv_error)
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Entry> {
        crate::bindings::cairn::plugin::kv::scan(start, end, limit)
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn log_index(&self) -> u64 {
        crate::bindings::cairn::plugin::context::log_index()
    }

    fn timestamp_ms(&self) -> u64 {
        crate::bindings::cairn::plugin::context::timestamp_ms()
    }

    fn random_bytes(&self, len: u32) -> Vec<u8> {
        crate::bindings::cairn::plugin::context::random_bytes(len)
    }

    fn emit(&self, topic: &str, payload: &[u8]) {
        crate::bindings::cairn::plugin::context::emit(topic, payload)
    }
}

fn kv_error(e: crate::bindings::cairn::plugin::kv::KvError) -> KvError {
    use crate::bindings::cairn::plugin::kv::KvError as Wit;
    match e {
        Wit::ReadOnly => KvError::ReadOnly,
        Wit::KeyTooLarge => KvError::KeyTooLarge,
        Wit::ValueTooLarge => KvError::ValueTooLarge,
    }
}
