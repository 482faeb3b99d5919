//! REVIEW2-1: dropping a threaded `Timer` from a callback that its own driver thread runs.
//!
//! Fixed: `Timer::drop` does not join the driver from the driver's own thread (it still
//! drains). Regression test.
//!
//! The last owner of a `Timer` may well be a callback closure (it captured the timer, e.g.
//! a request context that owns its own timer and is torn down when its deadline fires). The
//! closure is consumed on the timer's driver thread, so `Timer::drop` runs *there*:
//! `t.join()` joins the current thread, which std refuses with a panic
//! ("failed to join thread: Resource deadlock avoided"). The panic is swallowed by
//! `Fired::fire`'s `catch_unwind`, `drain_all` never runs, and every deadline still pending
//! on the timer is never cancelled, contradicting the documented guarantee: "Dropping a
//! `Timer` stops its driver and cancels every deadline still pending on it with
//! `Reason::ParentGone`" (timer.rs `Timer` docs, DESIGN.md section 11 "Dropping a timer").
//!
//! Run: cargo test -p cutoff-tests --release --test review2_drop_in_driver
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use cutoff::{Parent, Reason};
use cutoff_timer::Timer;

#[test]
fn a_timer_dropped_by_a_callback_on_its_own_driver_cancels_its_pending_deadlines() {
    let timer = Timer::new();
    // A deadline that must be cancelled with ParentGone when the timer goes.
    let pending = timer.timeout_source(Parent::Root, Duration::from_secs(3600));
    let fire = timer.timeout_source(Parent::Root, Duration::from_millis(5));
    let slot = Arc::new(Mutex::new(Some(timer)));
    let (tx, rx) = mpsc::channel();
    let s = slot.clone();
    let reg = fire.on_cancel(move |_| {
        let t = s.lock().unwrap().take();
        let on = std::thread::current().name().map(str::to_owned);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(t)));
        let _ = tx.send((
            on,
            r.err().map(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            }),
        ));
    });
    drop(slot);
    let (thread, panic) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("callback ran");
    eprintln!("callback ran on {thread:?}; Timer::drop panicked: {panic:?}");
    let start = Instant::now();
    while !pending.is_cancelled() && start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(reg);
    eprintln!("pending deadline after the drop: {:?}", pending.reason());
    assert!(
        panic.is_none(),
        "Timer::drop panicked on its driver thread: {panic:?}"
    );
    assert_eq!(
        pending.reason(),
        Some(Reason::ParentGone),
        "a deadline pending on a dropped timer was never cancelled"
    );
}
