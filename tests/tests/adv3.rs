//! ADV-3 (adversarial review): a callback run by the timer's driver that drops a *pinned*
//! `Deadline` which is in the same fired batch hangs the driver forever (self-deadlock): the
//! pinned deadline is already `FIRING` (timer.rs `Inner::turn_with` calls `Fired::take` ->
//! `begin_fire` for the whole batch under the shard lock, then fires them one by one), and
//! `Deadline::drop` -> `DeadlineCore::unregister` spins until the driver, i.e. this very
//! thread, calls `end_fire` on it. With the threaded (global) timer every later deadline of
//! the process then never fires.
//!
//! The node being cancelled (the heap deadline whose callback runs) is not the pinned node,
//! and the callback does not borrow it (everything is `'static`), so this is not DESIGN.md
//! section 12's "must not drop a pinned node the cancellation is passing through".
//! A heap deadline in the same position is fine (the driver holds a token on it).
//!
//! Regression test (the defect is fixed; see docs/DESIGN.md section 11). Run:
//!   cargo test -p cutoff-tests --release --test adv3

use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutoff::Parent;
use cutoff_timer::clock::ManualClock;
use cutoff_timer::{Deadline, Timer};

type Slot = Arc<Mutex<Option<Pin<Box<Deadline<'static>>>>>>;

#[test]
fn a_callback_dropping_a_pinned_deadline_of_the_same_batch_does_not_hang_the_driver() {
    for pinned_first in [false, true] {
        let clock = Arc::new(ManualClock::new());
        let timer: &'static Timer = cutoff_tests::leak(Timer::manual(clock.clone()));
        let at = timer.now() + Duration::from_millis(10);
        let slot: Slot = Arc::new(Mutex::new(None));
        let make_pinned = |slot: &Slot| {
            let mut d = Box::pin(Deadline::with_timer(timer, None, at));
            d.as_mut().link();
            *slot.lock().unwrap() = Some(d);
        };
        let make_heap = |slot: &Slot| {
            let src = timer.deadline_source(Parent::Root, at);
            let s = slot.clone();
            let reg = src.on_cancel(move |_| drop(s.lock().unwrap().take()));
            (src, reg)
        };
        let (src, reg) = if pinned_first {
            make_pinned(&slot);
            make_heap(&slot)
        } else {
            let h = make_heap(&slot);
            make_pinned(&slot);
            h
        };
        clock.advance(Duration::from_millis(10));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let n = timer.turn();
            let _ = tx.send(n);
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            // The callback is stuck on the turning thread: dropping `reg` would wait for it
            // forever, so leak both handles before failing.
            std::mem::forget(reg);
            std::mem::forget(src);
            panic!(
                "Timer::turn hung (pinned deadline created first: {pinned_first}): the \
                 callback's drop of the pinned deadline waits for the driver that runs it"
            );
        }
        assert!(src.is_cancelled());
        drop(reg);
        drop(src);
    }
}

// ---- added with the fix: the same shape on a timer with its own driver thread -------------

/// The threaded form of the defect: the driver thread itself ran the callback and hung, and
/// with it every later deadline of the timer. Here the same-batch drop completes and the
/// driver goes on firing.
#[test]
fn the_driver_thread_survives_a_same_batch_drop_and_keeps_firing() {
    use cutoff::Reason;
    use std::time::Instant;

    let timer: &'static Timer = cutoff_tests::leak(Timer::new());
    let at = Instant::now() + Duration::from_millis(20);
    let slot: Slot = Arc::new(Mutex::new(None));
    let mut d = Box::pin(Deadline::with_timer(timer, None, at));
    d.as_mut().link();
    *slot.lock().unwrap() = Some(d);
    let src = timer.deadline_source(Parent::Root, at);
    let s = slot.clone();
    let reg = src.on_cancel(move |_| drop(s.lock().unwrap().take()));
    assert_eq!(
        src.wait_timeout(Duration::from_secs(10)),
        Some(Reason::DeadlineExceeded),
        "the driver did not fire the heap deadline"
    );
    // The callback (run by the driver's walk, maybe after the waiter was woken) drops the
    // pinned deadline.
    let start = Instant::now();
    while slot.lock().unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the callback never dropped the pinned deadline"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let later = timer.timeout_source(Parent::Root, Duration::from_millis(5));
    assert_eq!(
        later.wait_timeout(Duration::from_secs(10)),
        Some(Reason::DeadlineExceeded),
        "the driver stopped firing after a callback dropped a pinned deadline of its batch"
    );
    drop(reg);
}
