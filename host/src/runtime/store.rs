//! The per-call store data: the KV overlay, context, WASI context and limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Event;
use super::Kv;
use super::wasi::{CapturedOutput, build_ctx};

/// A call's pending writes: `Some` = set, `None` = delete.
pub(crate) type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Whether a call may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallMode {
    /// `apply`: writes are buffered and committed on `Ok`.
    Apply,
    /// `query`: read-only; a write is refused and fails the call.
    Query,
}

/// A per-call byte budget a guest ran past. Recorded in [`CallState`] and then
/// trapped on, so the call fails with the budget's own code even if the guest
/// would have ignored an error return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    /// `max_write_bytes_per_call`.
    Write,
    /// `max_scan_bytes_per_call`.
    Scan,
}

/// Enforces the per-instance memory cap and remembers that it was hit, so a
/// memory-limit failure is reported as its own kind rather than a generic trap.
pub(crate) struct Limiter {
    pub(crate) memory_limit_bytes: usize,
    pub(crate) table_elements_max: usize,
    pub(crate) memory_limit_hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit_bytes {
            self.memory_limit_hit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.memory_limit_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements_max)
    }
}

/// Everything a host import can see during one call. Plain data, one per store.
pub(crate) struct CallState {
    pub(crate) mode: CallMode,
    /// Shared with the WASI context's random streams (their seed input).
    pub(crate) plugin: Arc<str>,
    pub(crate) log_index: u64,
    pub(crate) timestamp_ms: u64,
    /// The committed KV as of the start of the call (a cheap persistent clone).
    pub(crate) base: Kv,
    /// Writes of this call: `Some` = set, `None` = delete. Committed only on `Ok`.
    pub(crate) overlay: Overlay,
    pub(crate) events: Vec<Event>,
    pub(crate) event_bytes: usize,
    /// Set when a guest tried to write during `query`, so the call fails even
    /// if a careless plugin ignored the error.
    pub(crate) write_in_query: bool,
    /// Number of `context.random-bytes` calls so far, so successive calls differ.
    pub(crate) random_calls: u64,
    /// Key + value bytes handed to `set`/`delete` so far (never above the budget).
    pub(crate) write_bytes: usize,
    /// Key + value bytes returned by `scan` so far (never above the budget).
    pub(crate) scan_bytes: usize,
    /// The byte budget the guest ran past, if any; decides the call's error.
    pub(crate) budget_exceeded: Option<Budget>,
    pub(crate) limits: super::Limits,
    pub(crate) limiter: Limiter,
    pub(crate) wasi: LazyWasi,
    pub(crate) table: ResourceTable,
}

/// The call's WASI context, built when the guest first calls a WASI import.
///
/// Building one costs about as much as the guest's whole `apply` (boxed
/// clocks, streams and generators, each default generator seeded from the
/// OS only to be replaced), and a plugin built with the SDK calls WASI only
/// to report a panic. The context is the same whenever it is built: it is
/// made from the command alone.
pub(crate) struct LazyWasi {
    log_index: u64,
    plugin: Arc<str>,
    timestamp_ms: u64,
    /// Guest stdout+stderr kept before the rest is dropped (node-local).
    log_cap_bytes: usize,
    built: Option<(WasiCtx, CapturedOutput)>,
}

impl LazyWasi {
    pub(crate) fn new(
        log_index: u64,
        plugin: Arc<str>,
        timestamp_ms: u64,
        log_cap_bytes: usize,
    ) -> Self {
        Self {
            log_index,
            plugin,
            timestamp_ms,
            log_cap_bytes,
            built: None,
        }
    }

    fn ctx(&mut self) -> &mut WasiCtx {
        let (ctx, _) = self.built.get_or_insert_with(|| {
            let output = CapturedOutput::new(self.log_cap_bytes);
            let ctx = build_ctx(self.log_index, &self.plugin, self.timestamp_ms, &output);
            (ctx, output)
        });
        ctx
    }

    /// What the guest wrote to stdout and stderr (both empty if it never
    /// touched WASI), and the stderr tail.
    pub(crate) fn take_output(&self) -> (Vec<u8>, Vec<u8>) {
        match &self.built {
            Some((_, output)) => output.take(),
            None => (Vec::new(), Vec::new()),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.ctx(),
            table: &mut self.table,
        }
    }
}
