//! cutoff vs tokio-util `CancellationToken`, side by side, one criterion run.
//!
//! Every group holds the cutoff row(s), the tokio-util row and (where there is one) a physical
//! floor, all with the same settings. Function ids are `cutoff_*`, `tokio_util` and `floor_*`
//! so `src/bin/report.rs` can pair them. `CUTOFF_BENCH_QUICK=1` shrinks the measurement times.

use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main,
    measurement::WallTime,
};
use cutoff::{CancelSource, ChildNode, Node};
use cutoff_benches::{CHAIN, FANOUT, WAITERS, bodies, fast_group, quick, run_threads};
use tokio_util::sync::CancellationToken;

/// Settings for benchmarks whose untimed setup dwarfs the timed part (`iter_custom`).
fn heavy_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat);
    if quick() {
        g.warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(200))
            .sample_size(10)
            .nresamples(2_000);
    } else {
        g.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(1_000))
            .sample_size(20)
            .nresamples(20_000);
    }
    g
}

// ---- 1. is_cancelled -----------------------------------------------------------------------

fn is_cancelled(c: &mut Criterion) {
    let mut g = fast_group(c, "is_cancelled");

    let root = CancelSource::new();
    let child = root.child();
    let token = child.token();
    g.bench_function("cutoff_token", |b| {
        b.iter(|| black_box(&token).is_cancelled())
    });

    let mut pinned = pin!(ChildNode::new(&root));
    let node: &Node = pinned.as_mut().link();
    g.bench_function("cutoff_pinned", |b| {
        b.iter(|| black_box(node).is_cancelled())
    });

    let troot = CancellationToken::new();
    let tchild = troot.child_token();
    g.bench_function("tokio_util", |b| {
        b.iter(|| black_box(&tchild).is_cancelled())
    });

    let atomic = AtomicUsize::new(0);
    g.bench_function("floor_atomic_load", |b| {
        b.iter(|| black_box(&atomic).load(Ordering::Acquire))
    });
    g.finish();
}

// ---- 2. is_cancelled, 1 vs 2 threads on one token ------------------------------------------

fn is_cancelled_threads(c: &mut Criterion) {
    let mut g = fast_group(c, "is_cancelled_threads");

    let root = CancelSource::new();
    let child = root.child();
    let token = child.token();
    let troot = CancellationToken::new();
    let tchild = troot.child_token();
    let atomic = AtomicUsize::new(0);

    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new("cutoff_token", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |n| {
                    for _ in 0..n {
                        black_box(black_box(&token).is_cancelled());
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::new("tokio_util", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |n| {
                    for _ in 0..n {
                        black_box(black_box(&tchild).is_cancelled());
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::new("floor_atomic_load", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |n| {
                    for _ in 0..n {
                        black_box(black_box(&atomic).load(Ordering::Acquire));
                    }
                })
            })
        });
    }
    g.finish();
}

// ---- 3. child create + drop ----------------------------------------------------------------

fn child_create_drop(c: &mut Criterion) {
    let mut g = fast_group(c, "child_create_drop");

    let root = CancelSource::new();
    let parent = root.child();
    g.bench_function("cutoff_heap", |b| b.iter(|| black_box(parent.child())));

    g.bench_function("cutoff_pinned", |b| {
        b.iter(|| {
            let mut c = pin!(ChildNode::new(black_box(&parent)));
            black_box(c.as_mut().link());
        })
    });

    let troot = CancellationToken::new();
    let tparent = troot.child_token();
    g.bench_function("tokio_util", |b| {
        b.iter(|| black_box(tparent.child_token()))
    });

    g.bench_function("floor_box_64b", |b| {
        b.iter(|| black_box(Box::new(black_box([0u8; 64]))))
    });

    let a = AtomicUsize::new(0);
    g.bench_function("floor_two_cas", |b| {
        b.iter(|| {
            let a = black_box(&a);
            let _ = a.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
            let _ = a.compare_exchange(1, 0, Ordering::Release, Ordering::Relaxed);
        })
    });
    g.finish();
}

// ---- 4. child create + drop from 1 and 2 threads on one shared parent ----------------------

fn child_create_drop_threads(c: &mut Criterion) {
    let mut g = fast_group(c, "child_create_drop_threads");

    let root = CancelSource::new();
    let parent = root.child();
    let troot = CancellationToken::new();
    let tparent = troot.child_token();

    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new("cutoff_heap", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |n| {
                    for _ in 0..n {
                        black_box(parent.child());
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::new("cutoff_pinned", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |n| {
                    for _ in 0..n {
                        let mut c = pin!(ChildNode::new(black_box(&parent)));
                        black_box(c.as_mut().link());
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::new("tokio_util", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, |n| {
                    for _ in 0..n {
                        black_box(tparent.child_token());
                    }
                })
            })
        });
    }
    g.finish();
}

// ---- 5. cancel a parent with FANOUT live children (only the cancel is timed) ---------------

fn fanout_cancel(c: &mut Criterion) {
    let mut g = heavy_group(c, "fanout_cancel");
    g.bench_function(BenchmarkId::new("cutoff_heap", FANOUT), |b| {
        b.iter_custom(bodies::cutoff_fanout_heap)
    });
    // The children's boxes are setup: a pinned child allocates nothing itself.
    g.bench_function(BenchmarkId::new("cutoff_pinned", FANOUT), |b| {
        b.iter_custom(bodies::cutoff_fanout_pinned)
    });
    g.bench_function(BenchmarkId::new("tokio_util", FANOUT), |b| {
        b.iter_custom(bodies::tokio_fanout)
    });
    g.finish();
}

// ---- 6. cancel the root of a CHAIN-deep chain (only the cancel is timed) -------------------

fn chain_cancel(c: &mut Criterion) {
    let mut g = heavy_group(c, "chain_cancel");
    g.bench_function(BenchmarkId::new("cutoff_heap", CHAIN), |b| {
        b.iter_custom(bodies::cutoff_chain)
    });
    g.bench_function(BenchmarkId::new("tokio_util", CHAIN), |b| {
        b.iter_custom(bodies::tokio_chain)
    });
    g.finish();
}

// ---- 7. cancel waking WAITERS futures on one node (only the cancel is timed) ---------------

fn wake(c: &mut Criterion) {
    let mut g = heavy_group(c, "wake");
    // Futures are boxed and polled once with a counting `Arc` waker in setup.
    g.bench_function(BenchmarkId::new("cutoff_token", WAITERS), |b| {
        b.iter_custom(bodies::cutoff_wake)
    });
    g.bench_function(BenchmarkId::new("tokio_util", WAITERS), |b| {
        b.iter_custom(bodies::tokio_wake)
    });
    // Floor: the wakers alone (clone in setup, `wake()` timed), what any design must pay.
    g.bench_function(BenchmarkId::new("floor_waker_wake", WAITERS), |b| {
        b.iter_custom(bodies::floor_wake)
    });
    g.finish();
}

criterion_group!(
    benches,
    is_cancelled,
    is_cancelled_threads,
    child_create_drop,
    child_create_drop_threads,
    fanout_cancel,
    chain_cancel,
    wake
);
criterion_main!(benches);
