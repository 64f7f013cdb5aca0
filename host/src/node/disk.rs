//! The disk alarm: free space on the data dir's filesystem, measured in the
//! background and on the write path (every write near the watermark, at most
//! every 10 ms far above it); below `min_free_disk_bytes` the node refuses new
//! writes until space returns.
//!
//! Why refuse early: once a log append fails for lack of space, openraft stops
//! for good (a storage error is fatal to it) and only a restart brings the node
//! back. Refusing writes while some space is left keeps Raft running, reads
//! working, and lets the node resume by itself when space is freed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::api::error::ApiError;
use crate::config::Config;

/// What the watcher last measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DiskStatus {
    /// Bytes available to this process on the data dir's filesystem.
    pub(super) free_bytes: u64,
    /// The watermark (`min_free_disk_bytes`; 0: alarm disabled).
    pub(super) min_free_bytes: u64,
    /// Whether the alarm is raised (writes refused).
    pub(super) alarm: bool,
}

/// Free-space watcher of one node; shared by the background task and the write path.
pub(super) struct DiskWatch {
    data_dir: PathBuf,
    min_free_bytes: u64,
    free_bytes: AtomicU64,
    alarm: AtomicBool,
    /// Set while measuring fails, so the failure is logged once, not per check.
    measure_failed: AtomicBool,
    /// When the last measurement started, in microseconds since `born`.
    measured_at_micros: AtomicU64,
    born: Instant,
    /// Measurements taken (for tests: which calls reused one).
    measurements: AtomicU64,
}

/// How long a measurement far above the watermark stands for the write path.
const FAR_REUSE: Duration = Duration::from_millis(10);

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn available_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

impl DiskWatch {
    /// A watcher of `config.data_dir`; measures once so the gauges start true.
    pub(super) fn new(config: &Config) -> Self {
        let watch = DiskWatch {
            data_dir: config.data_dir.clone(),
            min_free_bytes: config.min_free_disk_bytes,
            free_bytes: AtomicU64::new(0),
            alarm: AtomicBool::new(false),
            measure_failed: AtomicBool::new(false),
            measured_at_micros: AtomicU64::new(0),
            born: Instant::now(),
            measurements: AtomicU64::new(0),
        };
        watch.check();
        watch
    }

    /// Measures free space now, updates the gauges, and raises or clears the
    /// alarm, logging each change once. A failed measurement keeps the last
    /// state: a node must not stop taking writes because statvfs hiccuped.
    pub(super) fn check(&self) -> DiskStatus {
        self.measurements.fetch_add(1, Ordering::Relaxed);
        self.measured_at_micros
            .store(self.micros_since_born(), Ordering::Relaxed);
        match available_bytes(&self.data_dir) {
            Ok(free) => {
                if self.measure_failed.swap(false, Ordering::Relaxed) {
                    tracing::info!(data_dir = %self.data_dir.display(), "measuring free disk space works again");
                }
                self.free_bytes.store(free, Ordering::Relaxed);
                let low = self.min_free_bytes > 0 && free < self.min_free_bytes;
                let was = self.alarm.swap(low, Ordering::Relaxed);
                if low && !was {
                    tracing::warn!(
                        free_bytes = free,
                        min_free_disk_bytes = self.min_free_bytes,
                        data_dir = %self.data_dir.display(),
                        "disk alarm raised: free space is below min_free_disk_bytes; \
                         refusing writes (507) until space is freed, reads still work"
                    );
                } else if was && !low {
                    tracing::info!(
                        free_bytes = free,
                        min_free_disk_bytes = self.min_free_bytes,
                        data_dir = %self.data_dir.display(),
                        "disk alarm cleared: accepting writes again"
                    );
                }
            }
            Err(e) => {
                if !self.measure_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        data_dir = %self.data_dir.display(),
                        "cannot measure free disk space; the disk alarm keeps its last state"
                    );
                }
            }
        }
        self.status()
    }

    /// The last measurement, without measuring.
    pub(super) fn status(&self) -> DiskStatus {
        DiskStatus {
            free_bytes: self.free_bytes.load(Ordering::Relaxed),
            min_free_bytes: self.min_free_bytes,
            alarm: self.alarm.load(Ordering::Relaxed),
        }
    }

    fn micros_since_born(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// `Ok` if a new write may be proposed. Near the watermark (less than
    /// twice it free) or in alarm, measures anew (one statvfs) so the
    /// watermark only has to cover the writes in flight, and so writes resume
    /// the moment space is freed. Far above it, a measurement younger than
    /// [`FAR_REUSE`] stands: a statvfs per write was 5% of a busy leader's
    /// async worker, and 10 ms of writes cannot cross a watermark's worth.
    pub(super) fn admit_write(&self) -> Result<(), ApiError> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        let last = self.status();
        let far = !last.alarm && last.free_bytes / 2 >= self.min_free_bytes;
        let age_micros = self
            .micros_since_born()
            .saturating_sub(self.measured_at_micros.load(Ordering::Relaxed));
        let status = if far && age_micros < FAR_REUSE.as_micros() as u64 {
            last
        } else {
            self.check()
        };
        if status.alarm {
            return Err(ApiError::InsufficientStorage {
                free_bytes: status.free_bytes,
                min_free_bytes: status.min_free_bytes,
                data_dir: self.data_dir.display().to_string(),
            });
        }
        Ok(())
    }

    /// Measures every `interval` until the task is aborted: keeps the gauges
    /// fresh and raises the alarm on a node that takes no writes itself (a
    /// follower, whose log still grows with what the leader replicates).
    pub(super) async fn run(self: std::sync::Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let watch = self.clone();
            // statvfs can block on a sick (e.g. network) filesystem: keep it
            // off the async workers.
            if tokio::task::spawn_blocking(move || watch.check())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(dir: &std::path::Path, min_free_disk_bytes: u64) -> DiskWatch {
        DiskWatch::new(&Config {
            data_dir: dir.to_path_buf(),
            min_free_disk_bytes,
            ..Config::default()
        })
    }

    #[test]
    fn measures_the_data_dirs_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let w = watch(dir.path(), 1);
        let s = w.status();
        assert!(s.free_bytes > 0, "{s:?}");
        assert!(!s.alarm);
        assert!(w.admit_write().is_ok());
    }

    #[test]
    fn a_watermark_above_the_free_space_refuses_writes_with_507() {
        let dir = tempfile::tempdir().unwrap();
        let w = watch(dir.path(), u64::MAX);
        assert!(w.status().alarm);
        let err = w.admit_write().unwrap_err();
        assert_eq!(err.status().as_u16(), 507);
        assert_eq!(err.code(), "insufficient-storage");
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(msg.contains(&u64::MAX.to_string()), "{msg}");
    }

    #[test]
    fn far_above_the_watermark_writes_reuse_a_fresh_measurement_near_it_each_measures() {
        let dir = tempfile::tempdir().unwrap();
        let far = watch(dir.path(), 1);
        let before = far.measurements.load(Ordering::Relaxed);
        for _ in 0..100 {
            far.admit_write().unwrap();
        }
        // A slow machine may cross one or two 10 ms windows, never a hundred.
        let taken = far.measurements.load(Ordering::Relaxed) - before;
        assert!(
            taken <= 5,
            "{taken} measurements for 100 writes far from the mark"
        );

        // Just above the watermark (less than twice it free): every write measures.
        let free = far.status().free_bytes;
        let near = watch(dir.path(), free / 2 + free / 4);
        assert!(!near.status().alarm, "{:?}", near.status());
        let before = near.measurements.load(Ordering::Relaxed);
        for _ in 0..10 {
            let _ = near.admit_write();
        }
        assert_eq!(10, near.measurements.load(Ordering::Relaxed) - before);
    }

    #[test]
    fn zero_disables_the_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let w = watch(dir.path(), 0);
        assert!(!w.check().alarm);
        assert!(w.admit_write().is_ok());
        // The gauge is still measured for /metrics.
        assert!(w.status().free_bytes > 0);
    }

    #[test]
    fn a_failed_measurement_keeps_the_last_state() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("data");
        std::fs::create_dir(&sub).unwrap();
        let w = watch(&sub, 1);
        let before = w.status();
        std::fs::remove_dir(&sub).unwrap();
        assert_eq!(w.check(), before);
        assert!(w.admit_write().is_ok());
    }
}
