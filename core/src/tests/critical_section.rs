//! The node lock as a critical section (`critical-section` feature), on the host with the
//! `critical-section` crate's `std` implementation (a global reentrant mutex: one thread at a
//! time is inside, the others block in `acquire`, as an interrupt is held off on one core).
//!
//! Every test checks that the lock depth (node locks this thread holds, node.rs module `cs`)
//! is back to 0 afterwards, and records the depth wherever user code runs: it must be 0 there.
//! A leaked depth fails the leaking thread's next check; any other thread would block in
//! `critical_section::acquire` (a hang, not a silent pass).
#![allow(clippy::std_instead_of_core, clippy::undocumented_unsafe_blocks)]

use core::pin::pin;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::boxed::Box;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;
use std::vec::Vec;

use crate::lock::lock_depth;
use crate::{AnyOf, Callback, CancelSource, ChildNode, Node, Reason};

/// Depths seen by user code; each must be 0.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u32>>>);

impl Seen {
    fn record(&self) {
        let d = lock_depth();
        self.0.lock().unwrap().push(d);
    }

    /// How many times user code ran, after checking it never ran with a lock held.
    fn check(&self) -> usize {
        let v = self.0.lock().unwrap();
        assert!(
            v.iter().all(|&d| d == 0),
            "user code ran with locks held: {v:?}"
        );
        v.len()
    }
}

fn assert_unlocked() {
    assert_eq!(lock_depth(), 0, "a node lock is still counted");
}

/// A pinned chain `depth` deep under `parent`, built by recursion, then `f` on the deepest.
fn pinned_chain(parent: &Node, depth: usize, f: &mut dyn FnMut(&Node)) {
    let mut c = pin!(ChildNode::new(parent));
    let c = c.as_mut().link();
    if depth == 1 {
        f(c);
    } else {
        pinned_chain(c, depth - 1, f);
    }
}

#[test]
fn depth_returns_to_zero_after_walking_deep_heap_chains() {
    // Hand over hand down a 20 000-deep chain, each node with one extra leaf (so every step
    // takes the inner path and the leaf path) and the last with many leaves.
    let root = CancelSource::new();
    let mut chain = Vec::new();
    let mut leaves = Vec::new();
    let mut cur = root.child();
    for _ in 0..20_000 {
        leaves.push(cur.child());
        let next = cur.child();
        chain.push(core::mem::replace(&mut cur, next));
    }
    for _ in 0..1_000 {
        leaves.push(cur.child());
    }
    assert_unlocked();
    assert!(root.cancel_with(Reason::Code(3)));
    assert_unlocked();
    assert!(
        chain
            .iter()
            .chain(&leaves)
            .all(|n| n.reason() == Some(Reason::Code(3)))
    );
    assert_eq!(cur.reason(), Some(Reason::Code(3)));
    // Dropping in creation order frees each node's parent late; reversed, each free climbs.
    drop(chain);
    drop(leaves);
    drop(cur);
    assert!(!root.has_children());
    assert_unlocked();
}

#[test]
fn depth_returns_to_zero_after_walking_pinned_chains_and_any_of() {
    static ROOT: Node = Node::new();
    let other = Node::new();
    let seen = Seen::default();
    let s = seen.clone();
    pinned_chain(&ROOT, 300, &mut |deepest| {
        // A multi-parent node under the deepest pinned node and a local root, with a callback.
        let mut any = pin!(AnyOf::new([deepest, &*other]));
        let any = any.as_mut().link();
        let s = s.clone();
        let mut cb = pin!(Callback::new(any, move |_: &Reason| s.record()));
        assert!(cb.as_mut().register());
        assert_unlocked();
        assert!(ROOT.cancel_with(Reason::Shutdown));
        assert_unlocked();
        assert_eq!(any.reason(), Some(Reason::Shutdown));
        assert!(!other.is_cancelled());
    });
    assert_eq!(seen.check(), 1);
    assert!(!ROOT.has_children());
    assert_unlocked();
}

#[test]
fn callbacks_that_create_and_cancel_nodes_run_with_no_lock_held() {
    let root = Node::new();
    let sibling = CancelSource::new();
    let sib_child = sibling.child();
    let seen = Seen::default();
    let created = Arc::new(AtomicUsize::new(0));

    let mut a = pin!(ChildNode::new(&root));
    let a = a.as_mut().link();

    // On `a`: a child of the cancelled node (born cancelled), a fresh tree cancelled from
    // inside the callback (a nested walk on this thread), and a cancel of an unrelated tree.
    let (s, c) = (seen.clone(), created.clone());
    let sib = sibling.clone_handle();
    let mut cb1 = pin!(Callback::new(a, move |_: &Reason| {
        s.record();
        let fresh = CancelSource::new();
        let kid = fresh.child();
        let s2 = s.clone();
        let on = kid.on_cancel(move |_: &Reason| s2.record());
        assert!(fresh.cancel());
        assert!(kid.is_cancelled());
        assert!(!on.is_registered());
        let late = fresh.child();
        assert!(late.is_cancelled());
        assert!(sib.cancel_with(Reason::Code(8)));
        s.record();
        c.fetch_add(1, SeqCst);
    }));
    assert!(cb1.as_mut().register());

    // A scoped callback on the root that registers another callback on the (cancelled) root:
    // that one runs inline, in `register`.
    let s = seen.clone();
    root.with_callback(
        |_: &Reason| {
            s.record();
            let s2 = s.clone();
            let mut inner = pin!(Callback::new(&root, move |_: &Reason| s2.record()));
            assert!(!inner.as_mut().register());
            let s3 = s.clone();
            let mut r = pin!(ChildNode::new(&root));
            let r = r.as_mut().link();
            assert!(r.is_cancelled());
            r.with_callback(|_: &Reason| s3.record(), || ());
        },
        || {
            assert_unlocked();
            assert!(root.cancel());
            assert_unlocked();
        },
    );
    assert_eq!(created.load(SeqCst), 1);
    assert_eq!(sib_child.reason(), Some(Reason::Code(8)));
    // cb1 (twice), its OnCancel, the scoped one, the inline one, the inline scoped one.
    assert_eq!(seen.check(), 6);
    assert_unlocked();
}

/// A waker that records the lock depth whenever it is cloned, woken or dropped.
fn probe_waker(seen: &Seen) -> Waker {
    fn seen_of(p: *const ()) -> &'static Seen {
        // SAFETY: `p` came from `Arc::into_raw` and the count is still above 0.
        unsafe { &*p.cast::<Seen>() }
    }
    unsafe fn clone(p: *const ()) -> RawWaker {
        seen_of(p).record();
        // SAFETY: as in `seen_of`.
        unsafe { Arc::increment_strong_count(p.cast::<Seen>()) };
        RawWaker::new(p, &VTABLE)
    }
    unsafe fn wake(p: *const ()) {
        seen_of(p).record();
        // SAFETY: consumes this waker's count.
        drop(unsafe { Arc::from_raw(p.cast::<Seen>()) });
    }
    unsafe fn wake_by_ref(p: *const ()) {
        seen_of(p).record();
    }
    unsafe fn drop_waker(p: *const ()) {
        seen_of(p).record();
        // SAFETY: consumes this waker's count.
        drop(unsafe { Arc::from_raw(p.cast::<Seen>()) });
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);
    let p = Arc::into_raw(Arc::new(seen.clone())).cast::<()>();
    // SAFETY: the vtable implements the `RawWaker` contract over an `Arc<Seen>`.
    unsafe { Waker::from_raw(RawWaker::new(p, &VTABLE)) }
}

#[test]
fn waiters_and_joiners_are_woken_with_no_lock_held() {
    let seen = Seen::default();
    let w1 = probe_waker(&seen);
    let w2 = probe_waker(&seen);
    let root = CancelSource::new();
    let child = root.child();

    // A join waiter, woken when the last child goes.
    let mut j = pin!(root.join());
    assert!(j.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
    assert_unlocked();
    {
        // Cancellation waiters: first poll, re-poll with another waker (swap), then a cancel.
        let mut f1 = pin!(child.cancelled());
        let mut f2 = pin!(root.cancelled());
        assert!(f1.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        assert!(f1.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        assert!(f2.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        assert_unlocked();

        assert!(root.cancel());
        assert_unlocked();
        let mut cx = Context::from_waker(&w1);
        assert_eq!(f1.as_mut().poll(&mut cx), Poll::Ready(Reason::Requested));
        assert_eq!(f2.as_mut().poll(&mut cx), Poll::Ready(Reason::Requested));
    }
    drop(child);
    assert_unlocked();
    assert_eq!(
        j.as_mut().poll(&mut Context::from_waker(&w1)),
        Poll::Ready(())
    );
    drop((w1, w2));
    assert_unlocked();
    assert!(seen.check() >= 8);
}

#[test]
fn drops_of_heap_and_pinned_nodes_and_registrations_leave_no_lock_held() {
    let seen = Seen::default();
    let waker = probe_waker(&seen);
    let mut cx = Context::from_waker(&waker);
    {
        // Pinned: children, a registered callback and a polled waiter dropped while linked.
        let root = Node::new();
        let mut a = pin!(ChildNode::new(&root));
        let a = a.as_mut().link();
        {
            let mut b = pin!(ChildNode::new(a));
            let b = b.as_mut().link();
            let s = seen.clone();
            let mut cb = pin!(Callback::new(b, move |_: &Reason| s.record()));
            assert!(cb.as_mut().register());
            let mut f = pin!(b.cancelled());
            assert!(f.as_mut().poll(&mut cx).is_pending());
            assert_unlocked();
        }
        assert_unlocked();
        assert!(!a.has_children());
    }
    assert_unlocked();

    // Heap: a chain freed from the top (each free climbs), tokens, an `OnCancel` and a
    // `DropGuard` that cancels on drop.
    let top = CancelSource::new();
    let mut v = Vec::new();
    let mut cur = top.child();
    for _ in 0..1_000 {
        let next = cur.child();
        v.push(core::mem::replace(&mut cur, next));
    }
    let tok = cur.token();
    let s = seen.clone();
    let on = tok.on_cancel(move |_: &Reason| s.record());
    drop(top);
    drop(v);
    drop(cur);
    assert_unlocked();
    drop(on);
    drop(tok);
    assert_unlocked();
    let guard = CancelSource::new().drop_guard();
    let t = guard.source().token();
    drop(guard);
    assert!(t.is_cancelled());
    assert_unlocked();

    // A callback that drops the last handle of its own node: the walker frees it.
    type Slot = Arc<Mutex<Option<crate::OnCancel<Box<dyn FnOnce(&Reason) + Send>>>>>;
    let root = CancelSource::new();
    let leaf = root.child().child();
    let slot: Slot = Arc::new(Mutex::new(None));
    let (slot2, s) = (slot.clone(), seen.clone());
    let reg = leaf.token().on_cancel(Box::new(move |_: &Reason| {
        s.record();
        drop(slot2.lock().unwrap().take());
        s.record();
    }) as Box<dyn FnOnce(&Reason) + Send>);
    *slot.lock().unwrap() = Some(reg);
    drop(leaf);
    root.cancel();
    assert_unlocked();
    assert!(!root.has_children());

    // A multi-parent heap node dropped while linked.
    let (p1, p2) = (CancelSource::new(), CancelSource::new());
    let any = CancelSource::any_of([&p1.token(), &p2.token()]);
    drop(any);
    assert!(!p1.has_children() && !p2.has_children());
    assert_unlocked();
    drop(waker);
    seen.check();
}

/// The "interrupt" (another thread) cancels while the "interrupted code" (this thread) holds a
/// node lock: it must not get in until the lock is released, even for an unrelated node,
/// exactly as an interrupt is held off by a masked critical section on one core.
#[test]
fn an_interrupt_cancel_waits_until_the_lock_is_released() {
    let held = Arc::new(CancelSource::new());
    let other = Arc::new(CancelSource::new());
    let (started_tx, started_rx) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));

    let guard = held.lock();
    // Nothing may panic while the lock is held (the critical section would never be left and
    // every other test would block), so look first and assert after the unlock.
    let depth = lock_depth();
    let isr = {
        let (held, other, done) = (held.clone(), other.clone(), done.clone());
        thread::spawn(move || {
            started_tx.send(()).unwrap();
            assert!(other.cancel_with(Reason::Code(1)));
            assert!(held.cancel_with(Reason::Code(2)));
            done.store(true, SeqCst);
            assert_eq!(lock_depth(), 0);
        })
    };
    let started = started_rx.recv_timeout(Duration::from_secs(10)).is_ok();
    thread::sleep(Duration::from_millis(100));
    // Still inside our critical section: the "interrupt" must not have run at all.
    let ran_early = done.load(SeqCst) || other.is_cancelled() || held.is_cancelled();
    drop(guard);
    assert_unlocked();
    assert_eq!(depth, 1);
    assert!(started);
    assert!(
        !ran_early,
        "the other thread cancelled while we held a node lock"
    );
    isr.join().unwrap();
    assert!(done.load(SeqCst));
    assert_eq!(other.reason(), Some(Reason::Code(1)));
    assert_eq!(held.reason(), Some(Reason::Code(2)));
}

/// An "interrupt" that arrives while a walk runs user code (no lock held) cancels a part of
/// the tree the walk has not reached yet; the walk then finds it cancelled and moves on.
#[test]
fn an_interrupt_during_a_callback_cancels_the_rest_of_the_tree() {
    let root = Arc::new(CancelSource::new());
    let b = root.child(); // older: walked after `a`
    let b_leaf = b.child();
    let a = root.child();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let isr = {
        let b = b.clone_handle();
        thread::spawn(move || {
            go_rx.recv().unwrap();
            assert!(b.cancel_with(Reason::Code(7)));
            assert_eq!(lock_depth(), 0);
            done_tx.send(()).unwrap();
        })
    };
    let seen = Seen::default();
    let s = seen.clone();
    let _on = a.on_cancel(move |_: &Reason| {
        s.record();
        go_tx.send(()).unwrap();
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the interrupt ran");
    });
    assert!(root.cancel_with(Reason::Code(1)));
    assert_unlocked();
    isr.join().unwrap();
    assert_eq!(seen.check(), 1);
    assert_eq!(a.reason(), Some(Reason::Code(1)));
    assert_eq!(b.reason(), Some(Reason::Code(7)));
    assert_eq!(b_leaf.reason(), Some(Reason::Code(7)));
}

/// Many "interrupts" cancelling while this thread links, registers, polls and drops: every
/// thread ends with no lock counted, and every node ends cancelled.
#[test]
fn concurrent_cancels_and_edits_keep_the_depth_balanced() {
    for _ in 0..20 {
        let root = Arc::new(CancelSource::new());
        let kids: Vec<CancelSource> = (0..8).map(|_| root.child()).collect();
        let isr = {
            let kids: Vec<CancelSource> = kids.iter().map(CancelSource::clone_handle).collect();
            let root = root.clone();
            thread::spawn(move || {
                for k in kids.iter().rev() {
                    k.cancel();
                    thread::yield_now();
                }
                root.cancel();
                assert_eq!(lock_depth(), 0);
            })
        };
        let seen = Seen::default();
        for k in &kids {
            let mut c = pin!(ChildNode::new(k));
            let c = c.as_mut().link();
            let s = seen.clone();
            let mut cb = pin!(Callback::new(c, move |_: &Reason| s.record()));
            let _ = cb.as_mut().register();
            let g = k.child();
            let mut f = pin!(g.cancelled());
            let _ = f.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        }
        isr.join().unwrap();
        assert_unlocked();
        seen.check();
        assert!(kids.iter().all(|k| k.is_cancelled()));
    }
}
