//! A small thread pool with cooperative cancellation, on `cutoff::thread`.
//!
//! ```sh
//! cargo run -p cutoff --example thread_pool --features std
//! ```
//!
//! The tree:
//!
//! ```text
//! pool root ──┬── worker-0, worker-1, worker-2   (cutoff::thread::spawn_with under the root)
//!             └── one node per submitted job       (cancel one job, or all through the root)
//! ```
//!
//! Workers sleep on a condition variable; a cancel callback on each worker's node wakes it, so
//! shutting down needs no polling and no sentinel jobs. Jobs check their node
//! (`is_cancelled()` between steps, or block in `wait_timeout`), so cancelling a job stops it
//! at its next step, and a job cancelled while still queued never starts. Every submitted
//! job gets an answer (`Ok` or `Err(Cancelled)` with the reason): nothing is lost at shutdown.
//! The run takes well under a second and asserts its outcome.

#[cfg(not(feature = "std"))]
fn main() {
    println!(
        "this example needs the `std` feature: cargo run -p cutoff --example thread_pool --features std"
    );
}

#[cfg(feature = "std")]
fn main() {
    pool::main();
}

#[cfg(feature = "std")]
mod pool {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use core::time::Duration;
    use std::collections::VecDeque;
    use std::sync::{Arc, Condvar, Mutex, mpsc};
    use std::time::Instant;

    use cutoff::thread::JoinHandle;
    use cutoff::{CancelSource, CancelToken, Cancelled, NodeView, Reason};

    type Job = Box<dyn FnOnce() + Send>;

    #[derive(Default)]
    struct Queue {
        jobs: Mutex<VecDeque<Job>>,
        ready: Condvar,
    }

    /// A fixed set of workers under one root node.
    struct Pool {
        root: CancelSource,
        queue: Arc<Queue>,
        workers: Vec<JoinHandle<usize>>,
    }

    /// A submitted job: its node (to cancel it alone) and where its answer arrives.
    struct Task<T> {
        node: CancelSource,
        answer: mpsc::Receiver<Result<T, Cancelled>>,
    }

    impl<T> Task<T> {
        fn cancel_with(&self, reason: Reason) {
            self.node.cancel_with(reason);
        }

        fn wait(self) -> Result<T, Cancelled> {
            self.answer.recv().expect("the pool answers every job")
        }
    }

    impl Pool {
        fn new(workers: usize) -> Pool {
            let root = CancelSource::new();
            let queue = Arc::new(Queue::default());
            let workers = (0..workers)
                .map(|i| {
                    let queue = Arc::clone(&queue);
                    cutoff::thread::spawn_with(
                        std::thread::Builder::new().name(format!("worker-{i}")),
                        &root,
                        move |token| worker(&token, &queue),
                    )
                    .expect("spawn a worker")
                })
                .collect();
            Pool {
                root,
                queue,
                workers,
            }
        }

        /// Queue `f`; it runs on a worker with its own node, a child of the pool's root.
        fn submit<T, F>(&self, f: F) -> Task<T>
        where
            T: Send + 'static,
            F: FnOnce(&NodeView) -> Result<T, Cancelled> + Send + 'static,
        {
            let node = self.root.child();
            let token = node.token();
            let (tx, answer) = mpsc::sync_channel(1);
            let job: Job = Box::new(move || {
                // Cancelled while still queued (alone, or by shutdown): never started.
                let out = match token.reason() {
                    Some(reason) => Err(Cancelled::new(reason)),
                    None => f(&token),
                };
                let _ = tx.send(out);
            });
            self.queue.jobs.lock().unwrap().push_back(job);
            self.queue.ready.notify_one();
            Task { node, answer }
        }

        /// Cancel everything with `Reason::Shutdown`, let the workers answer what is still
        /// queued, and join them; returns how many jobs each worker handled.
        fn shutdown(self) -> Vec<usize> {
            self.root.cancel_with(Reason::Shutdown);
            self.workers.into_iter().map(JoinHandle::join).collect()
        }
    }

    /// A worker: take jobs until the node is cancelled and the queue is empty.
    fn worker(token: &CancelToken, queue: &Queue) -> usize {
        let mut handled = 0;
        // Taking the lock before notifying closes the gap between a worker's "not cancelled"
        // check and its wait: the callback cannot run in between.
        let wake_all = |_: &Reason| {
            drop(queue.jobs.lock().unwrap());
            queue.ready.notify_all();
        };
        token.with_callback(wake_all, || {
            loop {
                let job = {
                    let mut jobs = queue.jobs.lock().unwrap();
                    loop {
                        if let Some(job) = jobs.pop_front() {
                            break Some(job);
                        }
                        if token.is_cancelled() {
                            break None;
                        }
                        jobs = queue.ready.wait(jobs).unwrap();
                    }
                };
                let Some(job) = job else {
                    return handled;
                };
                job();
                handled += 1;
            }
        })
    }

    /// A CPU-bound job that checks its node between steps: counts primes below `limit`.
    fn count_primes(node: &NodeView, limit: u64, started: &AtomicUsize) -> Result<u64, Cancelled> {
        started.fetch_add(1, Ordering::SeqCst);
        let mut count = 0;
        for n in 2..limit {
            if n % 1024 == 0
                && let Some(reason) = node.reason()
            {
                return Err(Cancelled::new(reason));
            }
            if (2..).take_while(|d| d * d <= n).all(|d| n % d != 0) {
                count += 1;
            }
        }
        Ok(count)
    }

    pub(super) fn main() {
        let t0 = Instant::now();
        let pool = Pool::new(3);
        let started = Arc::new(AtomicUsize::new(0));

        // 1. Ordinary jobs run to completion.
        let sums: Vec<_> = (1..=8u64)
            .map(|k| pool.submit(move |_node| Ok((1..=k * 1000).sum::<u64>())))
            .collect();
        for (k, task) in (1..=8u64).zip(sums) {
            let n = k * 1000;
            assert_eq!(task.wait(), Ok(n * (n + 1) / 2));
        }
        println!("8 jobs completed");

        // 2. One long job, cancelled alone once it runs; the pool is not affected.
        let s = Arc::clone(&started);
        let long = pool.submit(move |node| count_primes(node, u64::MAX, &s));
        while started.load(Ordering::SeqCst) < 1 {
            std::thread::yield_now();
        }
        long.cancel_with(Reason::Code(1));
        assert_eq!(long.wait().unwrap_err().into_reason(), Reason::Code(1));
        assert!(!pool.root.is_cancelled());
        let small = pool.submit(|node| count_primes(node, 100, &AtomicUsize::new(0)));
        assert_eq!(small.wait(), Ok(25));
        println!("a long job was cancelled alone (Code(1)); the pool kept working");

        // 3. Fill every worker with a job that waits for its node, queue two more behind
        //    them, and shut down: the running ones stop with `Shutdown`, the queued ones are
        //    answered without being started.
        let blockers: Vec<_> = (0..3)
            .map(|_| {
                let s = Arc::clone(&started);
                pool.submit(move |node| {
                    s.fetch_add(1, Ordering::SeqCst);
                    loop {
                        if let Some(reason) = node.wait_timeout(Duration::from_secs(60)) {
                            return Err::<(), _>(Cancelled::new(reason));
                        }
                    }
                })
            })
            .collect();
        while started.load(Ordering::SeqCst) < 1 + 3 {
            std::thread::yield_now();
        }
        let ran = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let ran = Arc::clone(&ran);
                pool.submit(move |_node| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
            .collect();

        let handled = pool.shutdown();
        for task in blockers.into_iter().chain(queued) {
            assert_eq!(task.wait().unwrap_err().into_reason(), Reason::Shutdown);
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "queued jobs never started");
        assert_eq!(handled.iter().sum::<usize>(), 8 + 2 + 3 + 2);
        println!("shutdown: 3 running jobs stopped and 2 queued jobs answered, all with Shutdown");
        println!("jobs per worker: {handled:?}");

        let elapsed = t0.elapsed();
        assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
        println!("ok in {elapsed:?}");
    }
}
