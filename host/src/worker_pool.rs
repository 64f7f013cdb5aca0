//! `WorkerPool`: a few dedicated threads that run blocking closures (plugin calls) in
//! the order they arrive, beside the async workers.
//!
//! Why not tokio's blocking pool: it gives every concurrent call a thread of its own,
//! so under load each call wakes a sleeping thread and puts it back to sleep; with 64
//! queries in flight that was half of a leader's CPU (`perf`, README Benchmarks). Here
//! a busy thread takes the next job without sleeping, and a thread is woken only when
//! one is idle. Why not the async workers: a call is CPU work that must not hold them
//! (HTTP and heartbeats would wait behind it), and WASI's sync bindings start a nested
//! `block_on`, which panics on a runtime worker.

use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job: only then does a new job need a wake-up.
    idle: usize,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock and catch their panics; a poisoned queue is intact.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs closures on `threads` dedicated threads; the threads finish the queued jobs
/// and exit when the pool is dropped.
pub struct WorkerPool {
    shared: Arc<Shared>,
}

impl WorkerPool {
    /// Starts `threads` (at least one) threads named `name`.
    pub fn start(name: &str, threads: usize) -> io::Result<WorkerPool> {
        let shared = Arc::new(Shared::default());
        for _ in 0..threads.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || work(&shared))?;
        }
        Ok(WorkerPool { shared })
    }

    /// Runs `f` on a pool thread and waits for its result. A panic in `f` comes back
    /// as an error. If the caller stops waiting before `f` starts, `f` never runs
    /// (what it captured is dropped): a call nobody waits for costs nothing.
    pub async fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return;
            }
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        {
            let mut q = self.shared.lock();
            q.jobs.push_back(job);
            if q.idle > 0 {
                self.shared.ready.notify_one();
            }
        }
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(io::Error::other("a plugin call panicked")),
            Err(_) => Err(io::Error::other("the worker pool stopped")),
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared) {
    let mut q = shared.lock();
    loop {
        if let Some(job) = q.jobs.pop_front() {
            drop(q);
            job();
            q = shared.lock();
        } else if q.closed {
            return;
        } else {
            q.idle += 1;
            q = shared.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.idle -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn runs_jobs_on_its_threads_and_survives_a_panic() {
        let pool = WorkerPool::start("test-pool", 1).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert_eq!(Some("test-pool".to_string()), name);
        assert!(pool.run(|| panic!("boom")).await.is_err());
        assert_eq!(4, pool.run(|| 2 + 2).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_callers_all_get_their_answer_and_jobs_run_in_parallel() {
        let pool = Arc::new(WorkerPool::start("test-pool", 2).unwrap());
        // Two jobs that each wait for the other: they only finish if both run at once.
        let met = Arc::new(std::sync::Barrier::new(2));
        let (a, b) = (met.clone(), met);
        let (ra, rb) = tokio::join!(pool.run(move || a.wait()), pool.run(move || b.wait()));
        ra.unwrap();
        rb.unwrap();
        let sum: usize = futures_util::future::join_all((0..200).map(|i| {
            let pool = pool.clone();
            async move { pool.run(move || i).await.unwrap() }
        }))
        .await
        .into_iter()
        .sum();
        assert_eq!((0..200).sum::<usize>(), sum);
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_is_not_run() {
        let pool = WorkerPool::start("test-pool", 1).unwrap();
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        // Keep the only thread busy, queue a job, abandon it, then free the thread.
        let busy = pool.run(move || hold_rx.recv().ok());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let abandoned = pool.run(move || counted.fetch_add(1, Ordering::SeqCst));
        let (busy, ()) = tokio::join!(busy, async move {
            // Poll the abandoned call once (so it is queued), then drop it.
            let mut abandoned = Box::pin(abandoned);
            std::future::poll_fn(|cx| {
                assert!(abandoned.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
            drop(abandoned);
            hold_tx.send(()).unwrap();
        });
        busy.unwrap();
        pool.run(|| ()).await.unwrap();
        assert_eq!(0, runs.load(Ordering::SeqCst));
    }
}
