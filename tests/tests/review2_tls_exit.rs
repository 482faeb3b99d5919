//! sound: thread-local destructors that create and drop deadlines (pinned and heap) on a
//! manual and on a threaded timer after the thread's shard cache is gone; threads exiting
//! with pending deadlines in their shard, fired later by another thread's turn; a timer
//! dropped afterwards (fallback shard given back) and a new timer reusing pooled shards and
//! the dropped timer's number; hostile grpc-timeout headers.
//!
//! Run: cargo test -p cutoff-tests --release --test review2_tls_exit
use std::cell::RefCell;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cutoff::{CancelSource, Parent, Reason};
use cutoff_timer::clock::ManualClock;
use cutoff_timer::{Deadline, Timer};

struct Late(&'static Timer, mpsc::Sender<CancelSource>);
impl Drop for Late {
    fn drop(&mut self) {
        let t = self.0;
        {
            let mut d = std::pin::pin!(Deadline::with_timer(
                t,
                None,
                t.now() + Duration::from_millis(5)
            ));
            d.as_mut().link();
        }
        let s = t.timeout_source(Parent::Root, Duration::from_millis(5));
        let _ = self.1.send(t.timeout_source(&s, Duration::from_millis(7)));
        let _ = self.1.send(s);
    }
}
std::thread_local! {
    static LATE: RefCell<Vec<Late>> = const { RefCell::new(Vec::new()) };
}

fn leak(t: Timer) -> &'static Timer {
    cutoff_tests::leak(t)
}

#[test]
fn tls_destructors_and_exiting_threads() {
    let clock = Arc::new(ManualClock::new());
    let manual = leak(Timer::manual(clock.clone()));
    let threaded = leak(Timer::new());
    let (tx, rx) = mpsc::channel();
    let mut hs = Vec::new();
    for i in 0..8 {
        let tx = tx.clone();
        hs.push(std::thread::spawn(move || {
            LATE.with(|l| {
                l.borrow_mut().push(Late(manual, tx.clone()));
                l.borrow_mut().push(Late(threaded, tx.clone()));
            });
            // Make this thread's shards, leave pending deadlines in them.
            let _ = tx.send(manual.timeout_source(Parent::Root, Duration::from_millis(1 + i)));
            let _ = tx.send(threaded.timeout_source(Parent::Root, Duration::from_millis(1 + i)));
        }));
    }
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    let srcs: Vec<CancelSource> = rx.iter().collect();
    assert_eq!(srcs.len(), 8 * 2 + 8 * 2 * 2);
    clock.advance(Duration::from_millis(20));
    manual.turn();
    for s in &srcs {
        assert_eq!(
            s.wait_timeout(Duration::from_secs(2)),
            Some(Reason::DeadlineExceeded)
        );
    }
}

#[test]
fn a_dropped_manual_timers_number_and_shards_are_reused_safely() {
    for _ in 0..50 {
        let c1 = Arc::new(ManualClock::new());
        let t1 = Timer::manual(c1.clone());
        let a = t1.timeout_source(Parent::Root, Duration::from_millis(10));
        let inh = t1.timeout_source(&a, Duration::from_millis(50)); // inherits (no entry)
        let g = cutoff_timer::with_timeout(&inh, Duration::from_secs(60)); // global, registers at a's
        drop(t1);
        assert_eq!(a.reason(), Some(Reason::ParentGone));
        assert!(inh.is_cancelled() && g.is_cancelled());
        let c2 = Arc::new(ManualClock::new());
        let t2 = Timer::manual(c2.clone());
        let b = t2.timeout_source(Parent::Root, Duration::from_millis(10));
        let under = t2.timeout_source(&b, Duration::from_millis(20));
        c2.advance(Duration::from_millis(9));
        t2.turn();
        assert!(!b.is_cancelled() && !under.is_cancelled());
        c2.advance(Duration::from_millis(1));
        t2.turn();
        assert_eq!(under.reason(), Some(Reason::DeadlineExceeded));
    }
}

#[test]
fn hostile_grpc_headers() {
    use cutoff_timer::grpc::{parse_timeout, with_grpc_timeout};
    for h in [
        "",
        "H",
        "99999999H",
        "999999999H",
        "1\u{0661}S",
        "+5S",
        "-1S",
        "5s",
        "5é",
        "\u{1F600}",
        "00000000n",
        "0n",
        "1n",
        " 1S",
        "1S ",
        "18446744073709551616n",
        "99999999n",
    ] {
        let p = parse_timeout(h);
        let node = with_grpc_timeout(Parent::Root, h);
        if let (Ok(d), Ok(n)) = (p, node.as_ref())
            && let Ok(Some(t)) = cutoff_timer::grpc_timeout(n)
        {
            assert!(Duration::from(t) <= d, "{h}: re-encoded {t} > parsed {d:?}");
        }
    }
}
