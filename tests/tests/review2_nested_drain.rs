//! sound: a callback fired by one timer drops another timer whose drain cancels an
//! *ancestor* of the node being fired (a nested cancellation reaching the firing node on the
//! same thread), pinned and heap variants; and a panicking callback during a drain.
//!
//! Run: cargo test -p cutoff-tests --release --test review2_nested_drain
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use cutoff::{Parent, Reason};
use cutoff_timer::clock::ManualClock;
use cutoff_timer::{Deadline, Timer};

fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("hung (deadlock)")
}

#[test]
fn a_callback_drops_the_timer_of_an_ancestor_of_the_firing_node() {
    let clock1 = Arc::new(ManualClock::new());
    let t1: &'static Timer = cutoff_tests::leak(Timer::manual(clock1.clone()));
    let t2 = Arc::new(Mutex::new(Some(Timer::manual(
        Arc::new(ManualClock::new()),
    ))));
    let n = t2
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .timeout_source(Parent::Root, Duration::from_secs(3600));
    let x = t1.timeout_source(&n, Duration::from_millis(10));
    let grandchild = x.child();
    let s = t2.clone();
    let reg = grandchild.on_cancel(move |_| drop(s.lock().unwrap().take()));
    clock1.advance(Duration::from_millis(10));
    let fired = within(move || t1.turn());
    assert_eq!(fired, 1);
    assert_eq!(x.reason(), Some(Reason::DeadlineExceeded));
    assert_eq!(n.reason(), Some(Reason::ParentGone));
    drop(reg);
}

type Slot = Arc<Mutex<Option<Pin<Box<Deadline<'static>>>>>>;

#[test]
fn a_drain_callback_drops_other_deadlines_and_panics() {
    let clock = Arc::new(ManualClock::new());
    let timer = Timer::manual(clock.clone());
    let other: &'static Timer = cutoff_tests::leak(Timer::manual(clock.clone()));
    let slot: Slot = Arc::new(Mutex::new(None));
    let mut d = Box::pin(Deadline::with_timer(
        other,
        None,
        other.now() + Duration::from_secs(1),
    ));
    d.as_mut().link();
    *slot.lock().unwrap() = Some(d);
    let srcs: Vec<_> = (0..200)
        .map(|i| timer.timeout_source(Parent::Root, Duration::from_millis(1 + i % 7)))
        .collect();
    let victims = Arc::new(Mutex::new(
        (0..200)
            .map(|_| timer.timeout_source(Parent::Root, Duration::from_millis(3)))
            .collect::<Vec<_>>(),
    ));
    let mut regs = Vec::new();
    for (i, s) in srcs.iter().enumerate() {
        let (v, sl) = (victims.clone(), slot.clone());
        regs.push(s.on_cancel(move |_| {
            drop(v.lock().unwrap().pop());
            if i == 3 {
                drop(sl.lock().unwrap().take());
            }
            if i % 50 == 0 {
                panic!("callback {i} panics during the drain");
            }
        }));
    }
    let srcs = within(move || {
        drop(timer);
        srcs
    });
    assert!(srcs.iter().all(|s| s.reason() == Some(Reason::ParentGone)));
    assert!(slot.lock().unwrap().is_none());
    drop(regs);
}
