//! Adversarial review: a join waiter that re-polls when woken keeps the cancel walker on its
//! node forever (livelock; `cancel()` never returns).
//!
//! Fixed (review F2): join waiters are linked at the tail and the walker never pops them (they
//! wait for the last child, not for the cancellation; list.rs invariant 5). Regression test.
//!
//! Join waiters are the one kind of entry that may link into a cancelled node (node.rs
//! invariant 3), and they link at the *front* of the list (wait.rs `poll_join`, `push_front`).
//! The walker pops entries from the front (walk.rs `steps`, `pop_front_live`) and, for a join
//! entry, takes its waker, releases it and wakes it (a spurious wake-up for a join: the node
//! still has children, which the walker has not reached yet). A join future that is polled
//! again as a result of that wake-up, before the walker's next step takes the node's lock,
//! finds children left and links again at the front, so the walker pops it again, wakes it
//! again, and never reaches the children: they are never cancelled, the child count never
//! drops, the join never completes and `cancel()` never returns.
//!
//! The deterministic form is a waker that re-polls the join inline (on the walker's thread,
//! inside `wake`), which is legal user code (no lock is held while wakers run). The same loop
//! is a race with an executor on another thread that re-polls on wake-up; the second test
//! only reports how many extra rounds the walker made there.
//!
//! Run: cargo test -p cutoff-tests --release --test review_join_relink_livelock -- --nocapture

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use cutoff::{CancelSource, Join};

/// A join future on a leaked (so `'static`) parent, shared with its waker.
type SharedJoin = Arc<Mutex<Option<Pin<Box<Join<'static>>>>>>;

/// A waker that polls the join again, inline, when woken (like an executor that runs a woken
/// task at once on the waking thread).
struct RepollInline {
    join: Weak<Mutex<Option<Pin<Box<Join<'static>>>>>>,
    wakes: AtomicUsize,
    me: Mutex<Weak<RepollInline>>,
    /// Set by the test once it has seen enough, so that the walker can get away.
    stop: AtomicBool,
}

impl Wake for RepollInline {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        if self.stop.load(SeqCst) {
            return; // let the walker get away once the test has seen the loop
        }
        let Some(join) = self.join.upgrade() else {
            return;
        };
        let waker = Waker::from(self.me.lock().unwrap().upgrade().unwrap());
        let mut g = join.lock().unwrap();
        if let Some(f) = g.as_mut()
            && f.as_mut().poll(&mut Context::from_waker(&waker)) == Poll::Ready(())
        {
            *g = None;
        }
    }
}

#[test]
fn a_join_waiter_that_repolls_on_wake_livelocks_the_walker() {
    let parent: &'static CancelSource = cutoff_tests::leak(CancelSource::new());
    let child = parent.child();
    let join: SharedJoin = Arc::new(Mutex::new(Some(Box::pin(parent.join()))));
    let w = Arc::new(RepollInline {
        join: Arc::downgrade(&join),
        wakes: AtomicUsize::new(0),
        me: Mutex::new(Weak::new()),
        stop: AtomicBool::new(false),
    });
    *w.me.lock().unwrap() = Arc::downgrade(&w);
    let waker = Waker::from(w.clone());
    {
        let mut g = join.lock().unwrap();
        let f = g.as_mut().unwrap();
        assert!(
            f.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let t = thread::spawn(move || {
        parent.cancel();
        d.store(true, SeqCst);
    });
    let start = Instant::now();
    while !done.load(SeqCst) && start.elapsed() < Duration::from_secs(1) {
        thread::sleep(Duration::from_millis(10));
    }
    let wakes = w.wakes.load(SeqCst);
    let returned = done.load(SeqCst);
    let child_cancelled = child.is_cancelled();
    // Let the walker escape (the waker stops re-polling) and clean up.
    w.stop.store(true, SeqCst);
    t.join().unwrap();
    drop(child);
    assert!(
        returned,
        "parent.cancel() did not return within 1 s: the walker woke the same join waiter \
         {wakes} times (it re-links at the front each time) and never reached the child \
         (child cancelled: {child_cancelled})"
    );
}

/// The same loop as a race: an executor thread that re-polls the join as soon as it is woken.
/// Reports the number of wake-ups the walker delivered before it got past the join entry (1
/// means no extra round). Not an assertion: on a loaded machine the walker usually wins.
#[test]
fn a_join_waiter_repolled_by_another_thread_delays_the_walker() {
    struct Flag(AtomicBool, AtomicUsize, AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.1.fetch_add(1, SeqCst);
            self.0.store(true, SeqCst);
        }
    }
    let mut worst = 0;
    for _ in 0..200 {
        let parent: &'static CancelSource = cutoff_tests::leak(CancelSource::new());
        let child = parent.child();
        let flag = Arc::new(Flag(
            AtomicBool::new(false),
            AtomicUsize::new(0),
            AtomicBool::new(false),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, s2) = (flag.clone(), stop.clone());
        let exec = thread::spawn(move || {
            let waker = Waker::from(f2.clone());
            let mut join = Box::pin(parent.join());
            assert!(
                join.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            f2.2.store(true, SeqCst); // linked
            while !s2.load(SeqCst) {
                if f2.0.swap(false, SeqCst)
                    && join.as_mut().poll(&mut Context::from_waker(&waker)) == Poll::Ready(())
                {
                    return;
                }
                std::hint::spin_loop();
            }
        });
        while !flag.2.load(SeqCst) {
            thread::yield_now(); // until the executor has polled once (the join is linked)
        }
        parent.cancel();
        worst = worst.max(flag.1.load(SeqCst));
        drop(child);
        stop.store(true, SeqCst);
        exec.join().unwrap();
    }
    eprintln!("most wake-ups of one join waiter during one cancel(): {worst}");
}
