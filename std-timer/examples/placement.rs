//! The measurement behind the placement choice in docs/DESIGN.md ("Deadlines"): where should a
//! new deadline's wheel entry go so that "create, then drop early" stays cheap when several
//! threads do it at once?
//!
//! * `global`: one wheel behind one mutex for all threads (tokio's default timer);
//! * `shard`: one wheel per thread, each behind its own (uncontended) mutex (what we do).
//!
//! Each thread inserts an entry and removes it again, in a loop. Also printed: the cost of a
//! clock read (`Instant::now`), which `with_timeout` pays once.
//!
//! Run: `cargo run --release -p cutoff-timer --example placement`
#![allow(clippy::std_instead_of_core, missing_docs)]

use core::pin::pin;
use core::ptr::NonNull;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use cutoff_timer::wheel::{Entry, Wheel};

const OPS: u64 = 2_000_000;

fn churn(wheel: &Mutex<Wheel>, base: u64) {
    let entry = pin!(Entry::new(0));
    for i in 0..OPS {
        entry.set_deadline(base + 200_000_000 + (i % 1000) * 1_000);
        let mut w = wheel.lock().unwrap();
        // SAFETY: the pinned entry is removed again before the next iteration and before it
        // goes out of scope.
        unsafe {
            w.insert(NonNull::from(&*entry)).unwrap();
            w.remove(NonNull::from(&*entry));
        }
    }
}

fn run(threads: usize, shared: bool) -> f64 {
    let global = Arc::new(Mutex::new(Wheel::new()));
    let barrier = Arc::new(Barrier::new(threads));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (global, barrier) = (global.clone(), barrier.clone());
            std::thread::spawn(move || {
                let own = Mutex::new(Wheel::new());
                barrier.wait();
                churn(if shared { &global } else { &own }, 0);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed().as_nanos() as f64 / OPS as f64
}

fn main() {
    let t0 = Instant::now();
    let mut x = t0;
    for _ in 0..OPS {
        x = black_box(Instant::now());
    }
    let clock = t0.elapsed().as_nanos() as f64 / OPS as f64;
    black_box(x);
    println!("Instant::now(): {clock:.1} ns");
    for _ in 0..2 {
        let one = run(1, false);
        let global2 = run(2, true);
        let shard2 = run(2, false);
        println!(
            "insert+remove, wall ns per op per thread: 1 thread {one:.1}; 2 threads, global lock {global2:.1} ({:.2}x throughput of 1 thread); 2 threads, per-thread shards {shard2:.1} ({:.2}x)",
            2.0 * one / global2,
            2.0 * one / shard2
        );
    }
}
