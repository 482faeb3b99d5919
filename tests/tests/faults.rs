//! Fault injection (issue 6, item 3): user code that misbehaves while a cancellation runs,
//! timers that go away with deadlines pending, clocks that jump by years, and million-deep
//! chains on a 2 MiB stack in the cancel and drop orders `deep_chain.rs` does not cover.
//!
//! Cases already covered elsewhere are not repeated here (docs/TESTING.md lists them):
//! a panicking callback with its neighbours (`callbacks.rs`,
//! `panicking_callback_does_not_skip_others_or_lock_the_tree`), a panicking inline callback
//! (`panicking_inline_callback_propagates_from_register`), a panicking waker next to others
//! (`panicking_waker_does_not_skip_others`), a registration dropped from inside its own
//! callback (`on_cancel_dropped_from_inside_its_callback*`), a callback that creates children
//! on the node being cancelled and cancels an unrelated tree
//! (`callback_may_use_the_tree_while_it_runs`), a timer dropped with one pending deadline and
//! a clock jump over 100 deadlines (`std-timer/tests/deadline.rs`), and 1,000,000-deep heap and
//! `any_of` chains cancelled at the root or the middle and dropped root or leaf first
//! (`deep_chain.rs`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use cutoff::{Callback, CancelSource, ChildNode, Node, OnCancel, Reason};
use cutoff_tests::{CountingWaker, must_finish, poll_once, run_isolated};
use cutoff_timer::clock::{Clock, ManualClock};
use cutoff_timer::{Deadline, DeadlineExt, Parent, Timer};

type BoxedCb = Box<dyn FnOnce(&Reason) + Send>;
type Slot<T> = Arc<Mutex<Option<T>>>;

const MS: Duration = Duration::from_millis(1);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn manual() -> (Arc<ManualClock>, Timer) {
    let clock = Arc::new(ManualClock::new());
    let timer = Timer::manual(clock.clone());
    (clock, timer)
}

/// Run `f` with the panic hook silenced for this file's deliberate panics (payloads starting
/// with "expected test panic"); other panics still print.
fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                .unwrap_or_default();
            if !msg.starts_with("expected test panic") && !p.is::<Payload>() {
                prev(info);
            }
        }));
    });
    f()
}

fn payload_str(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<other payload>".to_owned())
}

/// A panic payload that counts its drops (a dropped-not-leaked check for the panics the walk
/// swallows).
struct Payload(Arc<AtomicUsize>);

impl Drop for Payload {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A callback that records each run into `log`.
fn rec(log: &Arc<Mutex<Vec<String>>>, name: &str) -> impl FnOnce(&Reason) + Send + 'static {
    let (log, name) = (log.clone(), name.to_owned());
    move |r: &Reason| {
        let entry = match r {
            Reason::Code(c) => format!("{name}:{c}"),
            other => format!("{name}:{other:?}"),
        };
        log.lock().unwrap().push(entry);
    }
}

// ---- panics --------------------------------------------------------------------------------

/// The panic surfaces in the thread that cancels, and only there: threads blocked in `wait()`
/// and pending futures on the tree are released normally, a later `cancel()` returns `false`
/// without panicking, and the registration whose callback panicked can be dropped.
#[test]
fn a_callback_panic_surfaces_only_in_the_cancelling_thread() {
    quiet_panics(|| {
        must_finish("panic on another thread", || {
            let root = CancelSource::new();
            let child = root.child();
            let _boom = child.on_cancel(|_: &Reason| panic!("expected test panic: callback"));
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let t = child.token();
                    thread::spawn(move || t.wait())
                })
                .collect();
            let mut fut = pin!(child.cancelled());
            let w = CountingWaker::new();
            assert!(poll_once(fut.as_mut(), &w.waker()).is_pending());
            // Let the blocked threads register (not required for correctness).
            thread::sleep(5 * MS);
            let canceller = thread::scope(|s| {
                s.spawn(|| catch_unwind(AssertUnwindSafe(|| root.cancel_with(Reason::Code(3)))))
                    .join()
                    .unwrap()
            });
            let payload = canceller.expect_err("cancel_with resumes the callback's panic");
            assert_eq!(payload_str(&*payload), "expected test panic: callback");
            for h in waiters {
                assert_eq!(h.join().unwrap(), Reason::Code(3));
            }
            assert_eq!(w.count(), 1);
            assert_eq!(
                poll_once(fut.as_mut(), &w.waker()),
                Poll::Ready(Reason::Code(3))
            );
            assert!(!root.cancel(), "no second walk, no second panic");
            assert_eq!(child.reason(), Some(Reason::Code(3)));
        });
    });
}

/// Several panics in one walk (callbacks at different depths, a pinned one and a waker): the
/// first one in walk order is resumed, every later payload is dropped (not leaked), and every
/// other callback and waker still ran.
#[test]
fn several_panics_in_one_walk_first_resumed_later_payloads_dropped() {
    struct Boom(Arc<AtomicUsize>);
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            std::panic::panic_any(Payload(self.0.clone()));
        }
    }
    quiet_panics(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let root = Node::new();
        // Walk order is depth first, newest entry first.
        let mut r_old = pin!(Callback::new(&root, rec(&log, "r-old")));
        r_old.as_mut().register();
        let mut a = pin!(ChildNode::new(&root));
        let a = a.as_mut().link();
        let d = drops.clone();
        let mut a_boom = pin!(Callback::new(a, move |_: &Reason| {
            std::panic::panic_any(Payload(d))
        }));
        a_boom.as_mut().register();
        let boom = Arc::new(Boom(drops.clone()));
        let mut a_fut = pin!(a.cancelled());
        assert!(poll_once(a_fut.as_mut(), &Waker::from(boom.clone())).is_pending());
        let mut a_new = pin!(Callback::new(a, rec(&log, "a-new")));
        a_new.as_mut().register();
        let mut r_boom = pin!(Callback::new(&root, |_: &Reason| panic!(
            "expected test panic: first"
        )));
        r_boom.as_mut().register();
        let mut r_new = pin!(Callback::new(&root, rec(&log, "r-new")));
        r_new.as_mut().register();

        let res = catch_unwind(AssertUnwindSafe(|| root.cancel_with(Reason::Code(1))));
        let p = res.expect_err("the first panic is resumed");
        assert_eq!(payload_str(&*p), "expected test panic: first");
        assert_eq!(*log.lock().unwrap(), ["r-new:1", "a-new:1", "r-old:1"]);
        assert_eq!(drops.load(SeqCst), 2, "both later payloads were dropped");
        assert_eq!(
            Arc::strong_count(&boom),
            1,
            "the panicking waker was released"
        );
        assert!(a.is_cancelled());
        assert_eq!(
            poll_once(a_fut.as_mut(), Waker::noop()),
            Poll::Ready(Reason::Code(1)),
            "the future whose waker panicked completes"
        );
    });
}

/// A panicking waker deep in a heap tree: the walk still reaches every node and wakes every
/// other waiter, the waker's `Arc` is released, and the whole tree drops cleanly.
#[test]
fn a_panicking_waker_deep_in_the_tree_does_not_stop_the_walk() {
    struct Boom;
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            panic!("expected test panic: waker");
        }
    }
    quiet_panics(|| {
        must_finish("panicking waker deep in a tree", || {
            let root = CancelSource::new();
            let mut nodes = vec![root.child()];
            for i in 1..50 {
                let parent = &nodes[i / 2];
                let c = parent.child();
                nodes.push(c);
            }
            let counter = CountingWaker::new();
            let boom = Arc::new(Boom);
            let mut futs: Vec<_> = nodes
                .iter()
                .map(|n| Box::pin(n.token().cancelled_owned()))
                .collect();
            for (i, f) in futs.iter_mut().enumerate() {
                let w = if i == 31 {
                    Waker::from(boom.clone())
                } else {
                    counter.waker()
                };
                assert!(poll_once(f.as_mut(), &w).is_pending());
            }
            let res = catch_unwind(AssertUnwindSafe(|| root.cancel_with(Reason::Shutdown)));
            assert!(res.is_err());
            assert_eq!(counter.count(), 49);
            assert_eq!(Arc::strong_count(&boom), 1);
            assert!(nodes.iter().all(|n| n.reason() == Some(Reason::Shutdown)));
            for f in &mut futs {
                assert_eq!(
                    poll_once(f.as_mut(), Waker::noop()),
                    Poll::Ready(Reason::Shutdown)
                );
            }
            drop(futs);
            drop(nodes);
            assert!(!root.has_children());
        });
    });
}

/// Deadlines whose callbacks panic, fired by `turn()` of a manual timer together with other
/// due deadlines (documented, DESIGN.md section 12: under `Timer::turn` the first panic is
/// resumed after the whole turn): the first panic surfaces from `turn()`, every due deadline is
/// cancelled by that same turn, later payloads are dropped, and every node can still be
/// dropped. Regression test: before the fix, the panicking entry stayed `FIRING` (its drop
/// spun forever) and the rest of the batch was never cancelled.
#[test]
fn a_panicking_deadline_callback_under_turn_loses_nothing() {
    quiet_panics(|| {
        must_finish("panicking deadline callbacks under turn()", || {
            let (clock, timer) = manual();
            let before = timer.timeout_source(Parent::Root, MS);
            let boom = timer.timeout_source(Parent::Root, MS);
            let boom2 = timer.timeout_source(Parent::Root, MS);
            let after = timer.timeout_source(Parent::Root, MS);
            let drops = Arc::new(AtomicUsize::new(0));
            let _p = boom.on_cancel(|_: &Reason| panic!("expected test panic: deadline"));
            let d = drops.clone();
            let _p2 = boom2.on_cancel(move |_: &Reason| std::panic::panic_any(Payload(d)));
            clock.advance(MS);
            let res = catch_unwind(AssertUnwindSafe(|| timer.turn()));
            let payload = res.expect_err("the panic surfaces from turn()");
            let first = payload.downcast_ref::<&str>().is_some() || payload.is::<Payload>();
            assert!(first, "one of the two panics is resumed");
            drop(payload);
            assert_eq!(
                drops.load(SeqCst),
                1,
                "the other payload was dropped, not leaked"
            );
            for (name, d) in [
                ("before", &before),
                ("boom", &boom),
                ("boom2", &boom2),
                ("after", &after),
            ] {
                assert_eq!(
                    d.reason(),
                    Some(Reason::DeadlineExceeded),
                    "`{name}` was due in the turn that panicked"
                );
            }
            assert_eq!(timer.turn(), 0, "nothing left, nothing fires twice");
            // The nodes can be dropped (an entry left FIRING would make this spin).
            drop((before, boom, boom2, after, _p, _p2));
        });
    });
}

/// The same on a timer's driver thread (documented, DESIGN.md section 12: such panics are
/// reported by the panic hook and dropped; the driver keeps firing): a panicking callback and
/// a panicking waker do not stop the driver, and later deadlines still fire. Regression test:
/// before the fix, the driver thread died and no later deadline on that timer fired (for the
/// global timer: in the whole process).
#[test]
fn a_panicking_deadline_callback_does_not_stop_the_driver() {
    struct Boom;
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            panic!("expected test panic: driver waker");
        }
    }
    quiet_panics(|| {
        must_finish("driver survives panicking callbacks and wakers", || {
            let timer = Timer::new();
            let boom = timer.timeout_source(Parent::Root, MS);
            let _p = boom.on_cancel(|_: &Reason| panic!("expected test panic: driver"));
            let mut fut = Box::pin(boom.token().cancelled_owned());
            assert!(poll_once(fut.as_mut(), &Waker::from(Arc::new(Boom))).is_pending());
            assert_eq!(boom.wait(), Reason::DeadlineExceeded);
            for _ in 0..3 {
                let later = timer.timeout_source(Parent::Root, MS);
                assert_eq!(
                    later.wait_timeout(Duration::from_secs(10)),
                    Some(Reason::DeadlineExceeded),
                    "a deadline created after the panic still fires"
                );
            }
            assert_eq!(
                poll_once(fut.as_mut(), Waker::noop()),
                Poll::Ready(Reason::DeadlineExceeded)
            );
            drop((fut, boom, _p));
            drop(timer);
        });
    });
}

// ---- callbacks that change the tree --------------------------------------------------------

/// A callback drops another registration on the same node: one the walk has not reached yet
/// (older: it then never runs), and one that already ran (newer: dropping it is a no-op).
#[test]
fn a_callback_drops_sibling_registrations() {
    must_finish("callback dropping sibling registrations", || {
        let src = CancelSource::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let older: Slot<OnCancel<BoxedCb>> = Arc::new(Mutex::new(None));
        let newer: Slot<OnCancel<BoxedCb>> = Arc::new(Mutex::new(None));
        *older.lock().unwrap() = Some(src.on_cancel(Box::new(rec(&log, "older")) as BoxedCb));
        let (o, n, l) = (older.clone(), newer.clone(), log.clone());
        let _middle = src.on_cancel(move |r: &Reason| {
            assert_eq!(*r, Reason::Code(4));
            l.lock().unwrap().push("middle:4".to_owned());
            let newer = n.lock().unwrap().take().expect("still held");
            assert!(!newer.is_registered(), "the newer one already ran");
            drop(newer);
            drop(o.lock().unwrap().take().expect("still held"));
        });
        *newer.lock().unwrap() = Some(src.on_cancel(Box::new(rec(&log, "newer")) as BoxedCb));
        assert!(src.cancel_with(Reason::Code(4)));
        assert_eq!(*log.lock().unwrap(), ["newer:4", "middle:4"]);
    });
}

/// A callback on a child cancels the child's *parent* while the child is being cancelled
/// directly: the nested walk on the same thread must not wait for the outer one (that would
/// deadlock), the parent and the child's siblings get the callback's reason, the child keeps
/// its own, and every callback runs exactly once.
#[test]
fn a_callback_cancels_its_parent() {
    must_finish("callback cancelling its parent", || {
        let log = Arc::new(Mutex::new(Vec::new()));
        let parent = Arc::new(CancelSource::new());
        let _p = parent.on_cancel(rec(&log, "parent"));
        let sibling = parent.child();
        let _s = sibling.on_cancel(rec(&log, "sibling"));
        let child = parent.child();
        let grandchild = child.child();
        let _g = grandchild.on_cancel(rec(&log, "grandchild"));
        let p = parent.clone();
        let _c = child.on_cancel(move |r: &Reason| {
            assert_eq!(*r, Reason::Code(1));
            assert!(
                p.cancel_with(Reason::Code(2)),
                "the parent was not cancelled yet"
            );
        });
        assert!(child.cancel_with(Reason::Code(1)));
        assert_eq!(parent.reason(), Some(Reason::Code(2)));
        assert_eq!(sibling.reason(), Some(Reason::Code(2)));
        assert_eq!(child.reason(), Some(Reason::Code(1)));
        assert_eq!(grandchild.reason(), Some(Reason::Code(1)));
        let mut l = log.lock().unwrap().clone();
        l.sort();
        assert_eq!(l, ["grandchild:1", "parent:2", "sibling:2"]);
    });
}

/// A callback cancels the root of the very walk that is running it: `false`, at once.
#[test]
fn a_callback_cancels_the_root_of_its_own_walk() {
    must_finish("callback cancelling its own walk's root", || {
        let root = Arc::new(CancelSource::new());
        let child = root.child();
        let r = root.clone();
        let returned = Arc::new(AtomicUsize::new(0));
        let ret = returned.clone();
        let _c = child.on_cancel(move |_: &Reason| {
            let won = r.cancel_with(Reason::Code(9));
            ret.store(if won { 2 } else { 1 }, SeqCst);
        });
        assert!(root.cancel_with(Reason::Code(8)));
        assert_eq!(
            returned.load(SeqCst),
            1,
            "the nested cancel lost and returned"
        );
        assert_eq!(root.reason(), Some(Reason::Code(8)));
        assert_eq!(child.reason(), Some(Reason::Code(8)));
    });
}

/// A callback cancels a sibling subtree the walk has not reached yet (it is cancelled by the
/// nested walk, with the callback's reason, and the outer walk skips it), and the sibling's
/// callback cancels one the walk has already passed (`false`).
#[test]
fn a_callback_cancels_its_siblings() {
    must_finish("callback cancelling siblings", || {
        let log = Arc::new(Mutex::new(Vec::new()));
        let root = CancelSource::new();
        let older = Arc::new(root.child()); // visited after `newer` (newest first)
        let older_kid = older.child();
        let _ok = older_kid.on_cancel(rec(&log, "older-kid"));
        let newer = Arc::new(root.child());
        let (o, n) = (older.clone(), newer.clone());
        let _n = newer.on_cancel(move |_: &Reason| {
            assert!(o.cancel_with(Reason::Code(7)), "not reached yet");
        });
        let _o = older.on_cancel(move |r: &Reason| {
            assert_eq!(*r, Reason::Code(7));
            assert!(!n.cancel_with(Reason::Code(6)), "already cancelled");
        });
        assert!(root.cancel_with(Reason::Code(5)));
        assert_eq!(newer.reason(), Some(Reason::Code(5)));
        assert_eq!(older.reason(), Some(Reason::Code(7)));
        assert_eq!(older_kid.reason(), Some(Reason::Code(7)));
        assert_eq!(*log.lock().unwrap(), ["older-kid:7"]);
    });
}

/// Two threads cancel two trees whose callbacks each cancel the *other* tree's root. Each
/// nested cancel meets a walk in progress on the other thread; neither may wait for it (the
/// two walks would wait for each other forever).
#[test]
fn callbacks_cancelling_each_others_trees_from_two_threads() {
    must_finish("cross-cancelling callbacks", || {
        for round in 0..300 {
            let a = Arc::new(CancelSource::new());
            let b = Arc::new(CancelSource::new());
            let a_kid = a.child();
            let b_kid = b.child();
            let (a2, b2) = (a.clone(), b.clone());
            let _ca = a_kid.on_cancel(move |_: &Reason| {
                b2.cancel_with(Reason::Code(1));
            });
            let _cb = b_kid.on_cancel(move |_: &Reason| {
                a2.cancel_with(Reason::Code(2));
            });
            let go = Arc::new(Barrier::new(2));
            let (a3, g) = (a.clone(), go.clone());
            let t = thread::spawn(move || {
                g.wait();
                a3.cancel_with(Reason::Code(3));
            });
            go.wait();
            b.cancel_with(Reason::Code(4));
            t.join().unwrap();
            assert!(
                a_kid.is_cancelled() && b_kid.is_cancelled(),
                "round {round}"
            );
            // Each root got one of the two reasons that target it.
            assert!(matches!(a.reason(), Some(Reason::Code(2 | 3))));
            assert!(matches!(b.reason(), Some(Reason::Code(1 | 4))));
        }
    });
}

/// A callback creates children under nodes of the subtree being cancelled: under the node
/// being cancelled (born cancelled), and under a descendant the walk has not reached yet (they
/// link normally and the walk then cancels them): heap children, a 10,000-deep chain, and a
/// deadline node (whose timer entry is removed when it drops). All end with the walk's reason.
#[test]
fn a_callback_creates_children_ahead_of_the_walk() {
    must_finish("callback creating children ahead of the walk", || {
        let root = CancelSource::new();
        let ahead = Arc::new(root.child()); // older: visited after the callback's node
        let cb_node = root.child();
        let made: Slot<Vec<CancelSource>> = Arc::new(Mutex::new(Some(Vec::new())));
        let (m, a, r) = (made.clone(), ahead.clone(), root.token());
        let _c = cb_node.on_cancel(move |_: &Reason| {
            let mut v = m.lock().unwrap();
            let v = v.as_mut().unwrap();
            assert!(
                r.child().is_cancelled(),
                "born cancelled under the node being cancelled"
            );
            assert!(!a.is_cancelled(), "the walk has not reached `ahead` yet");
            v.push(a.child());
            v.push(cutoff_timer::with_timeout(&*a, Duration::from_secs(3600)));
            let mut last = a.child();
            for _ in 0..10_000 {
                let next = last.child();
                v.push(last);
                last = next;
            }
            v.push(last);
            assert!(v.iter().all(|n| !n.is_cancelled()));
        });
        assert!(root.cancel_with(Reason::Code(12)));
        let made = made.lock().unwrap().take().unwrap();
        assert_eq!(made.len(), 10_003);
        assert!(made.iter().all(|n| n.reason() == Some(Reason::Code(12))));
        drop(made);
        assert!(!ahead.has_children());
    });
}

/// On a manual timer: a deadline's callback (run by `turn()`) cancels the deadline's parent,
/// which has another deadline child still pending. The pending one is cancelled with the
/// callback's reason now, is skipped when its own time comes, and drops cleanly.
#[test]
fn a_deadline_callback_cancels_its_parent_with_a_deadline_pending() {
    must_finish("deadline callback cancelling its parent", || {
        let (clock, timer) = manual();
        let parent = Arc::new(CancelSource::new());
        let soon = timer.timeout_source(&*parent, MS);
        let later = timer.timeout_source(&*parent, Duration::from_secs(3600));
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let _l = later.on_cancel(move |reason: &Reason| {
            assert_eq!(*reason, Reason::Code(4));
            r.fetch_add(1, SeqCst);
        });
        let p = parent.clone();
        let _s = soon.on_cancel(move |_: &Reason| {
            assert!(p.cancel_with(Reason::Code(4)));
        });
        clock.advance(MS);
        assert_eq!(timer.turn(), 1);
        assert_eq!(soon.reason(), Some(Reason::DeadlineExceeded));
        assert_eq!(later.reason(), Some(Reason::Code(4)));
        clock.advance(Duration::from_secs(3600));
        timer.turn();
        assert_eq!(later.reason(), Some(Reason::Code(4)));
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(timer.next_deadline(), None);
    });
}

/// A deadline's callback drops its own registration, whose token is the deadline node's last
/// handle, while the timer fires it: on a manual timer (`turn()`) and on a driver thread.
#[test]
fn a_deadline_callback_drops_its_own_registration_and_the_last_handle() {
    fn arm(d: CancelSource, ran: &Arc<AtomicUsize>) -> Slot<OnCancel<BoxedCb>> {
        let slot: Slot<OnCancel<BoxedCb>> = Arc::new(Mutex::new(None));
        let (s, r) = (slot.clone(), ran.clone());
        // The clock only moves after this, so the callback finds the registration in the slot.
        *slot.lock().unwrap() = Some(d.on_cancel(Box::new(move |reason: &Reason| {
            assert_eq!(*reason, Reason::DeadlineExceeded);
            let own = s.lock().unwrap().take();
            assert!(own.is_some(), "the registration is in the slot");
            drop(own);
            r.fetch_add(1, SeqCst);
        }) as BoxedCb));
        drop(d); // the registration's token is the last handle now
        slot
    }
    must_finish("deadline callback dropping its own registration", || {
        let ran = Arc::new(AtomicUsize::new(0));
        let (clock, timer) = manual();
        let root = CancelSource::new();
        let slot = arm(timer.timeout_source(&root, MS), &ran);
        clock.advance(MS);
        assert_eq!(timer.turn(), 1);
        assert_eq!(ran.load(SeqCst), 1);
        assert!(slot.lock().unwrap().is_none());
        assert!(!root.has_children(), "the node was freed");

        // A driver thread on a manual clock: it fires once the clock has moved.
        let clock = Arc::new(ManualClock::new());
        let threaded = Timer::threaded(clock.clone());
        let slot = arm(threaded.timeout_source(&root, MS), &ran);
        clock.advance(MS);
        let limit = Instant::now() + Duration::from_secs(10);
        while ran.load(SeqCst) < 2 && Instant::now() < limit {
            thread::sleep(MS);
        }
        assert_eq!(ran.load(SeqCst), 2);
        assert!(slot.lock().unwrap().is_none());
        let limit = Instant::now() + Duration::from_secs(10);
        while root.has_children() && Instant::now() < limit {
            thread::sleep(MS);
        }
        assert!(!root.has_children(), "the node was freed");
    });
}

/// A deadline's callback, running on the timer's driver thread, creates new deadlines on the
/// same timer (so the driver thread gets a shard of its own mid-turn); they fire too, once.
#[test]
fn a_deadline_callback_creates_deadlines_on_the_driver_thread() {
    must_finish("deadlines created on the driver thread", || {
        let timer = Arc::new(Timer::new());
        let made: Slot<Vec<CancelSource>> = Arc::new(Mutex::new(Some(Vec::new())));
        let (t, m) = (timer.clone(), made.clone());
        let first = timer.timeout_source(Parent::Root, MS);
        let _c = first.on_cancel(move |_: &Reason| {
            let mut v = m.lock().unwrap();
            for i in 0..10 {
                v.as_mut()
                    .unwrap()
                    .push(t.timeout_source(Parent::Root, MS * i));
            }
        });
        assert_eq!(first.wait(), Reason::DeadlineExceeded);
        let made = loop {
            if let Some(v) = made.lock().unwrap().take_if(|v| v.len() == 10) {
                break v;
            }
            thread::sleep(MS);
        };
        for d in &made {
            assert_eq!(
                d.wait_timeout(Duration::from_secs(10)),
                Some(Reason::DeadlineExceeded)
            );
        }
        drop((made, first, _c));
        drop(Arc::try_unwrap(timer).unwrap_or_else(|_| panic!("callback kept the timer")));
    });
}

// ---- timers dropped with deadlines pending -------------------------------------------------

/// Dropping a threaded `Timer` (documented: every deadline still pending on it is cancelled
/// with `Reason::ParentGone`) with pending deadlines made on three threads (two of which have
/// exited, so their shards are orphans), with children, callbacks and waiters on them, next to
/// deadlines that already fired, were cancelled explicitly, or never had an entry of their own.
#[test]
fn dropping_a_threaded_timer_cancels_every_pending_deadline_with_parent_gone() {
    must_finish("timer drop with pending deadlines", || {
        let timer = Arc::new(Timer::new());
        let root = CancelSource::new();
        let mut pending: Vec<CancelSource> = (0..2)
            .flat_map(|_| {
                let (t, r) = (timer.clone(), root.token());
                thread::spawn(move || {
                    (0..50)
                        .map(|i| t.timeout_source(&r, Duration::from_secs(3600 + i)))
                        .collect::<Vec<_>>()
                })
                .join()
                .unwrap()
            })
            .collect();
        pending.push(timer.timeout_source(&root, Duration::from_secs(7200)));
        let fired = timer.timeout_source(&root, MS);
        assert_eq!(fired.wait(), Reason::DeadlineExceeded);
        let explicit = timer.timeout_source(&root, Duration::from_secs(3600));
        explicit.cancel_with(Reason::Code(5));
        // No entry of its own: its parent's deadline is earlier.
        let inherits = timer.timeout_source(&pending[0], Duration::from_secs(99_999));
        let plain = pending[1].child();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let _cb = plain.on_cancel(move |reason: &Reason| {
            assert_eq!(*reason, Reason::ParentGone);
            r.fetch_add(1, SeqCst);
        });
        let mut fut = Box::pin(pending[2].token().cancelled_owned());
        let w = CountingWaker::new();
        assert!(poll_once(fut.as_mut(), &w.waker()).is_pending());

        // Drop the last handle of the timer on yet another thread.
        thread::spawn(move || drop(timer)).join().unwrap();

        assert!(
            pending
                .iter()
                .all(|d| d.reason() == Some(Reason::ParentGone))
        );
        assert_eq!(inherits.reason(), Some(Reason::ParentGone));
        assert_eq!(plain.reason(), Some(Reason::ParentGone));
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(w.count(), 1);
        assert_eq!(
            poll_once(fut.as_mut(), &w.waker()),
            Poll::Ready(Reason::ParentGone)
        );
        assert_eq!(fired.reason(), Some(Reason::DeadlineExceeded));
        assert_eq!(explicit.reason(), Some(Reason::Code(5)));
        assert!(
            !root.is_cancelled(),
            "the parent of the deadlines is not affected"
        );
        // The nodes outlive the timer and drop cleanly (their entries are no longer pending).
        drop((fut, pending, inherits, _cb, plain, fired, explicit));
        assert!(!root.has_children());
        // Shards went back to the pool; a new timer works.
        let again = Timer::new();
        assert_eq!(
            again.timeout_source(&root, MS).wait(),
            Reason::DeadlineExceeded
        );
    });
}

/// A manual timer dropped after its pinned deadlines (which borrow it) went, with heap ones
/// still pending: those are cancelled with `ParentGone`; a deadline that was dropped before
/// the timer is not touched.
#[test]
fn dropping_a_manual_timer_after_its_pinned_deadlines() {
    let (clock, timer) = manual();
    let root = Node::new();
    let heap = timer.timeout_source(Parent::Root, Duration::from_secs(60));
    {
        let at = timer.now() + Duration::from_secs(60);
        let mut d = pin!(Deadline::with_timer(&timer, Some(&root), at));
        let d = d.as_mut().link();
        assert!(!d.is_cancelled());
    }
    clock.advance(Duration::from_secs(60) - MS);
    drop(timer);
    assert_eq!(heap.reason(), Some(Reason::ParentGone));
    assert!(!root.is_cancelled());
    assert!(!root.has_children());
}

// ---- clocks jumping by years ---------------------------------------------------------------

/// Deadlines on every level of the wheel, from a nanosecond to 500 years, heap and pinned. The
/// manual clock jumps 10 years in one step: exactly those due by then fire, each once, none
/// before its deadline (each callback reads the clock); a second jump fires the rest.
#[test]
fn a_clock_jump_of_years_fires_every_level_once_never_early() {
    let (clock, timer) = manual();
    let spans = [
        Duration::from_nanos(1),
        MS,
        63 * MS,
        64 * MS,
        4095 * MS,
        Duration::from_secs(1),
        Duration::from_secs(60),
        Duration::from_secs(3600),
        Duration::from_secs(24 * 3600),
        Duration::from_secs(30 * 24 * 3600),
        YEAR,
        9 * YEAR,
        10 * YEAR - Duration::from_nanos(1),
        10 * YEAR,
        10 * YEAR + Duration::from_nanos(1),
        100 * YEAR,
        500 * YEAR,
    ];
    let fired_at: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let start = clock.now();
    let arm = |node: &cutoff::NodeView, span: Duration| {
        let (f, c) = (fired_at.clone(), clock.clone());
        let due = start + u64::try_from(span.as_nanos()).unwrap();
        node.to_token()
            .map(|t| t.on_cancel(move |_: &Reason| f.lock().unwrap().push((due, c.now()))))
    };
    let heap: Vec<_> = spans
        .iter()
        .map(|&s| {
            let d = timer.timeout_source(Parent::Root, s);
            let reg = arm(&d, s).expect("heap node");
            (d, reg)
        })
        .collect();
    // Pinned deadlines: their callbacks are pinned too.
    let root = Node::new();
    let pinned_runs = Arc::new(AtomicUsize::new(0));
    let mut p1 = pin!(Deadline::with_timer(
        &timer,
        Some(&root),
        timer.now() + 5 * YEAR
    ));
    let p1 = p1.as_mut().link();
    let mut p2 = pin!(Deadline::with_timer(
        &timer,
        Some(&root),
        timer.now() + 50 * YEAR
    ));
    let p2 = p2.as_mut().link();
    let r = pinned_runs.clone();
    let mut c1 = pin!(Callback::new(p1, move |_: &Reason| {
        r.fetch_add(1, SeqCst);
    }));
    c1.as_mut().register();

    clock.advance(10 * YEAR);
    let mut turns = 0;
    while timer.turn() > 0 {
        turns += 1;
        assert!(turns < 1000);
    }
    let due_by = start + u64::try_from((10 * YEAR).as_nanos()).unwrap();
    {
        let fired = fired_at.lock().unwrap();
        assert_eq!(fired.len(), spans.len() - 3, "{fired:?}");
        assert!(fired.iter().all(|&(due, at)| due <= at && due <= due_by));
    }
    for (d, _) in &heap {
        let due = d.deadline().expect("has a deadline");
        assert_eq!(d.is_cancelled(), due <= timer.now(), "{due:?}");
    }
    assert_eq!(pinned_runs.load(SeqCst), 1);
    assert_eq!(p1.reason(), Some(Reason::DeadlineExceeded));
    assert!(!p2.is_cancelled());

    clock.advance(500 * YEAR);
    while timer.turn() > 0 {}
    assert_eq!(fired_at.lock().unwrap().len(), spans.len());
    assert!(
        heap.iter()
            .all(|(d, _)| d.reason() == Some(Reason::DeadlineExceeded))
    );
    assert_eq!(p2.reason(), Some(Reason::DeadlineExceeded));
    assert!(fired_at.lock().unwrap().iter().all(|&(due, at)| due <= at));
}

/// A threaded timer on a manual clock: the driver parks for real time, so it notices a jump
/// of the clock only when it next wakes (documented in docs/TESTING.md as a limitation of
/// custom clocks that jump); `turn()` from any thread fires what is due at once, and the
/// driver, turning concurrently, never fires anything twice.
#[test]
fn a_threaded_timer_on_a_jumping_clock_fires_on_turn_exactly_once() {
    must_finish("threaded timer, jumping clock", || {
        let clock = Arc::new(ManualClock::new());
        let timer = Timer::threaded(clock.clone());
        let runs = Arc::new(AtomicU64::new(0));
        let ds: Vec<_> = (1..=200u64)
            .map(|i| {
                let d = timer.timeout_source(Parent::Root, Duration::from_secs(i * 24 * 3600));
                let r = runs.clone();
                let reg = d.on_cancel(move |_: &Reason| {
                    r.fetch_add(1, SeqCst);
                });
                (d, reg)
            })
            .collect();
        clock.advance(2 * YEAR);
        let turner = thread::scope(|s| {
            let h = s.spawn(|| (0..50).map(|_| timer.turn()).sum::<usize>());
            let mine: usize = (0..50).map(|_| timer.turn()).sum();
            mine + h.join().unwrap()
        });
        assert!(turner <= 200);
        assert!(
            ds.iter()
                .all(|(d, _)| d.reason() == Some(Reason::DeadlineExceeded))
        );
        assert_eq!(runs.load(SeqCst), 200);
        drop(ds);
        drop(timer);
    });
}

// ---- 1,000,000-deep chains on a 2 MiB stack ------------------------------------------------

const DEPTH: usize = 1_000_000;
const STACK: usize = 2 << 20;

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    thread::Builder::new()
        .name("2MiB".into())
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the 2 MiB thread panicked");
}

fn heap_chain(depth: usize) -> Vec<CancelSource> {
    let mut v: Vec<CancelSource> = Vec::with_capacity(depth);
    v.push(CancelSource::new());
    for i in 1..depth {
        let c = v[i - 1].child();
        v.push(c);
    }
    v
}

/// Keep only the first and last handle of a chain: every node in between lives only through
/// its child's reference on it.
fn ends_only(mut v: Vec<CancelSource>) -> (CancelSource, CancelSource) {
    let leaf = v.pop().expect("non-empty");
    v.truncate(1);
    (v.pop().expect("root"), leaf)
}

macro_rules! deep_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            run_isolated(stringify!($name), || {
                on_small_stack(|| {
                    let t = Instant::now();
                    $body
                    eprintln!("{}: {:?}", stringify!($name), t.elapsed());
                })
            });
        }
    };
}

deep_test! {
    /// Cancel every node from the leaf up to the root (each cancel finds its subtree already
    /// cancelled), then drop root first.
    fn chain_cancelled_leaf_to_root_then_dropped_root_first() {
        let v = heap_chain(DEPTH);
        for (i, n) in v.iter().enumerate().rev() {
            assert!(n.cancel_with(Reason::Code(i as u32)));
        }
        assert_eq!(v[DEPTH - 1].reason(), Some(Reason::Code(DEPTH as u32 - 1)));
        assert_eq!(v[0].reason(), Some(Reason::Code(0)));
        drop(v);
    }
}

deep_test! {
    /// Only the root and leaf handles kept: the cancel walks through nodes nobody holds, then
    /// the leaf (which holds the whole chain) drops first.
    fn handleless_chain_cancelled_then_leaf_dropped_first() {
        let (root, leaf) = ends_only(heap_chain(DEPTH));
        assert!(root.cancel_with(Reason::Code(1)));
        assert_eq!(leaf.reason(), Some(Reason::Code(1)));
        drop(leaf); // frees a million nodes, up to the root's
        assert!(!root.has_children());
        drop(root);
    }
}

deep_test! {
    /// Only the root and leaf handles kept, cancelled, root dropped first: the leaf's drop
    /// then frees the whole chain including the root.
    fn handleless_chain_cancelled_then_root_dropped_first() {
        let (root, leaf) = ends_only(heap_chain(DEPTH));
        let leaf_tok = leaf.token();
        assert!(root.cancel());
        drop(root);
        drop(leaf);
        assert!(leaf_tok.is_cancelled());
        drop(leaf_tok);
    }
}

deep_test! {
    /// Only the ends kept, never cancelled, leaf dropped first.
    fn handleless_chain_never_cancelled_leaf_dropped_first() {
        let (root, leaf) = ends_only(heap_chain(DEPTH));
        drop(leaf);
        assert!(!root.has_children());
    }
}

deep_test! {
    /// One thread cancels the root while another drops the chain from the leaf up (both on
    /// 2 MiB stacks).
    fn chain_cancelled_while_another_thread_drops_it_leaf_first() {
        let mut v = heap_chain(DEPTH);
        let root = v.remove(0);
        let root_tok = root.token();
        let go = Arc::new(Barrier::new(2));
        let g = go.clone();
        let dropper = thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                g.wait();
                while let Some(h) = v.pop() {
                    drop(h);
                }
            })
            .expect("spawn");
        go.wait();
        root.cancel_with(Reason::Code(2));
        dropper.join().expect("dropper");
        assert_eq!(root_tok.reason(), Some(Reason::Code(2)));
        assert!(!root_tok.has_children());
    }
}

deep_test! {
    /// A million heap *deadline* nodes in a chain on a manual timer: the root's deadline is the
    /// earliest, so the others get no timer entry; one turn fires the root and the walk
    /// cancels the whole chain; then the handles drop root first.
    fn deadline_chain_fired_then_dropped_root_first() {
        let (clock, timer) = manual();
        let mut v: Vec<CancelSource> = Vec::with_capacity(DEPTH);
        v.push(timer.timeout_source(Parent::Root, MS));
        for i in 1..DEPTH {
            let d = timer.timeout_source(&v[i - 1], Duration::from_secs(60));
            v.push(d);
        }
        assert_eq!(v[DEPTH - 1].deadline(), v[0].deadline());
        clock.advance(MS);
        assert_eq!(timer.turn(), 1, "only the root had an entry");
        assert_eq!(v[DEPTH - 1].reason(), Some(Reason::DeadlineExceeded));
        drop(v);
    }
}

deep_test! {
    /// A million deadline nodes in a chain, each deeper one due earlier (so each has its own
    /// entry), alternating with plain nodes; dropped leaf first before anything fires (each
    /// drop removes its entry), then a second such chain fires completely and drops with only
    /// its ends held.
    fn deadline_chain_with_an_entry_each() {
        let (clock, timer) = manual();
        let chain = |timer: &Timer| {
            let mut v: Vec<CancelSource> = Vec::with_capacity(DEPTH);
            v.push(timer.timeout_source(Parent::Root, Duration::from_secs(10)));
            for i in 1..DEPTH {
                let d = if i % 2 == 0 {
                    timer.timeout_source(
                        &v[i - 1],
                        Duration::from_secs(10) - Duration::from_micros(i as u64),
                    )
                } else {
                    v[i - 1].child()
                };
                v.push(d);
            }
            v
        };
        let mut v = chain(&timer);
        while let Some(h) = v.pop() {
            drop(h);
        }
        clock.advance(Duration::from_secs(10));
        assert_eq!(timer.turn(), 0, "every entry was removed");
        let (root, leaf) = ends_only(chain(&timer));
        clock.advance(Duration::from_secs(10));
        let mut fired = 0;
        loop {
            let n = timer.turn();
            if n == 0 {
                break;
            }
            fired += n;
        }
        assert_eq!(fired, DEPTH / 2);
        assert!(root.is_cancelled() && leaf.is_cancelled());
        drop(leaf);
        drop(root);
    }
}
