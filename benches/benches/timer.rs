//! Deadlines: cutoff-timer vs tokio's timer (plus a tokio-util child token), side by side in
//! one criterion run.
//!
//! * `deadline_create_cancel/<id>/<pending>`: create a deadline 200 ms out under a live
//!   parent and drop it (cancelled early). `cutoff_heap` = `with_timeout(&parent, 200ms)`,
//!   `cutoff_pinned` = `pin!(Deadline::after(&parent, 200ms)).link()`, `tokio` =
//!   `parent.child_token()` + `tokio::time::sleep(200ms)` polled once (registered), both
//!   dropped. `pending` other deadlines (60 s - 1 h out) are kept alive meanwhile: 0 always,
//!   1,000,000 in the full run only.
//! * `deadline_threads/<id>/<threads>` (full run only): the same from 1 and 2 threads;
//!   `cutoff_heap` with one parent per thread, `cutoff_heap_shared` with one parent for both,
//!   `cutoff_pinned` per thread, `tokio` per thread on one runtime's driver.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use cutoff::CancelSource;
use cutoff_benches::timer_bodies as tb;
use cutoff_benches::{PENDING, fast_group, quick, run_threads};
use tokio_util::sync::CancellationToken;

fn create_cancel(c: &mut Criterion) {
    let mut g = fast_group(c, "deadline_create_cancel");
    let root = CancelSource::new();
    let parent = root.child();
    let troot = CancellationToken::new();
    let tparent = troot.child_token();
    let rt = tb::tokio_rt();
    let counts: &[usize] = if quick() { &[0] } else { &[0, PENDING] };
    for &n in counts {
        {
            let pending = tb::cutoff_pending(n);
            g.bench_function(BenchmarkId::new("cutoff_heap", n), |b| {
                b.iter_custom(|iters| tb::cutoff_heap(&parent, iters))
            });
            g.bench_function(BenchmarkId::new("cutoff_pinned", n), |b| {
                b.iter_custom(|iters| tb::cutoff_pinned(&parent, iters))
            });
            assert!(pending.1.iter().all(|d| !d.is_cancelled()));
        }
        {
            let pending = tb::tokio_pending(&rt, n);
            g.bench_function(BenchmarkId::new("tokio", n), |b| {
                b.iter_custom(|iters| tb::tokio(&rt, &tparent, iters))
            });
            drop(pending);
        }
    }
    g.finish();
}

fn threads(c: &mut Criterion) {
    if quick() {
        return;
    }
    let mut g = fast_group(c, "deadline_threads");
    let root = CancelSource::new();
    let shared = root.child();
    let rt = tb::tokio_rt();
    for t in [1usize, 2] {
        g.bench_function(BenchmarkId::new("cutoff_heap", t), |b| {
            b.iter_custom(|iters| {
                run_threads(t, iters, |n| {
                    let parent = root.child();
                    tb::cutoff_heap(&parent, n);
                })
            })
        });
        g.bench_function(BenchmarkId::new("cutoff_heap_shared", t), |b| {
            b.iter_custom(|iters| {
                run_threads(t, iters, |n| {
                    tb::cutoff_heap(&shared, n);
                })
            })
        });
        g.bench_function(BenchmarkId::new("cutoff_pinned", t), |b| {
            b.iter_custom(|iters| {
                run_threads(t, iters, |n| {
                    let parent = root.child();
                    tb::cutoff_pinned(&parent, n);
                })
            })
        });
        g.bench_function(BenchmarkId::new("tokio", t), |b| {
            b.iter_custom(|iters| {
                run_threads(t, iters, |n| {
                    let parent = CancellationToken::new();
                    tb::tokio(&rt, &parent, n);
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, create_cancel, threads);
criterion_main!(benches);
