//! Paired cross-check of the criterion ratios, for a noisy shared machine.
//!
//! criterion measures the cutoff row and the tokio-util row one after the other, seconds
//! apart; when other tenants' load changes in between, the ratio moves. Here each pair is
//! measured in alternating short batches (cutoff, tokio-util, tokio-util, cutoff, ...); each
//! round runs three batches per side, keeps the fastest of each side (dropping batches in
//! which another tenant preempted us) and gives one ratio; the median ratio over the rounds is
//! reported with its interquartile range. Slow load drift cancels out of every round.
//!
//! Usage: `paired [--out FILE] [--rounds N]`; `FILE` gets `key ratio lo hi` lines for `report`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cutoff::{CancelSource, ChildNode, Node};
use cutoff_benches::timer_bodies as tb;
use cutoff_benches::{bodies, run_threads};
use tokio_util::sync::CancellationToken;

/// Iterations that take about `target` for `f`.
fn calibrate(f: &mut dyn FnMut(u64) -> Duration, target: Duration) -> u64 {
    let mut iters = 1u64;
    loop {
        let t = f(iters);
        if t >= target / 4 || iters >= 1 << 40 {
            let per = t.as_secs_f64() / iters as f64;
            return ((target.as_secs_f64() / per.max(1e-12)) as u64).max(1);
        }
        iters *= 4;
    }
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.25), q(0.75))
}

/// Sub-batches per side and round; the fastest of each side is kept, which drops the
/// sub-batches in which another tenant preempted us.
const SUB: usize = 3;

fn pair(
    rounds: usize,
    batch: Duration,
    a: &mut dyn FnMut(u64) -> Duration,
    b: &mut dyn FnMut(u64) -> Duration,
) -> (f64, f64, f64) {
    let ia = calibrate(a, batch / SUB as u32);
    let ib = calibrate(b, batch / SUB as u32);
    let mut ratios = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let (mut ma, mut mb) = (f64::MAX, f64::MAX);
        for j in 0..SUB {
            let (ta, tb) = if (r + j) % 2 == 0 {
                let ta = a(ia);
                (ta, b(ib))
            } else {
                let tb = b(ib);
                (a(ia), tb)
            };
            ma = ma.min(ta.as_secs_f64() / ia as f64);
            mb = mb.min(tb.as_secs_f64() / ib as f64);
        }
        ratios.push(ma / mb);
    }
    quartiles(ratios)
}

fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed()
}

fn main() {
    let mut out = None;
    let mut rounds = 15usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next(),
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds N")
            }
            _ => panic!("usage: paired [--out FILE] [--rounds N]"),
        }
    }
    let fast = Duration::from_millis(5);
    let mut rows: Vec<(&str, (f64, f64, f64))> = Vec::new();

    let root = CancelSource::new();
    let child = root.child();
    let token = child.token();
    let mut pinned = pin!(ChildNode::new(&root));
    let node: &Node = pinned.as_mut().link();
    let troot = CancellationToken::new();
    let tchild = troot.child_token();
    let atomic = AtomicUsize::new(0);

    let mut tok = |n| timed(n, || _ = black_box(black_box(&tchild).is_cancelled()));
    rows.push((
        "is_cancelled/cutoff_token",
        pair(
            rounds,
            fast,
            &mut |n| timed(n, || _ = black_box(black_box(&token).is_cancelled())),
            &mut tok,
        ),
    ));
    rows.push((
        "is_cancelled/cutoff_pinned",
        pair(
            rounds,
            fast,
            &mut |n| timed(n, || _ = black_box(black_box(node).is_cancelled())),
            &mut tok,
        ),
    ));
    rows.push((
        "is_cancelled/cutoff_token:floor",
        pair(
            rounds,
            fast,
            &mut |n| timed(n, || _ = black_box(black_box(&token).is_cancelled())),
            &mut |n| {
                timed(n, || {
                    _ = black_box(black_box(&atomic).load(Ordering::Acquire))
                })
            },
        ),
    ));

    let parent = root.child();
    let tparent = troot.child_token();
    rows.push((
        "child_create_drop/cutoff_heap",
        pair(
            rounds,
            fast,
            &mut |n| bodies::cutoff_child_heap(&parent, n),
            &mut |n| bodies::tokio_child(&tparent, n),
        ),
    ));
    rows.push((
        "child_create_drop/cutoff_pinned",
        pair(
            rounds,
            fast,
            &mut |n| bodies::cutoff_child_pinned(&parent, n),
            &mut |n| bodies::tokio_child(&tparent, n),
        ),
    ));
    rows.push((
        "child_create_drop/cutoff_pinned:floor",
        pair(
            rounds,
            fast,
            &mut |n| bodies::cutoff_child_pinned(&parent, n),
            &mut |n| {
                timed(n, || {
                    let a = black_box(&atomic);
                    let _ = a.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
                    let _ = a.compare_exchange(1, 0, Ordering::Release, Ordering::Relaxed);
                })
            },
        ),
    ));

    // One cancel per batch: these take milliseconds each.
    let one = Duration::ZERO;
    let f = cutoff_benches::FANOUT;
    let key_h = format!("fanout_cancel/cutoff_heap/{f}");
    let key_p = format!("fanout_cancel/cutoff_pinned/{f}");
    let key_c = format!("chain_cancel/cutoff_heap/{}", cutoff_benches::CHAIN);
    let key_w = format!("wake/cutoff_token/{}", cutoff_benches::WAITERS);
    rows.push((
        &key_h,
        pair(
            rounds,
            one,
            &mut bodies::cutoff_fanout_heap,
            &mut bodies::tokio_fanout,
        ),
    ));
    rows.push((
        &key_p,
        pair(
            rounds,
            one,
            &mut bodies::cutoff_fanout_pinned,
            &mut bodies::tokio_fanout,
        ),
    ));
    rows.push((
        &key_c,
        pair(
            rounds,
            one,
            &mut bodies::cutoff_chain,
            &mut bodies::tokio_chain,
        ),
    ));
    let wake_batch = Duration::from_millis(1);
    rows.push((
        &key_w,
        pair(
            rounds,
            wake_batch,
            &mut bodies::cutoff_wake,
            &mut bodies::tokio_wake,
        ),
    ));

    // 2-thread rows. Stored as throughput multiples (higher is better), like the report's.
    let threads_batch = Duration::from_millis(15);
    let inv = |(m, lo, hi): (f64, f64, f64), k: f64| (k / m, k / hi, k / lo);
    let heap2 = pair(
        rounds,
        threads_batch,
        &mut |n| run_threads(2, n, |n| _ = bodies::cutoff_child_heap(&parent, n)),
        &mut |n| run_threads(2, n, |n| _ = bodies::tokio_child(&tparent, n)),
    );
    rows.push(("child_create_drop_threads/cutoff_heap/2", inv(heap2, 1.0)));
    let pinned2 = pair(
        rounds,
        threads_batch,
        &mut |n| run_threads(2, n, |n| _ = bodies::cutoff_child_pinned(&parent, n)),
        &mut |n| run_threads(2, n, |n| _ = bodies::tokio_child(&tparent, n)),
    );
    rows.push((
        "child_create_drop_threads/cutoff_pinned/2",
        inv(pinned2, 1.0),
    ));
    let poll = |n: u64| {
        for _ in 0..n {
            black_box(black_box(&token).is_cancelled());
        }
    };
    let load = |n: u64| {
        for _ in 0..n {
            black_box(black_box(&atomic).load(Ordering::Acquire));
        }
    };
    // time(2 threads) / time(1 thread) per op; scaling = 2 / that.
    let sc = pair(
        rounds,
        threads_batch,
        &mut |n| run_threads(2, n, poll),
        &mut |n| run_threads(1, n, poll),
    );
    rows.push(("is_cancelled_threads/cutoff_token/scaling", inv(sc, 2.0)));
    let sf = pair(
        rounds,
        threads_batch,
        &mut |n| run_threads(2, n, load),
        &mut |n| run_threads(1, n, load),
    );
    rows.push((
        "is_cancelled_threads/floor_atomic_load/scaling",
        inv(sf, 2.0),
    ));

    // Deadlines (cutoff-timer vs tokio child token + registered sleep).
    let rt = tb::tokio_rt();
    let dparent = root.child();
    let dtparent = troot.child_token();
    rows.push((
        "deadline_create_cancel/cutoff_heap/0",
        pair(
            rounds,
            fast,
            &mut |n| tb::cutoff_heap(&dparent, n),
            &mut |n| tb::tokio(&rt, &dtparent, n),
        ),
    ));
    rows.push((
        "deadline_create_cancel/cutoff_pinned/0",
        pair(
            rounds,
            fast,
            &mut |n| tb::cutoff_pinned(&dparent, n),
            &mut |n| tb::tokio(&rt, &dtparent, n),
        ),
    ));
    // Heap deadlines, 2 threads (one parent each) vs 1 thread: scaling = 2 / time ratio.
    let sd = pair(
        rounds,
        threads_batch,
        &mut |n| run_threads(2, n, |n| _ = tb::cutoff_heap(&root.child(), n)),
        &mut |n| run_threads(1, n, |n| _ = tb::cutoff_heap(&root.child(), n)),
    );
    rows.push(("deadline_threads/cutoff_heap/scaling", inv(sd, 2.0)));

    let mut file = String::new();
    println!(
        "{:<42} {:>8} {:>17}",
        "paired (time ratio; threads: multiple)", "median", "IQR"
    );
    for (k, (m, lo, hi)) in &rows {
        println!("{k:<42} {m:>7.3}x  [{lo:.3}x - {hi:.3}x]");
        let _ = writeln!(file, "{k} {m} {lo} {hi}");
    }
    if let Some(path) = out {
        std::fs::write(&path, file).expect("write --out file");
    }
}
