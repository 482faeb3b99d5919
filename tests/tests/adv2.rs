//! ADV-2 (adversarial review): a deadline created on a thread after that thread's timer-shard
//! cache was destroyed (in a later thread-local destructor) can be inserted into a shard that
//! the driver has already recycled into the pool: it is in no timer's shard list, so it never
//! fires (and the next thread that takes the shard from the pool resets its wheel under it).
//!
//! timer.rs `Inner::local_shard`: the one-entry cache `LAST` (a const thread-local with no
//! destructor, so still readable during thread exit) is consulted first and never checked
//! against `orphan`; `Cache::drop` (the `ALL` thread-local) marks the shard orphaned; the
//! driver's `recycle_orphans` gives an orphaned shard that is empty *at that moment* back to
//! `POOL` and removes it from the timer's `shards`. A later insert through `LAST` lands there.
//!
//! Regression test (the defect is fixed; see docs/DESIGN.md section 11). Run:
//!   cargo test -p cutoff-tests --release --test adv2

use std::cell::RefCell;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cutoff::{Parent, Reason};

struct LateDeadline(Option<mpsc::Sender<Option<Reason>>>);

impl Drop for LateDeadline {
    fn drop(&mut self) {
        // Runs after the timer's own thread-local cache was destroyed (registered later, so
        // destroyed earlier). Give the driver time to recycle this thread's empty shard.
        std::thread::sleep(Duration::from_millis(300));
        let d = cutoff_timer::with_timeout(Parent::Root, Duration::from_millis(10));
        let start = Instant::now();
        while !d.is_cancelled() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.0.take().unwrap().send(d.reason());
    }
}

std::thread_local! {
    static LATE: RefCell<Option<LateDeadline>> = const { RefCell::new(None) };
}

#[test]
fn a_deadline_created_in_a_thread_local_destructor_still_fires() {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        // First access registers LATE's destructor before the timer's cache's destructor, so
        // (destructors run in reverse order of registration) LATE's runs after it.
        LATE.with(|l| *l.borrow_mut() = Some(LateDeadline(Some(tx))));
        // Use the global timer on this thread once: makes and caches this thread's shard.
        drop(cutoff_timer::with_timeout(
            Parent::Root,
            Duration::from_secs(60),
        ));
    });
    // Keep the driver waking up (every few ms) while the thread exits, so it looks for
    // orphaned shards in that window.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        let d = cutoff_timer::with_timeout(Parent::Root, Duration::from_millis(3));
        assert_eq!(d.wait(), Reason::DeadlineExceeded);
    }
    t.join().unwrap();
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the thread-local destructor reported nothing");
    assert_eq!(
        r,
        Some(Reason::DeadlineExceeded),
        "a 10 ms deadline made in a thread-local destructor did not fire within 3 s"
    );
}

// ---- variant: the recycled shard is picked up by another timer, which fires it early -----

use std::sync::Arc;

use cutoff::CancelSource;
use cutoff_timer::Timer;
use cutoff_timer::clock::ManualClock;

struct LateDeadline2(Option<mpsc::Sender<CancelSource>>);

impl Drop for LateDeadline2 {
    fn drop(&mut self) {
        // Wait until the driver recycled this thread's shard and another timer took it.
        std::thread::sleep(Duration::from_millis(700));
        // A 60 s deadline on the *global* timer, made through the stale one-entry cache.
        let d = cutoff_timer::with_timeout(Parent::Root, Duration::from_secs(60));
        let _ = self.0.take().unwrap().send(d);
    }
}

std::thread_local! {
    static LATE2: RefCell<Option<LateDeadline2>> = const { RefCell::new(None) };
}

#[test]
fn a_global_deadline_never_fires_early_through_another_timers_shard() {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        LATE2.with(|l| *l.borrow_mut() = Some(LateDeadline2(Some(tx))));
        drop(cutoff_timer::with_timeout(
            Parent::Root,
            Duration::from_secs(60),
        ));
    });
    // Let the global driver recycle the exiting thread's (empty, orphaned) shard.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        let d = cutoff_timer::with_timeout(Parent::Root, Duration::from_millis(3));
        assert_eq!(d.wait(), Reason::DeadlineExceeded);
    }
    // A manual timer takes a shard from the pool (on a fresh thread: it has no shard yet).
    let clock = Arc::new(ManualClock::new());
    let manual = Arc::new(Timer::manual(clock.clone()));
    let m = manual.clone();
    std::thread::spawn(move || {
        drop(m.deadline_source(Parent::Root, m.now() + Duration::from_secs(3600)));
    })
    .join()
    .unwrap();
    t.join().unwrap();
    let d = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no deadline from the destructor");
    // Turning the *manual* timer far ahead must not touch a deadline of the global timer.
    clock.advance(Duration::from_secs(3600));
    manual.turn();
    assert!(
        !d.is_cancelled(),
        "a 60 s deadline of the global timer fired at once ({:?}): it sits in a shard of \
         another (manual) timer",
        d.reason()
    );
}
