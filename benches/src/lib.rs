//! Shared helpers for the `cutoff` vs tokio-util benchmarks.
//!
//! * `benches/compare.rs`: the criterion benchmarks (every group holds the cutoff row(s),
//!   the tokio-util row and, where it makes sense, a physical floor, all with one config);
//! * `src/bin/mem.rs`: heap bytes and allocations per live child, with a counting allocator;
//! * `src/bin/report.rs`: reads criterion's `estimates.json` files and the memory figures and
//!   prints the cutoff/tokio-util ratio table (or writes `docs/BENCHMARKS.md`);
//! * `compare.sh`: runs all three.
//!
//! Set `CUTOFF_BENCH_QUICK=1` for the short configuration used by `compare.sh` (under a
//! minute); leave it unset for the full one.

use std::sync::Arc;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

/// Whether the short (quick) configuration was requested (`CUTOFF_BENCH_QUICK=1`).
pub fn quick() -> bool {
    std::env::var("CUTOFF_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Run `op(iters)` on `threads` threads that start together behind a barrier and return the
/// wall time from the first thread's start to the last thread's end.
///
/// Criterion divides the result by `iters`, so the reported time is the time in which *each*
/// thread did one operation: the total throughput across threads is `threads / time`.
pub fn run_threads<F>(threads: usize, iters: u64, op: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    op(iters);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect()
    });
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    last - first
}

/// A waker that counts its wake-ups (an `Arc`, like a real executor's task waker).
#[derive(Debug, Default)]
pub struct CountingWaker {
    count: AtomicUsize,
}

impl CountingWaker {
    /// A new counter and a [`Waker`] that bumps it.
    pub fn new() -> (Arc<Self>, Waker) {
        let c = Arc::new(Self::default());
        let w = Waker::from(c.clone());
        (c, w)
    }

    /// Number of wake-ups so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Reset the count to zero.
    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Number of live children in the fan-out cancel benchmark.
pub const FANOUT: usize = 100_000;
/// Depth of the chain in the deep-chain cancel benchmark.
pub const CHAIN: usize = 10_000;
/// Number of waiters in the wake benchmark.
pub const WAITERS: usize = 1_000;
