//! Adversarial review: deferred entries, abandoned nodes and adoption (walk.rs, DESIGN.md
//! section 5) on real threads, driven deterministically.
//!
//! Sound: every test in this file passed on the reviewed code (82fc2fe); they are kept as
//! regression tests of the deferral / adoption protocol.
//!
//! The shape is adv5's, made deterministic with a gate instead of a sleep: r -> c -> y -> z
//! (heap nodes). Thread T cancels y; y's callback (newer than z, so it runs before the walk
//! reaches z) blocks on the gate, so y stays `WALKING` with z not cancelled yet. The main
//! thread then cancels c from inside a callback of an unrelated node (a nested walk, which may
//! not wait): it defers y's entry in c and leaves c `ABANDONED`. Each test then does one more
//! thing to the abandoned node (adopt it from two threads, drop handles, join, panic, ...) and
//! checks the documented guarantees: a `cancel()` made outside every callback returns only when
//! every descendant is cancelled; nothing leaks (`has_children()` is false once the handles are
//! gone); nothing hangs (`must_finish`).
//!
//! Run: cargo test -p cutoff-tests --release --test review_deferral

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use cutoff::{Callback, CancelSource, ChildNode, OnCancel, Reason, Trigger};
use cutoff_tests::{CountingWaker, must_finish, poll_once};

/// Holds a walk inside a callback until opened.
#[derive(Default)]
struct Gate {
    entered: AtomicBool,
    open: AtomicBool,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// A callback that enters the gate and blocks until it is opened.
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

/// How long to let a call that must block run before checking that it has not returned.
const SETTLE: Duration = Duration::from_millis(100);

type Reg = OnCancel<Box<dyn FnOnce(&Reason) + Send>>;

/// r -> c -> y -> z, y being walked by thread T and held in its callback, c abandoned by a
/// nested cancel on the calling thread.
struct Abandoned {
    r: Arc<CancelSource>,
    c: Arc<CancelSource>,
    y: Arc<CancelSource>,
    z: Arc<CancelSource>,
    gate: Arc<Gate>,
    t: thread::JoinHandle<()>,
    _slow: Reg,
}

fn on_cancel_boxed(s: &CancelSource, f: impl FnOnce(&Reason) + Send + 'static) -> Reg {
    s.on_cancel(Box::new(f) as Box<dyn FnOnce(&Reason) + Send>)
}

/// Cancel `target` from inside a callback (a nested walk), on this thread.
fn nested_cancel(target: &Arc<CancelSource>, reason: Reason) {
    let n = CancelSource::new();
    let t = target.clone();
    let _reg = on_cancel_boxed(&n, move |_| {
        t.cancel_with(reason);
    });
    assert!(n.cancel());
}

fn abandoned() -> Abandoned {
    let r = Arc::new(CancelSource::new());
    let c = Arc::new(r.child());
    let y = Arc::new(c.child());
    let z = Arc::new(y.child()); // older than the slow callback: reached after it
    let gate = Gate::new();
    let slow = on_cancel_boxed(&y, gate.hold());
    let y2 = y.clone();
    let t = thread::spawn(move || {
        assert!(y2.cancel_with(Reason::Code(1)));
    });
    gate.wait_entered();
    nested_cancel(&c, Reason::Code(2));
    assert!(c.is_cancelled());
    assert!(!z.is_cancelled(), "z is held behind y's callback");
    Abandoned {
        r,
        c,
        y,
        z,
        gate,
        t,
        _slow: slow,
    }
}

/// Run `f` on a thread; check it is still blocked after `SETTLE`, open the gate, and return
/// whether `z` was cancelled at the moment `f` returned.
fn blocks_until_gate(a: &Abandoned, f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<bool> {
    let z = a.z.clone();
    let returned = Arc::new(AtomicBool::new(false));
    let ret = returned.clone();
    let h = thread::spawn(move || {
        f();
        ret.store(true, SeqCst);
        z.is_cancelled()
    });
    thread::sleep(SETTLE);
    assert!(
        !returned.load(SeqCst),
        "a top-level cancel returned while z was still held (not cancelled)"
    );
    h
}

#[test]
fn top_level_cancel_of_the_root_adopts_and_waits() {
    must_finish("adopt from the root", || {
        let a = abandoned();
        let r = a.r.clone();
        let h = blocks_until_gate(&a, move || {
            assert!(r.cancel_with(Reason::Code(3)));
        });
        a.gate.open();
        assert!(
            h.join().unwrap(),
            "z not cancelled when r.cancel() returned"
        );
        a.t.join().unwrap();
        assert_eq!(a.z.reason(), Some(Reason::Code(1)));
        assert_eq!(a.c.reason(), Some(Reason::Code(2)));
    });
}

#[test]
fn two_losing_cancels_race_to_adopt_the_abandoned_node() {
    must_finish("two adopters", || {
        let a = abandoned();
        let c1 = a.c.clone();
        let c2 = a.c.clone();
        let h1 = blocks_until_gate(&a, move || assert!(!c1.cancel()));
        let h2 = blocks_until_gate(&a, move || assert!(!c2.cancel()));
        a.gate.open();
        assert!(
            h1.join().unwrap(),
            "z not cancelled when the first c.cancel() returned"
        );
        assert!(
            h2.join().unwrap(),
            "z not cancelled when the second c.cancel() returned"
        );
        a.t.join().unwrap();
    });
}

#[test]
fn losing_cancel_of_the_abandoned_node_and_top_level_root_cancel_race() {
    must_finish("adopter vs root walker", || {
        let a = abandoned();
        let c = a.c.clone();
        let r = a.r.clone();
        let h1 = blocks_until_gate(&a, move || assert!(!c.cancel()));
        let h2 = blocks_until_gate(&a, move || assert!(r.cancel()));
        a.gate.open();
        assert!(h1.join().unwrap());
        assert!(h2.join().unwrap());
        a.t.join().unwrap();
    });
}

/// The owners drop every handle of the abandoned part while it is abandoned: the deferred
/// entry is removed by its owner when y goes, c is freed once y is, and r ends childless.
#[test]
fn owners_drop_the_abandoned_subtree() {
    must_finish("drop abandoned subtree", || {
        let Abandoned {
            r,
            c,
            y,
            z,
            gate,
            t,
            _slow,
        } = abandoned();
        drop(c); // c lives on through y's reference
        drop(z);
        drop(y); // T still holds a handle (it is inside y.cancel())
        assert!(r.has_children());
        gate.open();
        t.join().unwrap(); // T drops its handle of y: y, then c, are freed
        drop(_slow);
        assert!(
            !r.has_children(),
            "c leaked (or was not unlinked) after its last handle"
        );
        assert!(r.cancel());
    });
}

/// Same, while a top-level `r.cancel()` has adopted c and waits (holding y's entry) for T's
/// walk of y: the owners drop c and z meanwhile; y's last handle (T's) then drops, which waits
/// for the adopter's release, and the adopter frees c (its last reference is the walker's).
#[test]
fn owners_drop_handles_while_an_adopter_waits() {
    must_finish("drop while adopting", || {
        let Abandoned {
            r,
            c,
            y,
            z,
            gate,
            t,
            _slow,
        } = abandoned();
        // A join waiter on c makes the adopter run a wake-up on c, i.e. take the walker's
        // reference on it (`hold_for_walker`), before it meets y.
        let jw = CountingWaker::new();
        let mut join = Box::pin(c.join());
        assert!(poll_once(join.as_mut(), &jw.waker()).is_pending());
        let r2 = r.clone();
        let h = thread::spawn(move || assert!(r2.cancel()));
        thread::sleep(SETTLE);
        drop(join);
        drop(c);
        drop(z);
        drop(y);
        gate.open();
        drop(_slow); // after the gate: its drop waits for the callback running on T
        t.join().unwrap();
        h.join().unwrap();
        assert!(!r.has_children());
    });
}

/// A join future on the abandoned node: it completes once y (its last child) is gone, whether
/// or not an adopter walks c meanwhile (the adopter's wake-up of it is spurious).
#[test]
fn join_on_an_abandoned_node() {
    must_finish("join abandoned", || {
        let Abandoned {
            r,
            c,
            y,
            z,
            gate,
            t,
            _slow,
        } = abandoned();
        let jw = CountingWaker::new();
        let mut join = Box::pin(c.join());
        assert!(poll_once(join.as_mut(), &jw.waker()).is_pending());
        let c2 = c.clone();
        let adopter = thread::spawn(move || assert!(!c2.cancel()));
        thread::sleep(SETTLE);
        gate.open();
        adopter.join().unwrap();
        t.join().unwrap();
        assert!(z.is_cancelled());
        assert!(
            poll_once(join.as_mut(), &jw.waker()).is_pending(),
            "y is still alive"
        );
        let before = jw.count();
        drop(z);
        drop(_slow);
        drop(y);
        assert!(
            jw.count() > before,
            "the last child's drop must wake the join waiter"
        );
        assert_eq!(poll_once(join.as_mut(), &jw.waker()), Poll::Ready(()));
        drop(join);
        drop(c);
        assert!(!r.has_children());
    });
}

/// A heap `any_of` node under p1 and p2: a nested cancel of p1 abandons it (its child y is
/// being walked elsewhere) and p1; a top-level cancel of p2 adopts it through the other link
/// and waits for y's walk. Everything is freed at the end.
#[test]
fn any_of_abandoned_through_one_parent_adopted_through_the_other() {
    must_finish("any_of adoption", || {
        let p1 = Arc::new(CancelSource::new());
        let p2 = Arc::new(CancelSource::new());
        let m = CancelSource::any_of([&p1.token(), &p2.token()]);
        let y = Arc::new(m.child());
        let z = y.child();
        let gate = Gate::new();
        let slow = on_cancel_boxed(&y, gate.hold());
        let y2 = y.clone();
        let t = thread::spawn(move || assert!(y2.cancel_with(Reason::Code(1))));
        gate.wait_entered();
        nested_cancel(&p1, Reason::Code(2));
        assert_eq!(m.reason(), Some(Reason::Code(2)));
        assert!(!z.is_cancelled());
        let p = p2.clone();
        let zc = Arc::new(z);
        let z2 = zc.clone();
        let returned = Arc::new(AtomicBool::new(false));
        let ret = returned.clone();
        let h = thread::spawn(move || {
            assert!(p.cancel_with(Reason::Code(3)));
            ret.store(true, SeqCst);
            z2.is_cancelled()
        });
        thread::sleep(SETTLE);
        assert!(
            !returned.load(SeqCst),
            "p2.cancel() returned while z was held"
        );
        gate.open();
        assert!(
            h.join().unwrap(),
            "z not cancelled when p2.cancel() returned"
        );
        t.join().unwrap();
        // p1 is still abandoned (its deferred link to m): a losing top-level cancel finishes it.
        assert!(!p1.cancel());
        drop(zc);
        drop(slow);
        drop(y);
        drop(m);
        assert!(!p1.has_children());
        assert!(!p2.has_children());
    });
}

/// y is a pinned child on T's stack (with a pinned grandchild); after the nested cancel has
/// deferred y's entry in c, T's cancel returns and T drops y: its owner removes the deferred
/// entry. A losing cancel of c afterwards adopts an empty node and returns.
#[test]
fn pinned_deferred_child_dropped_by_its_owner() {
    must_finish("pinned deferred child", || {
        let r = CancelSource::new();
        let c = Arc::new(r.child());
        let gate = Gate::new();
        let linked = Arc::new(AtomicBool::new(false));
        thread::scope(|s| {
            let (cc, g, l) = (&c, gate.clone(), linked.clone());
            let t = s.spawn(move || {
                let mut y = pin!(ChildNode::new(cc));
                let y = y.as_mut().link();
                let mut z = pin!(ChildNode::new(y));
                let z = z.as_mut().link();
                let mut cb = pin!(Callback::new(y, g.hold()));
                cb.as_mut().register();
                l.store(true, SeqCst);
                assert!(y.cancel());
                assert!(z.is_cancelled());
            });
            gate.wait_entered();
            assert!(linked.load(SeqCst));
            nested_cancel(&c, Reason::Code(2));
            gate.open();
            t.join().unwrap();
        });
        assert!(!c.has_children());
        assert!(!c.cancel());
        assert!(r.cancel());
    });
}

/// The nesting depth is per thread and balanced even when a callback panics (caught by the
/// walk, resumed from `cancel()`), also a panic from a nested walk's callback propagating
/// through an outer callback: afterwards a top-level cancel on this thread still waits.
#[test]
fn panics_do_not_leave_the_thread_nested() {
    must_finish("depth after panics", || {
        quiet();
        // A panicking callback in a top-level walk.
        let q = CancelSource::new();
        let _p = on_cancel_boxed(&q, |_| panic!("expected test panic 1"));
        assert!(catch_unwind(AssertUnwindSafe(|| q.cancel())).is_err());
        // A panicking callback in a nested walk (inside a callback of an outer walk).
        let outer = CancelSource::new();
        let inner = Arc::new(CancelSource::new());
        let _pi = on_cancel_boxed(&inner, |_| panic!("expected test panic 2"));
        let i2 = inner.clone();
        let _po = on_cancel_boxed(&outer, move |_| {
            i2.cancel();
        });
        assert!(catch_unwind(AssertUnwindSafe(|| outer.cancel())).is_err());
        assert!(inner.is_cancelled());

        // Now the abandoned shape, built with the nested cancel on another thread, and a
        // top-level cancel of the root on this thread: it must wait for the gate.
        let r = CancelSource::new();
        let c = Arc::new(r.child());
        let y = Arc::new(c.child());
        let z = y.child();
        let gate = Gate::new();
        let _slow = on_cancel_boxed(&y, gate.hold());
        let y2 = y.clone();
        let t = thread::spawn(move || assert!(y2.cancel()));
        gate.wait_entered();
        let c2 = c.clone();
        thread::spawn(move || nested_cancel(&c2, Reason::Code(2)))
            .join()
            .unwrap();
        let g = gate.clone();
        let opener = thread::spawn(move || {
            thread::sleep(SETTLE);
            g.open();
        });
        assert!(r.cancel());
        assert!(
            z.is_cancelled(),
            "r.cancel() on a thread that saw callback panics returned early: depth leaked"
        );
        opener.join().unwrap();
        t.join().unwrap();
    });
}

/// The nested walk that abandons c also runs a panicking callback of c (newer than y, so it
/// runs first): the panic comes out of the nested `cancel()` inside n's callback, is caught by
/// n's walk and resumed from `n.cancel()`. c is left abandoned all the same, and a later
/// top-level cancel of r adopts it and waits.
#[test]
fn a_panic_in_the_walk_that_abandons() {
    must_finish("panic while abandoning", || {
        quiet();
        let r = CancelSource::new();
        let c = Arc::new(r.child());
        let y = Arc::new(c.child());
        let z = Arc::new(y.child());
        let gate = Gate::new();
        let _slow = on_cancel_boxed(&y, gate.hold());
        let _boom = on_cancel_boxed(&c, |_| panic!("expected test panic 3"));
        let y2 = y.clone();
        let t = thread::spawn(move || assert!(y2.cancel()));
        gate.wait_entered();
        let n = CancelSource::new();
        let c2 = c.clone();
        let _reg = on_cancel_boxed(&n, move |_| {
            c2.cancel();
        });
        assert!(catch_unwind(AssertUnwindSafe(|| n.cancel())).is_err());
        assert!(c.is_cancelled() && !z.is_cancelled());
        let z2 = z.clone();
        let returned = Arc::new(AtomicBool::new(false));
        let ret = returned.clone();
        let h = thread::spawn(move || {
            assert!(r.cancel());
            ret.store(true, SeqCst);
            z2.is_cancelled()
        });
        thread::sleep(SETTLE);
        assert!(!returned.load(SeqCst));
        gate.open();
        assert!(h.join().unwrap());
        t.join().unwrap();
    });
}

/// c's own callback (run by the nested walk before it meets y) drops every handle of c: the
/// nested walker's reference keeps c alive until it abandons c, then y's reference does; c is
/// freed when y goes. Nothing leaks, nothing is freed twice.
#[test]
fn the_abandoning_walk_runs_a_callback_that_drops_the_last_handle() {
    must_finish("last handle dropped inside the abandoning walk", || {
        let r = CancelSource::new();
        let c = r.child();
        let y = Arc::new(c.child());
        let z = y.child();
        let gate = Gate::new();
        let _slow = on_cancel_boxed(&y, gate.hold());
        let y2 = y.clone();
        let t = thread::spawn(move || assert!(y2.cancel()));
        gate.wait_entered();
        // c's handles: `c` (moved into the slot) and the registration's token.
        type Slot = Arc<Mutex<Option<(CancelSource, Option<Reg>)>>>;
        let slot: Slot = Arc::new(Mutex::new(None));
        let s2 = slot.clone();
        let reg = on_cancel_boxed(&c, move |_| {
            let taken = s2.lock().unwrap().take();
            drop(taken); // drops `c` and this very registration (from inside its callback)
        });
        // The nested canceller fires a `Trigger` (itself a handle of c, dropped right after).
        let trigger = Trigger::from_source(&c);
        *slot.lock().unwrap() = Some((c, Some(reg)));
        let n = CancelSource::new();
        let _nreg = on_cancel_boxed(&n, move |_| {
            trigger.fire(Reason::Code(2));
            drop(trigger);
        });
        assert!(n.cancel());
        assert!(slot.lock().unwrap().is_none());
        assert!(!z.is_cancelled());
        gate.open();
        t.join().unwrap();
        drop(z);
        drop(_slow);
        drop(y);
        assert!(!r.has_children(), "c leaked");
        assert!(r.cancel());
    });
}

/// A registration shared between its own callback and another thread, both dropping it at
/// once: whichever takes it drops it; the other finds nothing. The callback runs once and
/// nothing hangs (a drop on the other thread waits for the run, a drop inside does not).
#[test]
fn registration_dropped_inside_its_callback_and_outside_at_once() {
    must_finish("double drop race", || {
        for _ in 0..200 {
            let src = Arc::new(CancelSource::new());
            let slot: Arc<Mutex<Option<Reg>>> = Arc::new(Mutex::new(None));
            let runs = Arc::new(AtomicUsize::new(0));
            let (s2, r2) = (slot.clone(), runs.clone());
            let reg = on_cancel_boxed(&src, move |_| {
                r2.fetch_add(1, SeqCst);
                let taken = s2.lock().unwrap().take();
                drop(taken);
            });
            *slot.lock().unwrap() = Some(reg);
            let s3 = slot.clone();
            let other = thread::spawn(move || {
                let taken = s3.lock().unwrap().take();
                drop(taken);
            });
            let s = src.clone();
            let canceller = thread::spawn(move || assert!(s.cancel()));
            other.join().unwrap();
            canceller.join().unwrap();
            assert!(runs.load(SeqCst) <= 1);
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
