//! WASI p2 virtualised for determinism: clocks, randomness and stdio that never
//! reach the real host.
//!
//! Rust's std on wasm32-wasip2 imports clocks, random, environment, exit and
//! stdio even for a plugin that does no I/O, so WASI must be linked. Every
//! source of non-determinism is replaced here by a value derived from the log:
//! both clocks read the leader's timestamp for the command, and both random
//! sources are ChaCha20 streams seeded from (log index, plugin name).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng, TryRng};
use sha2::{Digest, Sha256};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// A clock frozen at the command's timestamp.
struct FrozenClock {
    since_epoch: Duration,
}

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.since_epoch
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        u64::try_from(self.since_epoch.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Derives a 32-byte seed for one purpose from the command's identity.
pub(crate) fn seed(log_index: u64, plugin: &str, purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"cairn-seed-v1");
    h.update(log_index.to_be_bytes());
    h.update((plugin.len() as u64).to_be_bytes());
    h.update(plugin.as_bytes());
    h.update(purpose.as_bytes());
    h.finalize().into()
}

/// The last bytes of guest stderr kept for a trap's message, whatever this
/// node's log cap: the message is stored, so it must not depend on a
/// node-local setting. A constant, because it shapes replicated results.
pub(crate) const STDERR_TAIL_BYTES: usize = 4 * 1024;

/// What one call's stdout and stderr wrote.
#[derive(Default)]
struct Captured {
    /// Both streams, up to the node's log cap (for the host's log only).
    log: Vec<u8>,
    /// The last [`STDERR_TAIL_BYTES`] of stderr (for trap messages).
    stderr_tail: VecDeque<u8>,
}

/// Guest stdout/stderr: kept in memory up to a cap, excess silently dropped.
///
/// Dropping (rather than failing the write) matters: Rust's `print!` panics on
/// a write error, which would turn a chatty plugin into a trapping one.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    buf: Arc<Mutex<Captured>>,
    cap_bytes: usize,
    is_stderr: bool,
}

impl CapturedOutput {
    /// The stdout handle of a new capture; [`CapturedOutput::stderr`] gives its pair.
    pub(crate) fn new(cap_bytes: usize) -> Self {
        Self {
            buf: Arc::default(),
            cap_bytes,
            is_stderr: false,
        }
    }

    /// The stderr handle writing into the same capture.
    pub(crate) fn stderr(&self) -> Self {
        Self {
            is_stderr: true,
            ..self.clone()
        }
    }

    /// Everything captured so far (at most the cap), and the stderr tail.
    pub(crate) fn take(&self) -> (Vec<u8>, Vec<u8>) {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let tail = std::mem::take(&mut buf.stderr_tail).into();
        (std::mem::take(&mut buf.log), tail)
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap_bytes.saturating_sub(buf.log.len());
        buf.log.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if self.is_stderr {
            let keep = &bytes[bytes.len().saturating_sub(STDERR_TAIL_BYTES)..];
            let tail = &mut buf.stderr_tail;
            tail.extend(keep);
            let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
            tail.drain(..excess);
        }
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A ChaCha20 stream seeded from (log index, plugin, purpose) on first use.
///
/// Seeding costs a SHA-256 and a cipher setup; most plugins (every Rust one
/// built with the SDK) never ask WASI for randomness, so the seed is derived
/// only when the guest first draws. The stream is the same either way.
struct LazySeededRng {
    log_index: u64,
    plugin: Arc<str>,
    purpose: &'static str,
    rng: Option<ChaCha20Rng>,
}

impl LazySeededRng {
    fn new(log_index: u64, plugin: Arc<str>, purpose: &'static str) -> Self {
        Self {
            log_index,
            plugin,
            purpose,
            rng: None,
        }
    }

    fn rng(&mut self) -> &mut ChaCha20Rng {
        self.rng.get_or_insert_with(|| {
            ChaCha20Rng::from_seed(seed(self.log_index, &self.plugin, self.purpose))
        })
    }
}

impl TryRng for LazySeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.rng().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.rng().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.rng().fill_bytes(dst);
        Ok(())
    }
}

/// Builds the WASI context for one call: no files, no environment, no network,
/// clocks frozen at `timestamp_ms`, randomness seeded from the command.
pub(crate) fn build_ctx(
    log_index: u64,
    plugin: &Arc<str>,
    timestamp_ms: u64,
    output: &CapturedOutput,
) -> WasiCtx {
    let clock = || FrozenClock {
        since_epoch: Duration::from_millis(timestamp_ms),
    };
    // The insecure seed is a plain number in the context, so it is derived
    // now; the two streams wait until the guest draws from them.
    let insecure_seed = seed(log_index, plugin, "wasi-insecure-seed");
    let mut seed16 = [0u8; 16];
    seed16.copy_from_slice(&insecure_seed[..16]);
    WasiCtxBuilder::new()
        .wall_clock(clock())
        .monotonic_clock(clock())
        .secure_random(LazySeededRng::new(log_index, plugin.clone(), "wasi-secure"))
        .insecure_random(LazySeededRng::new(
            log_index,
            plugin.clone(),
            "wasi-insecure",
        ))
        .insecure_random_seed(u128::from_be_bytes(seed16))
        .stdout(output.clone())
        .stderr(output.stderr())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_stream_is_the_eagerly_seeded_stream_and_derives_nothing_until_drawn() {
        let plugin: Arc<str> = "counter".into();
        let mut lazy = LazySeededRng::new(42, plugin.clone(), "wasi-secure");
        assert!(lazy.rng.is_none(), "no seed before the first draw");
        let mut eager = ChaCha20Rng::from_seed(seed(42, &plugin, "wasi-secure"));
        let mut got = [0u8; 40];
        let mut want = [0u8; 40];
        lazy.try_fill_bytes(&mut got).unwrap();
        eager.fill_bytes(&mut want);
        assert_eq!(got, want);
        assert_eq!(lazy.try_next_u64().unwrap(), eager.next_u64());
        assert_eq!(lazy.try_next_u32().unwrap(), eager.next_u32());
        // Another purpose is another stream.
        let mut other = LazySeededRng::new(42, plugin, "wasi-insecure");
        assert_ne!(other.try_next_u64().unwrap(), eager.next_u64());
    }
}
