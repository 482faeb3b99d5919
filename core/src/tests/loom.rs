//! Loom models: one per race in the tree's protocols (issue 3, "Proof").
//!
//! Each model is tiny (two threads, a handful of nodes) and is named for the race it covers.
//! Under `RUSTFLAGS="--cfg loom"` every atomic and cell of the crate comes from `loom` (through
//! `crate::loom`), so loom explores the interleavings, checks every `UnsafeCell` access for a
//! happens-before edge and reports leaked `loom::sync::Arc`s. In a normal `cargo test` build
//! [`model`] runs each closure once on real threads, as a smoke test.
//!
//! Run them with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p cutoff --lib --profile loom tests::loom
//! ```
//!
//! Not modelled: `atomic_waker::AtomicWaker` (inside every waiter) uses `core` atomics, not
//! loom's, so loom does not explore its internal orderings; it runs sequentially consistent
//! under loom's one-thread-at-a-time scheduler. The crate's own protocol around it (register
//! the waker, then re-check `CANCELLED` under the node lock; set `CANCELLED`, then take the
//! waker) is modelled. Blocking waits (`wait()`) are compiled out under loom; they are built
//! on callbacks, which are modelled.
//!
//! Heap nodes are plain `Box`es (not loom-tracked), so a leaked heap node is caught through its
//! observable effect instead: a freed heap child unlinks from its parent, so the parent's
//! `has_children()` must be `false` afterwards.
#![allow(clippy::std_instead_of_core, clippy::undocumented_unsafe_blocks)]

extern crate std;

use core::pin::pin;
use core::task::{Context, Poll, Waker};

use crate::loom::atomic::{AtomicUsize, Ordering::SeqCst};
use crate::loom::model;
use crate::{AnyOf, Callback, ChildNode, Node, Reason};

#[cfg(loom)]
use loom::{sync::Arc, thread};
#[cfg(not(loom))]
use std::{sync::Arc, thread};

#[cfg(all(feature = "std", loom))]
use loom::sync::Mutex;
#[cfg(all(feature = "std", not(loom)))]
use std::sync::Mutex;

/// A waker that counts its wake-ups (the count is a loom atomic under loom).
struct CountingWaker(AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker() -> (std::sync::Arc<CountingWaker>, Waker) {
    let count = std::sync::Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    (count, waker)
}

fn code(r: &Reason) -> usize {
    match r {
        Reason::Code(c) => *c as usize,
        other => panic!("unexpected reason {other:?}"),
    }
}

// ---- children ---------------------------------------------------------------------------

/// A child links while its parent is being cancelled: it must end up cancelled with the
/// parent's reason, either born cancelled (never linked) or reached by the walker. A
/// concurrent observer that sees the child cancelled also sees its reason and the parent
/// cancelled (visibility rules).
#[test]
fn child_link_vs_parent_cancel() {
    model(|| {
        let parent = Arc::new(Node::new());
        let p = parent.clone();
        let t = thread::spawn(move || assert!(p.cancel_with(Reason::Code(7))));
        {
            let mut child = pin!(ChildNode::new(&parent));
            let child = child.as_mut().link();
            // Observed while the walker may still be running.
            if let Some(r) = child.reason() {
                assert_eq!(r, Reason::Code(7));
                assert!(parent.is_cancelled());
            }
            t.join().unwrap();
            assert_eq!(child.reason(), Some(Reason::Code(7)));
        }
        assert!(!parent.has_children());
    });
}

/// A linked child is dropped on one thread while the parent's walker (on another) pops it:
/// the drop must wait for the walker to release the child before its memory goes (loom checks
/// the cell accesses), and the parent must end with no children.
#[test]
fn child_drop_vs_walker() {
    model(|| {
        let parent = Arc::new(Node::new());
        let t;
        {
            let mut child = pin!(ChildNode::new(&parent));
            child.as_mut().link();
            let p = parent.clone();
            t = thread::spawn(move || assert!(p.cancel_with(Reason::Code(3))));
        } // the child drops here, racing with the walker
        t.join().unwrap();
        assert_eq!(parent.reason(), Some(Reason::Code(3)));
        assert!(!parent.has_children());
    });
}

/// The walker descends into a child that has its own child, while the owner drops the whole
/// subtree (grandchild first, then child): the climb back up must never touch freed memory.
#[test]
fn subtree_drop_vs_walker() {
    model(|| {
        let root = Arc::new(Node::new());
        let t;
        {
            let mut child = pin!(ChildNode::new(&root));
            let child = child.as_mut().link();
            {
                let mut grandchild = pin!(ChildNode::new(child));
                grandchild.as_mut().link();
                let r = root.clone();
                t = thread::spawn(move || assert!(r.cancel_with(Reason::Code(4))));
            } // grandchild drops
            if child.is_cancelled() {
                assert_eq!(child.reason(), Some(Reason::Code(4)));
            }
        } // child drops
        t.join().unwrap();
        assert!(!root.has_children());
    });
}

/// Two threads cancel the same node with different reasons: exactly one call returns `true`,
/// and the node and every descendant carry the winner's reason. The winner's descendants are
/// cancelled by the time its call returns.
#[test]
fn two_cancels_different_reasons() {
    model(|| {
        let root = Arc::new(Node::new());
        let mut child = pin!(ChildNode::new(&root));
        let child = child.as_mut().link();
        let r = root.clone();
        let t = thread::spawn(move || r.cancel_with(Reason::Code(2)));
        let main_won = root.cancel_with(Reason::Code(1));
        if main_won {
            assert_eq!(child.reason(), Some(Reason::Code(1)));
        }
        let thread_won = t.join().unwrap();
        assert!(main_won ^ thread_won, "exactly one cancel wins");
        let winner = Reason::Code(if main_won { 1 } else { 2 });
        assert_eq!(root.reason(), Some(winner.clone()));
        assert_eq!(child.reason(), Some(winner));
    });
}

/// Overlapping walkers: a parent and its child are cancelled at the same time. The child keeps
/// whichever reason reached it first, and the grandchild carries the child's reason (only the
/// thread that cancelled a node walks it).
#[test]
fn nested_cancels_parent_vs_child() {
    model(|| {
        let root = Arc::new(Node::new());
        let mut child = pin!(ChildNode::new(&root));
        let child = child.as_mut().link();
        let mut grandchild = pin!(ChildNode::new(child));
        let grandchild = grandchild.as_mut().link();
        let r = root.clone();
        let t = thread::spawn(move || assert!(r.cancel_with(Reason::Code(1))));
        let won = child.cancel_with(Reason::Code(2));
        if won {
            assert_eq!(grandchild.reason(), Some(Reason::Code(2)));
        }
        t.join().unwrap();
        assert_eq!(root.reason(), Some(Reason::Code(1)));
        let c = child.reason().expect("child cancelled");
        assert_eq!(c, Reason::Code(if won { 2 } else { 1 }));
        assert_eq!(grandchild.reason(), Some(c));
    });
}

/// Issue 3, rule 11: "once `cancel()` returns, every descendant reports cancelled", also for
/// the call that loses the race (it must not return while the winner's walk is still on its
/// way down). Regression model: this failed (and was `#[ignore]`d) until `cancel()` learned
/// to wait for a concurrent walk of its subtree (`WALKING`, commit 11ded17).
#[test]
fn losing_cancel_sees_descendants_cancelled() {
    model(|| {
        let root = Arc::new(Node::new());
        let mut child = pin!(ChildNode::new(&root));
        let child = child.as_mut().link();
        let r = root.clone();
        let t = thread::spawn(move || r.cancel_with(Reason::Code(2)));
        root.cancel_with(Reason::Code(1));
        // Whatever the return value, the rule says the subtree is cancelled now.
        assert!(child.is_cancelled());
        t.join().unwrap();
    });
}

// ---- callbacks --------------------------------------------------------------------------

/// A callback registers while its node is being cancelled: it runs exactly once, with the
/// node's reason, either inline in `register` (which then returns `false`) or on the walker.
#[test]
fn callback_register_vs_cancel() {
    model(|| {
        let node = Arc::new(Node::new());
        let hits = Arc::new(AtomicUsize::new(0));
        let n = node.clone();
        let t = thread::spawn(move || assert!(n.cancel_with(Reason::Code(5))));
        let h = hits.clone();
        let mut cb = pin!(Callback::new(&node, move |r: &Reason| {
            assert_eq!(*r, Reason::Code(5));
            h.fetch_add(1, SeqCst);
        }));
        let registered = cb.as_mut().register();
        if !registered {
            // Ran inline, before `register` returned.
            assert_eq!(hits.load(SeqCst), 1);
        }
        t.join().unwrap();
        assert_eq!(hits.load(SeqCst), 1);
    });
}

/// `try_register` while the node is being cancelled: `Err` means the callback never runs,
/// `Ok` means the walker runs it exactly once.
#[test]
fn callback_try_register_vs_cancel() {
    model(|| {
        let node = Arc::new(Node::new());
        let hits = Arc::new(AtomicUsize::new(0));
        let n = node.clone();
        let t = thread::spawn(move || assert!(n.cancel()));
        let h = hits.clone();
        let cb = pin!(Callback::new(&node, move |_: &Reason| {
            h.fetch_add(1, SeqCst);
        }));
        let ok = cb.as_ref().try_register().is_ok();
        t.join().unwrap();
        assert_eq!(hits.load(SeqCst), usize::from(ok));
    });
}

/// A registration is dropped on one thread while the walker runs its callback on another.
/// When the drop returns, the callback either ran to completion or will never run: the state
/// goes 0 -> 1 at the callback's start and 1 -> 2 at its end, so the drop must see 0 or 2, and
/// the value must not change afterwards.
#[test]
fn callback_drop_vs_run_other_thread() {
    model(|| {
        let node = Arc::new(Node::new());
        let state = Arc::new(AtomicUsize::new(0));
        let t;
        {
            let s = state.clone();
            let mut cb = pin!(Callback::new(&node, move |_: &Reason| {
                assert_eq!(s.swap(1, SeqCst), 0);
                s.store(2, SeqCst);
            }));
            assert!(cb.as_mut().register());
            let n = node.clone();
            t = thread::spawn(move || assert!(n.cancel()));
        } // the registration drops here
        let seen = state.load(SeqCst);
        assert!(
            seen == 0 || seen == 2,
            "drop returned while the callback ran"
        );
        t.join().unwrap();
        assert_eq!(
            state.load(SeqCst),
            seen,
            "callback ran after its drop returned"
        );
    });
}

/// The slot through which a callback reaches its own registration.
#[cfg(feature = "std")]
type Slot = Arc<Mutex<Option<std::boxed::Box<dyn core::any::Any + Send>>>>;

/// Register an owned callback on `src` that drops its own registration (taken from `slot`),
/// then counts a completed run in `ran`.
#[cfg(feature = "std")]
fn self_dropping_callback(src: &crate::CancelSource, slot: &Slot, ran: &Arc<AtomicUsize>) {
    let (s, r) = (slot.clone(), ran.clone());
    let reg = src.on_cancel(move |_: &Reason| {
        let mine = s.lock().unwrap().take();
        drop(mine); // may be our own registration: must not wait for ourselves
        r.fetch_add(1, SeqCst);
    });
    *slot.lock().unwrap() = Some(std::boxed::Box::new(reg));
}

/// A callback drops its own registration from inside the callback (same thread as the
/// walker): the drop must not wait for itself (no hang), and the walker must not touch the
/// freed registration afterwards.
#[cfg(feature = "std")]
#[test]
fn callback_dropped_inside_own_callback() {
    model(|| {
        let src = crate::CancelSource::new();
        let slot: Slot = Arc::new(Mutex::new(None));
        let ran = Arc::new(AtomicUsize::new(0));
        self_dropping_callback(&src, &slot, &ran);
        assert!(src.cancel());
        assert_eq!(ran.load(SeqCst), 1);
        assert!(slot.lock().unwrap().is_none());
    });
}

/// The same, while another thread races to drop the registration from outside: whoever takes
/// it drops it; the outside drop waits for a run in progress, the inside one does not.
#[cfg(feature = "std")]
#[test]
fn callback_drop_inside_vs_outside() {
    model(|| {
        let src = crate::CancelSource::new();
        let slot: Slot = Arc::new(Mutex::new(None));
        let ran = Arc::new(AtomicUsize::new(0));
        self_dropping_callback(&src, &slot, &ran);
        let t = thread::spawn(move || assert!(src.cancel()));
        let mine = slot.lock().unwrap().take();
        let dropped_outside = mine.is_some();
        drop(mine);
        let seen = ran.load(SeqCst);
        t.join().unwrap();
        if dropped_outside {
            // The outside drop returned: the callback ran completely or never will.
            assert_eq!(
                ran.load(SeqCst),
                seen,
                "callback ran after its drop returned"
            );
        } else {
            // The callback took and dropped its own registration.
            assert_eq!(ran.load(SeqCst), 1);
        }
    });
}

// ---- waiters ----------------------------------------------------------------------------

/// A `Cancellation` future is polled (registering its waiter) while the node is cancelled.
/// If the poll returned `Pending`, the waker must have been woken by the time `cancel`
/// returns; either way a re-poll after that is `Ready` with the reason. Never woken twice.
#[test]
fn waiter_poll_vs_cancel() {
    model(|| {
        let node = Arc::new(Node::new());
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let n = node.clone();
        let t = thread::spawn(move || assert!(n.cancel_with(Reason::Code(9))));
        {
            let mut fut = pin!(node.cancelled());
            let first = fut.as_mut().poll(&mut cx);
            t.join().unwrap();
            match first {
                Poll::Ready(r) => assert_eq!(r, Reason::Code(9)),
                Poll::Pending => assert_eq!(count.0.load(SeqCst), 1, "pending waiter not woken"),
            }
            assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Reason::Code(9)));
        }
        assert!(count.0.load(SeqCst) <= 1);
    });
}

/// A pending `Cancellation` is dropped while the walker pops it and wakes it: the drop waits
/// for the walker to release the waiter before its memory goes.
#[test]
fn waiter_drop_vs_cancel() {
    model(|| {
        let node = Arc::new(Node::new());
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let t;
        {
            let mut fut = pin!(node.cancelled());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            let n = node.clone();
            t = thread::spawn(move || assert!(n.cancel()));
        } // the pending future drops here
        t.join().unwrap();
        assert!(count.0.load(SeqCst) <= 1);
    });
}

/// A join waiter is polled while the last child is dropped on another thread: if the poll
/// returned `Pending`, the waker must have been woken once the drop is done, and a re-poll
/// is `Ready`.
#[cfg(feature = "alloc")]
#[test]
fn join_waiter_vs_last_child_drop() {
    model(|| {
        let parent = crate::CancelSource::new();
        let child = parent.child();
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let t = thread::spawn(move || drop(child));
        {
            let mut join = pin!(parent.join());
            let first = join.as_mut().poll(&mut cx);
            t.join().unwrap();
            if first.is_pending() {
                assert_eq!(count.0.load(SeqCst), 1, "pending join not woken");
            }
            assert_eq!(join.as_mut().poll(&mut cx), Poll::Ready(()));
        }
        assert!(!parent.has_children());
    });
}

/// Two sibling heap children are unlinked at the same time from one parent list (one on
/// each thread, so the neighbours' links race), and then the parent's walker races the
/// other thread's unlink. The parent ends with no children.
///
/// (Kept to two threads: with three, loom lets a spinning `Node::lock` re-read a stale
/// `LOCKED` word from its `Relaxed` load forever and the model exceeds its branch limit.)
#[cfg(feature = "alloc")]
#[test]
fn siblings_drop_vs_walker() {
    model(|| {
        let parent = crate::CancelSource::new();
        let a = parent.child();
        let b = parent.child();
        let t = thread::spawn(move || drop(a));
        drop(b);
        assert!(parent.cancel_with(Reason::Code(8)));
        t.join().unwrap();
        assert!(!parent.has_children());
    });
}

// ---- several parents --------------------------------------------------------------------

/// Both parents of an `AnyOf` node are cancelled at once with different reasons: the node
/// carries one of them and is cancelled exactly once (its callback runs once, with that
/// reason).
#[test]
fn any_of_two_parents_cancel() {
    model(|| {
        let p1 = Arc::new(Node::new());
        let p2 = Arc::new(Node::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let mut node = pin!(AnyOf::new([&*p1, &*p2]));
        let node = node.as_mut().link();
        let (rs, sn) = (runs.clone(), seen.clone());
        let mut cb = pin!(Callback::new(node, move |r: &Reason| {
            rs.fetch_add(1, SeqCst);
            sn.store(code(r), SeqCst);
        }));
        assert!(cb.as_mut().register());
        let p = p1.clone();
        let t = thread::spawn(move || assert!(p.cancel_with(Reason::Code(1))));
        assert!(p2.cancel_with(Reason::Code(2)));
        t.join().unwrap();
        let r = code(&node.reason().expect("cancelled"));
        assert!(r == 1 || r == 2);
        assert_eq!(runs.load(SeqCst), 1, "cancelled exactly once");
        assert_eq!(seen.load(SeqCst), r);
    });
}

/// An `AnyOf` node is dropped while one parent's walker pops its link: both links unlink,
/// no parent keeps a child, no freed link is touched.
#[test]
fn any_of_drop_vs_cancel() {
    model(|| {
        let p1 = Arc::new(Node::new());
        let p2 = Arc::new(Node::new());
        let t;
        {
            let mut node = pin!(AnyOf::new([&*p1, &*p2]));
            node.as_mut().link();
            let p = p1.clone();
            t = thread::spawn(move || assert!(p.cancel_with(Reason::Code(1))));
        } // the multi-parent node drops here
        t.join().unwrap();
        assert!(!p1.has_children());
        assert!(!p2.has_children());
        assert!(!p2.is_cancelled());
    });
}

/// An `AnyOf` node links into its parents while the second parent is cancelled: it ends up
/// cancelled with that parent's reason (born cancelled through that link, or walked), and
/// dropping it leaves neither parent with a child.
#[test]
fn any_of_link_vs_parent_cancel() {
    model(|| {
        let p1 = Arc::new(Node::new());
        let p2 = Arc::new(Node::new());
        let p = p2.clone();
        let t = thread::spawn(move || assert!(p.cancel_with(Reason::Code(2))));
        {
            let mut node = pin!(AnyOf::new([&*p1, &*p2]));
            let node = node.as_mut().link();
            t.join().unwrap();
            assert_eq!(node.reason(), Some(Reason::Code(2)));
        }
        assert!(!p1.has_children());
        assert!(!p2.has_children());
    });
}

// ---- heap handles -----------------------------------------------------------------------

/// The last handle to a heap child (a `CancelToken`) is dropped on one thread while its
/// parent's walker reaches the child on another: the free must wait for the walker, and
/// unlink the child from the parent.
#[cfg(feature = "alloc")]
#[test]
fn heap_last_token_drop_vs_cancel() {
    model(|| {
        let parent = Arc::new(crate::CancelSource::new());
        let token = parent.child().token(); // the source drops here: the token is the last
        let p = parent.clone();
        let t = thread::spawn(move || assert!(p.cancel_with(Reason::Code(6))));
        drop(token);
        t.join().unwrap();
        assert!(!parent.has_children());
    });
}

/// A heap `any_of` node whose last handle drops while one of its parents is cancelled:
/// both links unlink and release their references on the parents.
#[cfg(feature = "alloc")]
#[test]
fn heap_any_of_drop_vs_cancel() {
    model(|| {
        let a = crate::CancelSource::new();
        let b = crate::CancelSource::new();
        let node = crate::CancelSource::any_of([&a.token(), &b.token()]);
        let t = thread::spawn(move || {
            assert!(a.cancel_with(Reason::Code(1)));
            a
        });
        drop(node);
        let a = t.join().unwrap();
        assert!(!a.has_children());
        assert!(!b.has_children());
    });
}

// ---- user code run by the walker drops the node the walker is inside ---------------------

/// A waker that, when woken, drops what its slot holds (a task dropping its own future).
#[cfg(feature = "std")]
struct DroppingWaker(
    std::sync::Mutex<Option<core::pin::Pin<std::boxed::Box<crate::OwnedCancellation>>>>,
);

#[cfg(feature = "std")]
impl std::task::Wake for DroppingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        let fut = self.0.lock().unwrap().take();
        drop(fut);
    }
}

/// The walker runs a waker while it is *inside* node `C` (`C`'s entry in its parent is
/// `TAKEN`, node.rs invariant 4). The waker drops the task's future, whose `CancelToken` is
/// the last handle to `C`, so `C` would be freed on the walker's own thread, where
/// `Node::detach` would spin on its own `TAKEN` entry forever (a same-thread deadlock; under
/// loom: "exceeded maximum number of branches"). Regression model: it hung until the walker
/// took a reference on heap nodes across wakers too (`WALKER_REF`, commit 11ded17).
#[cfg(feature = "std")]
#[test]
fn waker_frees_node_being_walked() {
    model(|| {
        let parent = crate::CancelSource::new();
        let child = parent.child();
        let fut = std::boxed::Box::pin(child.token().cancelled_owned());
        drop(child); // the future's token is now the last handle to the child
        let slot = std::sync::Arc::new(DroppingWaker(std::sync::Mutex::new(None)));
        let waker = Waker::from(slot.clone());
        let mut fut = fut;
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        *slot.0.lock().unwrap() = Some(fut);
        drop(waker);
        assert!(parent.cancel()); // hangs: the waker frees the child the walker is inside
        assert!(!parent.has_children());
    });
}

/// An owned callback on a heap child drops its own registration from inside the callback,
/// and that registration's token is the last handle to the child (same thread as the
/// walker). The walker holds a reference on a heap node across its callbacks (walk.rs), so
/// it frees the child itself when it climbs out instead of deadlocking on its own `TAKEN`
/// entry. The child's source is dropped on another thread at the same time, so the last
/// reference goes either there, inside the callback, or in the walker.
#[cfg(feature = "std")]
#[test]
fn callback_self_drop_frees_node_being_walked() {
    model(|| {
        let parent = crate::CancelSource::new();
        let child = parent.child();
        let slot: Slot = Arc::new(Mutex::new(None));
        let ran = Arc::new(AtomicUsize::new(0));
        self_dropping_callback(&child, &slot, &ran);
        let t = thread::spawn(move || {
            assert!(parent.cancel());
            parent
        });
        drop(child); // races with the walker inside the child
        let parent = t.join().unwrap();
        assert_eq!(ran.load(SeqCst), 1);
        assert!(slot.lock().unwrap().is_none());
        assert!(!parent.has_children());
    });
}
