//! Adversarial review: more shapes around deferral, adoption, `DRAINED`, pinned owners and
//! panicking wake-ups during adoption.
//!
//! Sound: every test in this file passed on the reviewed code (82fc2fe); kept as regression
//! tests.
//!
//! Run: cargo test -p cutoff-tests --release --test review_walk_misc

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::task::{Wake, Waker};
use std::thread;
use std::time::Duration;

use cutoff::{AnyOf, Callback, CancelSource, ChildNode, NodeView, OnCancel, Reason};
use cutoff_tests::{CountingWaker, must_finish, poll_once};

#[derive(Default)]
struct Gate {
    entered: AtomicBool,
    open: AtomicBool,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    fn hold(self: &Arc<Self>) -> impl FnOnce(&Reason) + Send + 'static {
        let g = self.clone();
        move |_: &Reason| {
            g.entered.store(true, SeqCst);
            while !g.open.load(SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    fn wait_entered(&self) {
        while !self.entered.load(SeqCst) {
            thread::yield_now();
        }
    }
    fn open(&self) {
        self.open.store(true, SeqCst);
    }
}

const SETTLE: Duration = Duration::from_millis(100);

type Reg = OnCancel<Box<dyn FnOnce(&Reason) + Send>>;

fn on_cancel_boxed(s: &CancelSource, f: impl FnOnce(&Reason) + Send + 'static) -> Reg {
    s.on_cancel(Box::new(f) as Box<dyn FnOnce(&Reason) + Send>)
}

/// Run `f` from inside a callback of a fresh node's walk (so any cancel in it is nested).
fn nested(f: impl FnOnce() + Send + 'static) {
    let n = CancelSource::new();
    let _reg = on_cancel_boxed(&n, move |_| f());
    assert!(n.cancel());
}

/// The `DRAINED` fast path meets deferral: a nested cancel of r, whose only child is c (so the
/// walker leaves r `DRAINED` when it descends into c), finds c's child y being walked by T,
/// defers it and abandons c; climbing back it must relock r (not take the `DRAINED` shortcut,
/// which would clear r's `WALKING`), defer c there and abandon r. A losing top-level
/// `r.cancel()` then adopts r and c and waits for y.
#[test]
fn drained_parent_of_an_abandoned_child_stays_walking() {
    must_finish("drained + abandon", || {
        let r = Arc::new(CancelSource::new());
        let c = r.child(); // r's only child
        let y = Arc::new(c.child());
        let z = y.child();
        let gate = Gate::new();
        let _slow = on_cancel_boxed(&y, gate.hold());
        let y2 = y.clone();
        let t = thread::spawn(move || assert!(y2.cancel()));
        gate.wait_entered();
        let r2 = r.clone();
        nested(move || {
            assert!(r2.cancel_with(Reason::Code(2)));
        });
        assert!(c.is_cancelled() && !z.is_cancelled());
        let returned = Arc::new(AtomicBool::new(false));
        let (r3, ret) = (r.clone(), returned.clone());
        let zc = Arc::new(z);
        let z2 = zc.clone();
        let h = thread::spawn(move || {
            assert!(!r3.cancel());
            ret.store(true, SeqCst);
            z2.is_cancelled()
        });
        thread::sleep(SETTLE);
        assert!(
            !returned.load(SeqCst),
            "r.cancel() returned while z was held"
        );
        gate.open();
        assert!(
            h.join().unwrap(),
            "z not cancelled when r.cancel() returned"
        );
        t.join().unwrap();
    });
}

/// The owner of a pinned child parks on its entry while a top-level adopter holds it `TAKEN`
/// (waiting for the owner's own walk of that child to end): the adopter's release wakes it.
#[test]
fn pinned_owner_parks_on_an_entry_held_by_a_waiting_adopter() {
    must_finish("owner parked on adopter", || {
        for _ in 0..20 {
            let r = CancelSource::new();
            let c = Arc::new(r.child());
            let gate = Gate::new();
            thread::scope(|s| {
                let (cc, g) = (&c, gate.clone());
                let t = s.spawn(move || {
                    let mut y = pin!(ChildNode::new(cc));
                    let y = y.as_mut().link();
                    let mut z = pin!(ChildNode::new(y));
                    let z = z.as_mut().link();
                    let mut cb = pin!(Callback::new(y, g.hold()));
                    cb.as_mut().register();
                    assert!(y.cancel());
                    assert!(z.is_cancelled());
                    // y, z and cb drop here: y's entry in c is TAKEN by the adopter below
                    // (waiting for this very walk), so the drop parks until it is released.
                });
                gate.wait_entered();
                let c2 = c.clone();
                nested(move || {
                    c2.cancel_with(Reason::Code(2));
                });
                let c3 = c.clone();
                let adopter = s.spawn(move || assert!(!c3.cancel()));
                thread::sleep(Duration::from_millis(5));
                gate.open();
                t.join().unwrap();
                adopter.join().unwrap();
            });
            assert!(!c.has_children());
        }
    });
}

/// A pinned `AnyOf` (with a pinned child being walked by T) is abandoned by a nested cancel of
/// one parent; the child's owner (T) drops the child, then the `AnyOf` itself is dropped while
/// its link in p1 is still deferred (p1 abandoned): both links unlink, and a later losing
/// `p1.cancel()` adopts an empty p1 and returns.
#[test]
fn pinned_any_of_abandoned_then_dropped_by_its_owner() {
    must_finish("pinned any_of abandoned and dropped", || {
        let p1 = Arc::new(CancelSource::new());
        let p2 = CancelSource::new();
        let gate = Gate::new();
        {
            let (v1, v2): (&NodeView, &NodeView) = (&p1, &p2);
            let mut m = pin!(AnyOf::new([v1, v2]));
            let m = m.as_mut().link();
            thread::scope(|s| {
                let g = gate.clone();
                let t = s.spawn(move || {
                    let mut y = pin!(ChildNode::new(m));
                    let y = y.as_mut().link();
                    let mut cb = pin!(Callback::new(y, g.hold()));
                    cb.as_mut().register();
                    assert!(y.cancel());
                });
                gate.wait_entered();
                let p = p1.clone();
                nested(move || {
                    p.cancel_with(Reason::Code(2));
                });
                assert_eq!(m.reason(), Some(Reason::Code(2)));
                gate.open();
                t.join().unwrap();
            });
            assert!(!m.has_children());
        } // m drops: its link in p1 is deferred, the one in p2 linked
        assert!(!p1.has_children());
        assert!(!p2.has_children());
        assert!(!p1.cancel());
        assert!(p2.cancel());
    });
}

/// A nested cancel made by dropping a `DropGuard` inside a callback abandons c like an explicit
/// cancel; the source inside the guard is dropped right after (c lives on through y).
#[test]
fn drop_guard_dropped_inside_a_callback_abandons() {
    must_finish("drop guard nested", || {
        let r = Arc::new(CancelSource::new());
        let c = r.child();
        let y = Arc::new(c.child());
        let z = y.child();
        let gate = Gate::new();
        let _slow = on_cancel_boxed(&y, gate.hold());
        let y2 = y.clone();
        let t = thread::spawn(move || assert!(y2.cancel()));
        gate.wait_entered();
        let guard = c.drop_guard();
        nested(move || drop(guard));
        assert!(!z.is_cancelled());
        let returned = Arc::new(AtomicBool::new(false));
        let (r2, ret) = (r.clone(), returned.clone());
        let zc = Arc::new(z);
        let z2 = zc.clone();
        let h = thread::spawn(move || {
            assert!(r2.cancel());
            ret.store(true, SeqCst);
            z2.is_cancelled()
        });
        thread::sleep(SETTLE);
        assert!(!returned.load(SeqCst));
        gate.open();
        assert!(h.join().unwrap());
        t.join().unwrap();
        drop(zc);
        drop(_slow);
        drop(y);
        assert!(!r.has_children());
    });
}

/// The adopter runs a panicking join waker on the abandoned node (the join entry sits in front
/// of the deferred one): the panic is caught, the adoption goes on and waits for y, and the
/// panic comes out of the adopter's `cancel()` only after z is cancelled.
#[test]
fn adopter_runs_a_panicking_join_waker() {
    struct Boom;
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            panic!("expected test panic: join waker in adoption");
        }
    }
    must_finish("panicking waker during adoption", || {
        quiet();
        let r = CancelSource::new();
        let c = Arc::new(r.child());
        let y = Arc::new(c.child());
        let z = Arc::new(y.child());
        let gate = Gate::new();
        let _slow = on_cancel_boxed(&y, gate.hold());
        let y2 = y.clone();
        let t = thread::spawn(move || assert!(y2.cancel()));
        gate.wait_entered();
        let c2 = c.clone();
        nested(move || {
            c2.cancel();
        });
        let mut join = Box::pin(c.join());
        assert!(poll_once(join.as_mut(), &Waker::from(Arc::new(Boom))).is_pending());
        let (c3, z2) = (c.clone(), z.clone());
        let h = thread::spawn(move || {
            let res = catch_unwind(AssertUnwindSafe(|| c3.cancel()));
            (res.is_err(), z2.is_cancelled())
        });
        thread::sleep(SETTLE);
        assert!(!h.is_finished(), "the adopter returned while z was held");
        gate.open();
        let (panicked, z_done) = h.join().unwrap();
        // The walker does not wake join waiters any more (they wait for the last child, not
        // for the cancellation: review F2), so the adopter never runs this waker.
        assert!(!panicked, "the adopter ran a join waker");
        assert!(
            z_done,
            "z not cancelled when the adopter's cancel() returned"
        );
        t.join().unwrap();
        let w = CountingWaker::new();
        assert!(poll_once(join.as_mut(), &w.waker()).is_pending()); // y still alive
    });
}

/// Three threads: T walks y (held), U cancels c nested (abandons it), and two top-level
/// cancels, of r and of c, start at the same time as U: whatever the order, both return only
/// once z is cancelled.
#[test]
fn nested_abandon_racing_two_top_level_cancels() {
    must_finish("abandon vs two top-level cancels", || {
        for _ in 0..50 {
            let r = Arc::new(CancelSource::new());
            let c = Arc::new(r.child());
            let y = Arc::new(c.child());
            let z = Arc::new(y.child());
            let gate = Gate::new();
            let _slow = on_cancel_boxed(&y, gate.hold());
            let y2 = y.clone();
            let t = thread::spawn(move || assert!(y2.cancel()));
            gate.wait_entered();
            let start = Arc::new(Barrier::new(3));
            let (c1, b1) = (c.clone(), start.clone());
            let u = thread::spawn(move || {
                b1.wait();
                nested(move || {
                    c1.cancel_with(Reason::Code(2));
                });
            });
            let spawn_top = |f: Box<dyn FnOnce() + Send>| {
                let (b, z) = (start.clone(), z.clone());
                thread::spawn(move || {
                    b.wait();
                    f();
                    z.is_cancelled()
                })
            };
            let (r2, c2) = (r.clone(), c.clone());
            let a = spawn_top(Box::new(move || {
                r2.cancel();
            }));
            let b = spawn_top(Box::new(move || {
                c2.cancel();
            }));
            thread::sleep(Duration::from_millis(20));
            u.join().unwrap();
            assert!(!a.is_finished() && !b.is_finished());
            gate.open();
            assert!(
                a.join().unwrap(),
                "r.cancel() returned before z was cancelled"
            );
            assert!(
                b.join().unwrap(),
                "c.cancel() returned before z was cancelled"
            );
            t.join().unwrap();
        }
    });
}

fn quiet() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                .unwrap_or_default();
            if !msg.starts_with("expected test panic") {
                prev(info);
            }
        }));
    });
}
