//! REVIEW2-2: `Timer::turn` does not "fire every deadline due now" while another thread's
//! turn of the same manual timer is inside a callback of the same batch.
//!
//! Fixed: a shard's `next` hint is 0 (work now) while its due list holds entries, so turn B
//! helps fire them. Regression test.
//!
//! `Inner::turn` (timer.rs) skips a shard whose `next` hint is later than now. The hint
//! covers the shard's *wheel* only; the entries a concurrent turn has already moved to the
//! shard's due list (state `DUE`) are not reflected in it. So while turn A runs the callback
//! of the first entry of a batch, turn B (same timer, clock past every deadline) sees the
//! wheel empty, skips the shard and returns 0: the other due deadline is still not cancelled
//! after B's `turn()` returned, contradicting `Timer::turn`'s docs ("Fire every deadline due
//! now, on this thread; returns how many fired"). With one slow callback, every other
//! deadline of the batch waits for it, whoever else turns.
//!
//! Run: cargo test -p cutoff-tests --release --test review2_turn_concurrent
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cutoff::Parent;
use cutoff_timer::Timer;
use cutoff_timer::clock::ManualClock;

#[test]
fn a_second_turn_fires_the_rest_of_a_batch_whose_first_callback_is_slow() {
    let clock = Arc::new(ManualClock::new());
    let timer: &'static Timer = cutoff_tests::leak(Timer::manual(clock.clone()));
    let at = timer.now() + Duration::from_millis(10);
    let first = Arc::new(AtomicBool::new(true));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
    let mut srcs = Vec::new();
    let mut regs = Vec::new();
    for _ in 0..2 {
        let src = timer.deadline_source(Parent::Root, at);
        let (first, started_tx, go_rx) = (first.clone(), started_tx.clone(), go_rx.clone());
        regs.push(src.on_cancel(move |_| {
            if first.swap(false, Ordering::SeqCst) {
                let _ = started_tx.send(());
                let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
            }
        }));
        srcs.push(src);
    }
    clock.advance(Duration::from_millis(10));
    let a = std::thread::spawn(move || timer.turn());
    started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("turn A runs a callback");
    // Turn B: the clock is past both deadlines.
    let n = timer.turn();
    let cancelled = srcs.iter().filter(|s| s.is_cancelled()).count();
    eprintln!("turn B returned {n}; cancelled after turn B: {cancelled} of 2");
    go_tx.send(()).unwrap();
    let na = a.join().unwrap();
    eprintln!("turn A returned {na}");
    assert_eq!(
        cancelled, 2,
        "turn B returned with a due deadline not cancelled"
    );
}
