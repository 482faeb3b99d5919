//! How late do timeouts fire? 1,000 concurrent timeouts of 1-50 ms (uniform), with 0 and with
//! 100,000 other deadlines pending (60 s - 1 h out), for cutoff-timer and for tokio.
//!
//! * cutoff-timer: `with_deadline(&root, at)` heap nodes on the global timer, each with an
//!   `on_cancel` callback that records `Instant::now()`; lateness = that instant - `at`.
//! * tokio: 1,000 tasks on a current_thread runtime (time driver only), each
//!   `sleep_until(at).await` then records `Instant::now()`; lateness = that instant - `at`.
//!   The 100k others are registered sleeps (boxed, polled once).
//!
//! Reports, per run: how many fired early (must be 0), p50, p90, p99 and max lateness in ms.
//! Usage: `lateness [--out FILE] [--runs N]`; `FILE` gets `lateness.<impl>.<pending>.<run>
//! early p50 p90 p99 max load1` lines for `report`.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use cutoff::CancelSource;
use cutoff_benches::SplitMix;
use cutoff_benches::timer_bodies::{PENDING_RANGE, cutoff_pending};

const N: usize = 1_000;
const OTHERS: usize = 100_000;
const LO: Duration = Duration::from_millis(1);
const HI: Duration = Duration::from_millis(50);

struct Stats {
    early: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Lateness in ns (negative = early) -> stats in ms.
fn stats(mut late: Vec<i64>) -> Stats {
    late.sort_unstable();
    let early = late.iter().filter(|&&l| l < 0).count();
    let q = |p: f64| late[((late.len() - 1) as f64 * p).round() as usize] as f64 / 1e6;
    Stats {
        early,
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max: *late.last().expect("non-empty") as f64 / 1e6,
    }
}

fn deadlines(seed: u64, base: Instant) -> Vec<Instant> {
    let mut rng = SplitMix(seed);
    (0..N).map(|_| base + rng.duration(LO, HI)).collect()
}

fn cutoff_run(seed: u64, others: usize) -> Stats {
    let pending = cutoff_pending(others);
    let root = CancelSource::new();
    let origin = Instant::now();
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let ats = deadlines(seed, Instant::now());
    let mut nodes = Vec::with_capacity(N);
    let mut regs = Vec::with_capacity(N);
    for (i, &at) in ats.iter().enumerate() {
        let d = cutoff_timer::with_deadline(&root, at);
        let seen = Arc::clone(&seen);
        regs.push(d.on_cancel(move |_| {
            seen[i].store((Instant::now() - origin).as_nanos() as u64, Relaxed);
        }));
        nodes.push(d);
    }
    for d in &nodes {
        d.wait();
    }
    // `wait()` may return before the driver thread has run every callback: spin until each
    // one has recorded its instant.
    while seen.iter().any(|s| s.load(Relaxed) == 0) {
        std::thread::yield_now();
    }
    let late = ats
        .iter()
        .zip(seen.iter())
        .map(|(&at, s)| s.load(Relaxed) as i64 - (at - origin).as_nanos() as i64)
        .collect();
    drop(regs);
    drop(pending);
    stats(late)
}

fn tokio_run(seed: u64, others: usize) -> Stats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let mut rng = SplitMix(1);
        let mut cx = Context::from_waker(Waker::noop());
        let mut pending = Vec::with_capacity(others);
        for _ in 0..others {
            let mut s = Box::pin(tokio::time::sleep(
                rng.duration(PENDING_RANGE.0, PENDING_RANGE.1),
            ));
            assert!(s.as_mut().poll(&mut cx).is_pending());
            pending.push(s);
        }
        let ats = deadlines(seed, Instant::now());
        let tasks: Vec<_> = ats
            .iter()
            .map(|&at| {
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    Instant::now()
                })
            })
            .collect();
        let mut late = Vec::with_capacity(N);
        for (t, &at) in tasks.into_iter().zip(&ats) {
            let seen = t.await.expect("task");
            late.push(match seen.checked_duration_since(at) {
                Some(d) => d.as_nanos() as i64,
                None => -((at - seen).as_nanos() as i64),
            });
        }
        drop(pending);
        stats(late)
    })
}

fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let mut out = None;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next(),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => panic!("usage: lateness [--out FILE] [--runs N]"),
        }
    }
    // Start the global timer's driver before the first measured run.
    drop(cutoff_timer::with_timeout(
        &CancelSource::new(),
        Duration::from_secs(1),
    ));
    let mut file = String::new();
    println!(
        "{N} timeouts of {}-{} ms; lateness in ms (never early: early count must be 0)",
        LO.as_millis(),
        HI.as_millis()
    );
    println!(
        "{:<8} {:>8} {:>4} {:>6} {:>8} {:>8} {:>8} {:>8}  load1",
        "impl", "pending", "run", "early", "p50", "p90", "p99", "max"
    );
    for run in 1..=runs {
        for others in [0, OTHERS] {
            for imp in ["cutoff", "tokio"] {
                let load = load1();
                let seed = run as u64 * 7 + others as u64;
                let s = if imp == "cutoff" {
                    cutoff_run(seed, others)
                } else {
                    tokio_run(seed, others)
                };
                println!(
                    "{imp:<8} {others:>8} {run:>4} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.3}  {load}",
                    s.early, s.p50, s.p90, s.p99, s.max
                );
                let _ = writeln!(
                    file,
                    "lateness.{imp}.{others}.{run} {} {} {} {} {} {load}",
                    s.early, s.p50, s.p90, s.p99, s.max
                );
            }
        }
    }
    if let Some(path) = out {
        std::fs::write(&path, file).expect("write --out file");
    }
}
