//! `ApplyThread`: the one thread that runs plugin applies, beside the async workers.
//!
//! Why a thread of its own: a plugin call is CPU work that must not hold an async
//! worker (with one worker, HTTP and heartbeats would wait behind it), and WASI's
//! sync bindings start a nested `block_on`, which panics on a runtime worker. The
//! blocking pool answers both but wakes a pooled thread per batch, and
//! `block_in_place` hands the worker's queue to another thread per batch; both cost
//! a write tens of microseconds (README, Benchmarks). This thread only sleeps on its
//! queue: a batch costs one wake-up there and one back.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures in order on one dedicated thread; stops when dropped.
pub(super) struct ApplyThread {
    jobs: mpsc::Sender<Job>,
}

impl ApplyThread {
    pub(super) fn start() -> io::Result<ApplyThread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("cairn-apply".into())
            .spawn(move || {
                // Ends when the last sender is gone (the state machine dropped).
                for job in queue {
                    job();
                }
            })?;
        Ok(ApplyThread { jobs })
    }

    /// Runs `f` on the thread and waits for its result. A panic in `f` comes
    /// back as an error (the thread goes on with the next job).
    pub(super) async fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // Nobody waiting (the caller was cancelled) is not this thread's concern.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.jobs
            .send(job)
            .map_err(|_| io::Error::other("the apply thread stopped"))?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(io::Error::other("an apply panicked")),
            Err(_) => Err(io::Error::other("the apply thread stopped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_caller_and_survives_a_panic() {
        let t = ApplyThread::start().unwrap();
        let caller = std::thread::current().id();
        let ran_on = t.run(|| std::thread::current().name().map(str::to_string)).await;
        assert_eq!(Some("cairn-apply".to_string()), ran_on.unwrap());
        assert_ne!(caller, t.run(|| std::thread::current().id()).await.unwrap());
        assert!(t.run(|| panic!("boom")).await.is_err());
        assert_eq!(4, t.run(|| 2 + 2).await.unwrap());
    }
}
