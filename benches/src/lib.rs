//! Shared helpers for the `cutoff` vs tokio-util benchmarks.
//!
//! * `benches/compare.rs`: the criterion benchmarks (every group holds the cutoff row(s),
//!   the tokio-util row and, where it makes sense, a physical floor, all with one config);
//! * `src/bin/mem.rs`: heap bytes and allocations per live child, with a counting allocator;
//! * `src/bin/report.rs`: reads criterion's `estimates.json` files and the memory figures and
//!   prints the cutoff/tokio-util ratio table (or writes `docs/BENCHMARKS.md`);
//! * `benches/timer.rs`: the deadline benchmarks (cutoff-timer vs tokio's timer wheel plus a
//!   tokio-util child token), bodies in [`timer_bodies`];
//! * `src/bin/lateness.rs`: how late 1,000 concurrent 1-50 ms timeouts fire (cutoff-timer and
//!   tokio);
//! * `benches/seed.rs`: the seed's five timeout races (Go's side is `go/`, run by `go.sh`);
//! * `compare.sh`: runs them all.
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

/// A criterion group with the settings every cheap, per-operation benchmark uses (one config
/// for the cutoff, tokio-util, tokio and floor rows of a group; shorter with [`quick`]).
pub fn fast_group<'a>(
    c: &'a mut criterion::Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    if quick() {
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600))
            .sample_size(20)
            .nresamples(2_000);
    } else {
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_millis(1_500))
            .sample_size(30)
            .nresamples(20_000);
    }
    g
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

/// The timed bodies shared by the criterion benchmarks and the `paired` cross-check: each
/// runs `iters` iterations and returns only the time of the measured part.
pub mod bodies {
    use std::hint::black_box;
    use std::pin::{Pin, pin};
    use std::task::Context;
    use std::time::{Duration, Instant};

    use cutoff::{CancelSource, ChildNode};
    use tokio_util::sync::CancellationToken;

    use super::{CHAIN, CountingWaker, FANOUT, WAITERS};

    /// `parent.child()` + drop, `iters` times.
    pub fn cutoff_child_heap(parent: &CancelSource, iters: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(parent.child());
        }
        t.elapsed()
    }

    /// Pinned child create + link + drop, `iters` times.
    pub fn cutoff_child_pinned(parent: &CancelSource, iters: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..iters {
            let mut c = pin!(ChildNode::new(black_box(parent)));
            black_box(c.as_mut().link());
        }
        t.elapsed()
    }

    /// tokio-util `child_token()` + drop, `iters` times.
    pub fn tokio_child(parent: &CancellationToken, iters: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(parent.child_token());
        }
        t.elapsed()
    }

    /// Cancel a root with [`FANOUT`] live heap children; only the cancel is timed.
    pub fn cutoff_fanout_heap(iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let root = CancelSource::new();
            let kids: Vec<CancelSource> = (0..FANOUT).map(|_| root.child()).collect();
            let t = Instant::now();
            root.cancel();
            total += t.elapsed();
            assert!(kids[0].is_cancelled() && kids[FANOUT - 1].is_cancelled());
            drop(kids);
        }
        total
    }

    /// Cancel a root with [`FANOUT`] live pinned children (boxed in setup); only the cancel
    /// is timed.
    pub fn cutoff_fanout_pinned(iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let root = CancelSource::new();
            let kids: Vec<Pin<Box<ChildNode<'_>>>> = (0..FANOUT)
                .map(|_| {
                    let mut k = Box::pin(ChildNode::new(&root));
                    k.as_mut().link();
                    k
                })
                .collect();
            let t = Instant::now();
            root.cancel();
            total += t.elapsed();
            assert!(kids[0].as_ref().get().is_some_and(|n| n.is_cancelled()));
            drop(kids);
        }
        total
    }

    /// Cancel a tokio-util root with [`FANOUT`] live children; only the cancel is timed.
    pub fn tokio_fanout(iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let root = CancellationToken::new();
            let kids: Vec<CancellationToken> = (0..FANOUT).map(|_| root.child_token()).collect();
            let t = Instant::now();
            root.cancel();
            total += t.elapsed();
            assert!(kids[0].is_cancelled() && kids[FANOUT - 1].is_cancelled());
            drop(kids);
        }
        total
    }

    /// Cancel the root of a [`CHAIN`]-deep heap chain; only the cancel is timed.
    pub fn cutoff_chain(iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let mut chain = Vec::with_capacity(CHAIN + 1);
            chain.push(CancelSource::new());
            for i in 0..CHAIN {
                let next = chain[i].child();
                chain.push(next);
            }
            let t = Instant::now();
            chain[0].cancel();
            total += t.elapsed();
            assert!(chain[CHAIN].is_cancelled());
            drop(chain);
        }
        total
    }

    /// Cancel the root of a [`CHAIN`]-deep tokio-util chain; only the cancel is timed.
    pub fn tokio_chain(iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let mut chain = Vec::with_capacity(CHAIN + 1);
            chain.push(CancellationToken::new());
            for i in 0..CHAIN {
                let next = chain[i].child_token();
                chain.push(next);
            }
            let t = Instant::now();
            chain[0].cancel();
            total += t.elapsed();
            assert!(chain[CHAIN].is_cancelled());
            drop(chain);
        }
        total
    }

    /// Cancel a node with [`WAITERS`] `cancelled()` futures polled once; only the cancel is
    /// timed.
    pub fn cutoff_wake(iters: u64) -> Duration {
        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let source = CancelSource::new();
            let token = source.token();
            let mut futs: Vec<Pin<Box<_>>> =
                (0..WAITERS).map(|_| Box::pin(token.cancelled())).collect();
            for f in &mut futs {
                assert!(f.as_mut().poll(&mut cx).is_pending());
            }
            counter.reset();
            let t = Instant::now();
            source.cancel();
            total += t.elapsed();
            assert_eq!(counter.count(), WAITERS);
            drop(futs);
        }
        total
    }

    /// Cancel a tokio-util token with [`WAITERS`] `cancelled()` futures polled once; only the
    /// cancel is timed.
    pub fn tokio_wake(iters: u64) -> Duration {
        let (counter, waker) = CountingWaker::new();
        let mut cx = Context::from_waker(&waker);
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let token = CancellationToken::new();
            let mut futs: Vec<Pin<Box<_>>> =
                (0..WAITERS).map(|_| Box::pin(token.cancelled())).collect();
            for f in &mut futs {
                assert!(f.as_mut().poll(&mut cx).is_pending());
            }
            counter.reset();
            let t = Instant::now();
            token.cancel();
            total += t.elapsed();
            assert_eq!(counter.count(), WAITERS);
            drop(futs);
        }
        total
    }

    /// The wakers alone: clone in setup, `wake()` timed.
    pub fn floor_wake(iters: u64) -> Duration {
        let (counter, waker) = CountingWaker::new();
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let wakers: Vec<_> = (0..WAITERS).map(|_| waker.clone()).collect();
            counter.reset();
            let t = Instant::now();
            for w in wakers {
                w.wake();
            }
            total += t.elapsed();
            assert_eq!(counter.count(), WAITERS);
        }
        total
    }
}

/// Number of other deadlines pending in the "1M pending" timer benchmarks.
pub const PENDING: usize = 1_000_000;
/// The timeout of the deadline created and cancelled early in the timer benchmarks.
pub const TIMEOUT: Duration = Duration::from_millis(200);

/// A small deterministic PRNG (SplitMix64), so the benchmarks need no `rand`.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration uniform in `[lo, hi)` (nanosecond resolution).
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_nanos() as u64;
        lo + Duration::from_nanos(self.next_u64() % span.max(1))
    }
}

/// The timed bodies of the deadline (cutoff-timer vs tokio timer) benchmarks, shared by
/// `benches/timer.rs` and the `paired` cross-check.
pub mod timer_bodies {
    use std::future::Future;
    use std::hint::black_box;
    use std::pin::{Pin, pin};
    use std::task::{Context, Waker};
    use std::time::{Duration, Instant};

    use cutoff::CancelSource;
    use cutoff_timer::{Deadline, with_timeout};
    use tokio::runtime::Runtime;
    use tokio::time::Sleep;
    use tokio_util::sync::CancellationToken;

    use super::{SplitMix, TIMEOUT};

    /// Where the "other pending" deadlines go: uniform in `[60 s, 3600 s)`, so none fires
    /// during a run and they spread over the upper wheel levels of both timers.
    pub const PENDING_RANGE: (Duration, Duration) =
        (Duration::from_secs(60), Duration::from_secs(3600));

    /// A tokio current_thread runtime with only the time driver, in steady state: the driver
    /// has parked once with a timer registered, so its `next_wake` is set and a later insert
    /// does not unpark it (what a running application sees).
    pub fn tokio_rt() -> Runtime {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        rt
    }

    /// Let a runtime's driver park once with `pending` registered (steady state again).
    pub fn tokio_settle(rt: &Runtime) {
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }

    /// cutoff heap deadline: `with_timeout(parent, 200 ms)` + drop (cancelled early), `iters`
    /// times.
    pub fn cutoff_heap(parent: &CancelSource, iters: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(with_timeout(black_box(parent), TIMEOUT));
        }
        t.elapsed()
    }

    /// cutoff pinned deadline: `pin!(Deadline::after(parent, 200 ms)).link()` + drop, `iters`
    /// times.
    pub fn cutoff_pinned(parent: &CancelSource, iters: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..iters {
            let mut d = pin!(Deadline::after(black_box(parent), TIMEOUT));
            black_box(d.as_mut().link());
        }
        t.elapsed()
    }

    /// tokio-util `parent.child_token()` + `tokio::time::sleep(200 ms)` polled once (so it is
    /// registered in the wheel), both dropped, `iters` times, polled by hand under
    /// `rt.enter()` with a noop waker.
    pub fn tokio(rt: &Runtime, parent: &CancellationToken, iters: u64) -> Duration {
        let _g = rt.enter();
        let mut cx = Context::from_waker(Waker::noop());
        let t = Instant::now();
        for _ in 0..iters {
            let child = parent.child_token();
            let mut s = pin!(tokio::time::sleep(TIMEOUT));
            let pending = s.as_mut().poll(&mut cx).is_pending();
            black_box((&child, pending));
        }
        t.elapsed()
    }

    /// `n` pending heap deadlines on the global timer (from this thread), under their own root.
    pub fn cutoff_pending(n: usize) -> (CancelSource, Vec<CancelSource>) {
        let root = CancelSource::new();
        let mut rng = SplitMix(1);
        let v = (0..n)
            .map(|_| with_timeout(&root, rng.duration(PENDING_RANGE.0, PENDING_RANGE.1)))
            .collect();
        (root, v)
    }

    /// `n` registered tokio sleeps (boxed, polled once) on `rt`'s driver.
    pub fn tokio_pending(rt: &Runtime, n: usize) -> Vec<Pin<Box<Sleep>>> {
        let guard = rt.enter();
        let mut cx = Context::from_waker(Waker::noop());
        let mut rng = SplitMix(1);
        let v = (0..n)
            .map(|_| {
                let mut s = Box::pin(tokio::time::sleep(
                    rng.duration(PENDING_RANGE.0, PENDING_RANGE.1),
                ));
                assert!(s.as_mut().poll(&mut cx).is_pending());
                s
            })
            .collect();
        drop(guard);
        tokio_settle(rt);
        v
    }
}
