//! The seed's five scenarios, done right (looping over every iteration), in Rust: spawn work
//! that computes `a * a` and sends it over a oneshot channel, and race it against a timeout.
//! The Go side is `benches/go/bench_test.go` (`BenchmarkResultFirst*`, `BenchmarkTimeoutFirst*`),
//! run by `benches/go.sh`.
//!
//! * `seed_result_first/<id>`: the result arrives long before a 200 ms deadline.
//! * `seed_timeout_first/<id>`: the work sleeps 5 ms (`tokio::time::sleep`) before it sends;
//!   the deadline is 1 ms, so the timeout wins (the same short settings as the Go side, so the
//!   run stays quick). An iteration is dominated by waiting for the timer: ~1-2 ms. (The
//!   margin is wide because timers fire on millisecond ticks, late on a loaded machine: with a
//!   2 ms sleep both could fire in one driver turn and the result, polled first, would win.)
//!
//! One iteration = one whole race: create the timeout, spawn the work, wait for whichever
//! comes first, clean up. Function ids:
//!
//! * `cutoff_deadline`: `cutoff_timer::with_timeout(&parent, d)` under a live root
//!   `CancelSource` (the parent), raced with `select!` against `ctx.cancelled()`, then dropped
//!   (drop unlinks it and takes its timer entry out: Go's `defer cancel()`). Go:
//!   `context.WithTimeout` + `<-ctx.Done()`.
//! * `tokio_timeout`: `tokio::time::timeout(d, rx)`.
//! * `tokio_sleep`: a plain timer, `select!` against `tokio::time::sleep(d)`. Go: `time.After`
//!   / `time.NewTimer` + `Stop` (both plain timers).
//! * `cutoff_timeout` (extra): `cutoff_timer::timeout(d, rx)`, cutoff's `tokio::time::timeout`.
//! * `tokio_util_child_sleep` (extra): what a context is in tokio terms, a tokio-util
//!   `parent.child_token()` plus `tokio::time::sleep(d)`, both raced with the result.
//!
//! The runtime mirrors Go's scheduler as closely as tokio allows: a multi-thread runtime with
//! 2 workers (`go.sh` runs the Go side with GOMAXPROCS 2), and the benchmark loop itself runs
//! as a task on it, as a Go benchmark runs in a goroutine. A task spawned from a worker goes
//! to that worker's LIFO slot, and the oneshot send wakes the loop task into it again, just
//! as `go f()` puts the new goroutine in its P's `runnext` and the channel send readies the
//! benchmark goroutine: the ping-pong normally stays on one worker thread, with the second
//! worker free to steal, like the second P. (A current_thread runtime would forbid the
//! stealing Go does; `std::thread::spawn` per iteration would measure thread creation, which
//! a goroutine is not.) cutoff's deadlines fire on cutoff-timer's own driver thread; tokio's
//! on its time driver, run by a parked worker.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, criterion_group, criterion_main};
use cutoff::{CancelSource, CancelToken};
use cutoff_benches::{fast_group, quick};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The seed's result-first deadline (never reached).
const RESULT_FIRST_DEADLINE: Duration = Duration::from_millis(200);
/// Timeout-first: the deadline, and how long the work sleeps before sending (past it).
const TIMEOUT_FIRST_DEADLINE: Duration = Duration::from_millis(1);
const TIMEOUT_FIRST_WORK: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug)]
enum Kind {
    CutoffDeadline,
    CutoffTimeout,
    TokioTimeout,
    TokioSleep,
    TokioUtilChildSleep,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::CutoffDeadline, "cutoff_deadline"),
    (Kind::TokioTimeout, "tokio_timeout"),
    (Kind::TokioSleep, "tokio_sleep"),
    (Kind::CutoffTimeout, "cutoff_timeout"),
    (Kind::TokioUtilChildSleep, "tokio_util_child_sleep"),
];

#[derive(Clone, Copy, Debug)]
struct Scenario {
    deadline: Duration,
    /// How long the work sleeps before it sends (zero: it sends at once).
    work: Duration,
}

const RESULT_FIRST: Scenario = Scenario {
    deadline: RESULT_FIRST_DEADLINE,
    work: Duration::ZERO,
};
const TIMEOUT_FIRST: Scenario = Scenario {
    deadline: TIMEOUT_FIRST_DEADLINE,
    work: TIMEOUT_FIRST_WORK,
};

/// The live parents the contexts hang under (each library's own kind).
#[derive(Clone)]
struct Parents {
    cutoff: CancelToken,
    tokio_util: CancellationToken,
}

/// Spawn the work: compute `a * a` (after sleeping `sleep`, if any) and send it.
fn spawn_work(a: u64, sleep: Duration) -> oneshot::Receiver<u64> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        if !sleep.is_zero() {
            tokio::time::sleep(sleep).await;
        }
        let a = black_box(a);
        // The receiver is gone when the timeout won: the result is dropped, as in Go.
        let _ = tx.send(a.wrapping_mul(a));
    });
    rx
}

/// One race; `Some(result)` if the work won, `None` if the timeout did.
async fn race(kind: Kind, p: &Parents, a: u64, s: Scenario) -> Option<u64> {
    match kind {
        Kind::CutoffDeadline => {
            let ctx = cutoff_timer::with_timeout(&p.cutoff, s.deadline);
            let rx = spawn_work(a, s.work);
            tokio::select! {
                biased;
                r = rx => r.ok(),
                _ = ctx.cancelled() => None,
            }
            // `ctx` is dropped here: unlinked from the parent, timer entry removed.
        }
        Kind::CutoffTimeout => {
            let rx = spawn_work(a, s.work);
            cutoff_timer::timeout(s.deadline, rx)
                .await
                .ok()
                .and_then(Result::ok)
        }
        Kind::TokioTimeout => {
            let rx = spawn_work(a, s.work);
            tokio::time::timeout(s.deadline, rx)
                .await
                .ok()
                .and_then(Result::ok)
        }
        Kind::TokioSleep => {
            let timer = tokio::time::sleep(s.deadline);
            let rx = spawn_work(a, s.work);
            tokio::select! {
                biased;
                r = rx => r.ok(),
                _ = timer => None,
            }
        }
        Kind::TokioUtilChildSleep => {
            let ctx = p.tokio_util.child_token();
            let timer = tokio::time::sleep(s.deadline);
            let rx = spawn_work(a, s.work);
            tokio::select! {
                biased;
                r = rx => r.ok(),
                _ = ctx.cancelled() => None,
                _ = timer => None,
            }
        }
    }
}

/// Run `iters` races as one task on `rt` (as a Go benchmark loop runs in a goroutine) and
/// return the time they took. Panics if most races were won by the wrong side (a result-first
/// run where the 200 ms timers fired, or a timeout-first run where the work beat the
/// deadline, would be measuring something else; stragglers are tolerated, since a loaded
/// machine can run a timer late). The same check as the Go side's `checkOutcome`.
fn run(rt: &Runtime, kind: Kind, parents: &Parents, s: Scenario, iters: u64) -> Duration {
    let p = parents.clone();
    let (elapsed, won) = rt.block_on(async move {
        tokio::spawn(async move {
            let mut won = 0u64;
            let start = Instant::now();
            for a in 0..iters {
                if let Some(r) = race(kind, &p, a, s).await {
                    black_box(r);
                    won += 1;
                }
            }
            (start.elapsed(), won)
        })
        .await
        .expect("benchmark task panicked")
    });
    let lost = if s.work.is_zero() { iters - won } else { won };
    assert!(
        lost * 2 <= iters,
        "{kind:?}: {lost} of {iters} races won by the wrong side ({s:?})"
    );
    elapsed
}

fn runtime() -> Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
    rt
}

fn group<'a>(c: &'a mut Criterion, name: &str, s: Scenario) -> BenchmarkGroup<'a, WallTime> {
    if s.work.is_zero() {
        // Result-first: a few microseconds per race, the per-op settings of the other groups.
        fast_group(c, name)
    } else {
        let mut g = c.benchmark_group(name);
        // Timeout-first: ~1-2 ms per race, so flat sampling and a longer window.
        g.sampling_mode(SamplingMode::Flat);
        if quick() {
            g.warm_up_time(Duration::from_millis(100))
                .measurement_time(Duration::from_millis(1_000))
                .sample_size(10)
                .nresamples(2_000);
        } else {
            g.warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_millis(4_000))
                .sample_size(20)
                .nresamples(20_000);
        }
        g
    }
}

fn scenario(c: &mut Criterion, name: &str, s: Scenario) {
    let rt = runtime();
    let root = CancelSource::new();
    let troot = CancellationToken::new();
    let parents = Parents {
        cutoff: root.token(),
        tokio_util: troot.clone(),
    };
    let mut g = group(c, name, s);
    for (kind, id) in KINDS {
        g.bench_function(id, |b| {
            b.iter_custom(|iters| run(&rt, kind, &parents, s, iters))
        });
    }
    g.finish();
    assert!(!root.is_cancelled() && !troot.is_cancelled());
}

fn result_first(c: &mut Criterion) {
    scenario(c, "seed_result_first", RESULT_FIRST);
}

fn timeout_first(c: &mut Criterion) {
    scenario(c, "seed_timeout_first", TIMEOUT_FIRST);
}

criterion_group!(benches, result_first, timeout_first);
criterion_main!(benches);
