//! The loom matrix (issue 11, item 4): the public operations that can meet on one node, or on
//! a parent and its child, raced pairwise and in three-thread shapes, through the public API
//! only. The first models of the crate (`core/src/tests/loom.rs`, 22 models) cover the basic
//! pairs; this file adds the review's regressions (ADV-1, ADV-5), the deferral/adoption
//! protocol, lock contention, and the shapes where a third thread drops the last handle or
//! cancels in between. docs/TESTING.md lists every model and what it races.
//!
//! Run:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p cutoff --profile loom --test loom_matrix
//! ```
//!
//! Under loom the crate's atomics and cells are loom's, so loom checks every interleaving up
//! to the preemption bound and every cell access for a happens-before edge. Contended waits
//! (lock, entry release, a concurrent walk) yield to loom's scheduler instead of parking, so
//! a lost wake-up in the crate's own protocol shows up as a deadlock / branch-limit failure.
//! Heap nodes are plain `Box`es, not loom objects, so the file installs a poison-on-free
//! global allocator (`support/poison.rs`, from the second review): a late access to a freed
//! node's loom atomic then names no valid loom object and makes loom panic at the access. A
//! double free aborts the process; a leak shows up as a parent that still `has_children()`.
#![cfg(loom)]
#![allow(clippy::std_instead_of_core)]

#[path = "support/poison.rs"]
mod poison;

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Wake, Waker};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

use cutoff::{AnyOf, Callback, CancelSource, ChildNode, Node, NodeView, OwnedCancellation, Reason};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// For three-thread models: at most 2 preemptions (3 makes the contended ones, where a thread
/// spins on a lock or a walk and yields to loom at every round, run for tens of minutes), and
/// a longer branch budget for those spins.
fn model3(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.unwrap_or(2).min(2));
    b.max_branches = b.max_branches.max(10_000);
    b.check(f);
}

/// A waker that counts its wake-ups.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting() -> (std::sync::Arc<Counting>, Waker) {
    let c = std::sync::Arc::new(Counting(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

fn poll<F: Future + ?Sized>(f: Pin<&mut F>, w: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(w))
}

fn code(r: &Reason) -> usize {
    match r {
        Reason::Code(c) => *c as usize,
        _ => usize::MAX,
    }
}

// ---- the review's regressions -----------------------------------------------------------

/// ADV-1: the last handle of a heap child is the token inside an `OwnedCancellation`,
/// dropped on another thread while the parent's walker is inside the child. Before the fix
/// the walker took its reference after releasing the waiter entry with a `load` +
/// `fetch_add`, resurrecting a count that had reached zero: double free.
#[test]
fn adv1_owned_waiter_drop_vs_walker_hold() {
    model(|| {
        let parent = CancelSource::new();
        let child = parent.child();
        let mut fut = Box::pin(child.token().cancelled_owned());
        drop(child); // the future's token is now the last handle to the child
        let (_c, w) = counting();
        assert!(poll(fut.as_mut(), &w).is_pending());
        let t = thread::spawn(move || drop(fut));
        assert!(parent.cancel());
        t.join().unwrap();
        assert!(!parent.has_children());
    });
}

/// r -> c -> y -> z, built with heap nodes. `c` is shared so a callback can cancel it.
struct Chain {
    r: CancelSource,
    c: Arc<CancelSource>,
    y: Arc<CancelSource>,
    z: CancelSource,
}

fn chain() -> Chain {
    let r = CancelSource::new();
    let c = Arc::new(r.child());
    let y = Arc::new(c.child());
    let z = y.child();
    Chain { r, c, y, z }
}

/// A node whose callback cancels `target` (so that cancel is nested in a walk).
fn nested_canceller(
    target: &Arc<CancelSource>,
) -> (
    CancelSource,
    cutoff::OnCancel<impl FnOnce(&Reason) + Send + use<>>,
) {
    let n = CancelSource::new();
    let t = target.clone();
    let reg = n.on_cancel(move |_: &Reason| {
        t.cancel_with(Reason::Code(3));
    });
    (n, reg)
}

/// ADV-5: thread T cancels y; main cancels c from inside a callback (a nested walk that may
/// not wait for T), then cancels r at top level. When `r.cancel()` returns, z must be
/// cancelled: the nested walk must not clear c's `WALKING` while y's subtree is unfinished.
#[test]
fn adv5_nested_cancel_vs_concurrent_walk() {
    model(|| {
        let ch = chain();
        let y = ch.y.clone();
        let t = thread::spawn(move || {
            y.cancel_with(Reason::Code(1));
        });
        let (n, _reg) = nested_canceller(&ch.c);
        assert!(n.cancel());
        ch.r.cancel_with(Reason::Code(4));
        assert!(
            ch.z.is_cancelled(),
            "r.cancel() returned before z was cancelled"
        );
        assert!(ch.c.is_cancelled() && ch.y.is_cancelled());
        t.join().unwrap();
    });
}

/// ADV-5 in three threads: T cancels y, U cancels c from inside a callback, main cancels r at
/// top level. Whatever the interleaving, main's `cancel()` returns only when z is cancelled.
#[test]
fn adv5_three_threads() {
    model3(|| {
        let ch = chain();
        let y = ch.y.clone();
        let t = thread::spawn(move || {
            y.cancel_with(Reason::Code(1));
        });
        let c = ch.c.clone();
        let u = thread::spawn(move || {
            let (n, _reg) = nested_canceller(&c);
            assert!(n.cancel());
        });
        ch.r.cancel_with(Reason::Code(4));
        assert!(
            ch.z.is_cancelled(),
            "r.cancel() returned before z was cancelled"
        );
        t.join().unwrap();
        u.join().unwrap();
    });
}

/// A nested cancel of c may leave c abandoned (y deferred); a later top-level `c.cancel()`
/// (which loses: c is cancelled) must adopt c and finish it, so z is cancelled when it
/// returns.
#[test]
fn losing_cancel_adopts_abandoned_node() {
    model(|| {
        let ch = chain();
        let y = ch.y.clone();
        let t = thread::spawn(move || {
            y.cancel_with(Reason::Code(1));
        });
        let (n, _reg) = nested_canceller(&ch.c);
        assert!(n.cancel());
        ch.c.cancel_with(Reason::Code(5));
        assert!(
            ch.z.is_cancelled(),
            "c.cancel() returned before z was cancelled"
        );
        t.join().unwrap();
    });
}

/// While a nested cancel defers y under c, y's owner (T, right after cancelling it) drops y
/// and z: the deferred entry is removed by its owner, nothing leaks, and a later top-level
/// cancel of r finishes (nothing waits for the dropped subtree).
#[test]
fn deferred_entry_dropped_by_its_owner() {
    model(|| {
        let Chain { r, c, y, z } = chain();
        let t = thread::spawn(move || {
            y.cancel_with(Reason::Code(1));
            drop(z);
            drop(y);
        });
        let (n, _reg) = nested_canceller(&c);
        assert!(n.cancel());
        t.join().unwrap();
        r.cancel_with(Reason::Code(4));
        assert!(!c.has_children(), "y is gone: c must have no child left");
        assert!(c.is_cancelled());
    });
}

/// Two nested cancels meet: each runs inside a callback of its own root, one cancels c and
/// the other y (c's child), on two threads. Neither may wait for the other (each could be
/// waiting for the other's callback); both return, and a top-level cancel of r afterwards
/// finishes every deferred part: z is cancelled when it returns.
#[test]
fn two_nested_cancels_then_top_level() {
    model(|| {
        let ch = chain();
        let c = ch.c.clone();
        let t = thread::spawn(move || {
            let (n, _reg) = nested_canceller(&c);
            assert!(n.cancel());
        });
        let (n, _reg) = nested_canceller(&ch.y);
        assert!(n.cancel());
        t.join().unwrap();
        ch.r.cancel_with(Reason::Code(4));
        assert!(ch.z.is_cancelled());
        assert!(ch.y.is_cancelled() && ch.c.is_cancelled());
    });
}

// ---- contention on one parent (the lock's slow path) ------------------------------------

/// Two threads link and drop a child of the same parent while a third cancels it: every
/// child ends cancelled (born cancelled or walked), the parent ends with no child, and no
/// thread waits forever on the lock (a lost wake-up would hang loom).
#[test]
fn two_linkers_and_a_canceller_on_one_parent() {
    model3(|| {
        let p = Arc::new(CancelSource::new());
        let spawn_linker = |p: &Arc<CancelSource>| {
            let p = p.clone();
            thread::spawn(move || {
                let c = p.child();
                let was = c.is_cancelled();
                drop(c);
                was
            })
        };
        let a = spawn_linker(&p);
        let b = spawn_linker(&p);
        assert!(p.cancel());
        a.join().unwrap();
        b.join().unwrap();
        assert!(!p.has_children());
    });
}

/// A pinned child links on one thread while a linked sibling is dropped on another and the
/// parent is cancelled on a third: the new child ends cancelled (walked, or born cancelled),
/// the sibling's drop waits for the walker if it holds it, and the parent ends childless.
#[test]
fn pinned_link_vs_sibling_drop_vs_cancel() {
    model3(|| {
        let p = Arc::new(Node::new());
        let p2 = p.clone();
        let t = thread::spawn(move || {
            let mut c = pin!(ChildNode::new(&p2));
            let c = c.as_mut().link();
            c.is_cancelled()
        });
        let p3 = p.clone();
        let u = thread::spawn(move || assert!(p3.cancel()));
        {
            let mut s = pin!(ChildNode::new(&p));
            s.as_mut().link();
        } // the sibling drops here
        t.join().unwrap();
        u.join().unwrap();
        assert!(!p.has_children());
    });
}

// ---- callbacks --------------------------------------------------------------------------

/// `disarm` on one thread while the walker runs the callback on another: `disarm` returns
/// the closure iff the callback did not run, and when it returns the callback is either done
/// or will never run.
#[test]
fn callback_disarm_vs_run() {
    model(|| {
        let src = Arc::new(CancelSource::new());
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let reg = src.on_cancel(move |_: &Reason| {
            r.fetch_add(1, SeqCst);
        });
        let s = src.clone();
        let t = thread::spawn(move || assert!(s.cancel()));
        let got = reg.disarm();
        let seen = ran.load(SeqCst);
        t.join().unwrap();
        match got {
            Some(_) => assert_eq!(ran.load(SeqCst), 0, "ran after a successful disarm"),
            None => assert_eq!(seen, 1, "disarm returned while the callback was running"),
        }
    });
}

/// The last handle of a child is an `OnCancel` registration, dropped by a third thread while
/// the parent's walker runs the callback and the child's source drops on a second thread.
#[test]
fn on_cancel_last_handle_dropped_by_third_thread() {
    model3(|| {
        let parent = Arc::new(CancelSource::new());
        let child = parent.child();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let reg = child.on_cancel(move |_: &Reason| {
            r.fetch_add(1, SeqCst);
        });
        let p = parent.clone();
        let t = thread::spawn(move || assert!(p.cancel()));
        let u = thread::spawn(move || drop(reg));
        drop(child);
        t.join().unwrap();
        u.join().unwrap();
        assert!(ran.load(SeqCst) <= 1);
        assert!(!parent.has_children());
    });
}

/// A scoped callback (`with_callback`) on a node another thread cancels: it runs at most once
/// and only inside the scope (after the scope it can never run).
#[test]
fn scoped_callback_vs_cancel() {
    model(|| {
        let src = Arc::new(CancelSource::new());
        let s = src.clone();
        let t = thread::spawn(move || assert!(s.cancel()));
        let ran = AtomicUsize::new(0);
        src.with_callback(
            |_: &Reason| {
                ran.fetch_add(1, SeqCst);
            },
            || {},
        );
        let after_scope = ran.load(SeqCst);
        t.join().unwrap();
        assert!(after_scope <= 1);
        assert_eq!(ran.load(SeqCst), after_scope, "ran after its scope ended");
    });
}

/// A pinned `Callback` registers on a child while the parent is cancelled and the child is
/// then dropped by its owner: it runs exactly once (inline or on the walker), with the
/// parent's reason.
#[test]
fn pinned_callback_register_on_child_vs_parent_cancel() {
    model(|| {
        let p = Arc::new(Node::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let p2 = p.clone();
        let t = thread::spawn(move || assert!(p2.cancel_with(Reason::Code(7))));
        {
            let mut c = pin!(ChildNode::new(&p));
            let c = c.as_mut().link();
            let r = runs.clone();
            let mut cb = pin!(Callback::new(c, move |why: &Reason| {
                assert_eq!(code(why), 7);
                r.fetch_add(1, SeqCst);
            }));
            cb.as_mut().register();
            t.join().unwrap();
            assert_eq!(runs.load(SeqCst), 1);
        }
        assert!(!p.has_children());
    });
}

// ---- waiters ----------------------------------------------------------------------------

/// An owned waiter (not holding the last handle) is dropped on another thread while the node
/// is cancelled: no wake-up touches the dropped future, nothing leaks.
#[test]
fn owned_waiter_drop_vs_cancel() {
    model(|| {
        let src = CancelSource::new();
        let mut fut = Box::pin(src.token().cancelled_owned());
        let (_c, w) = counting();
        assert!(poll(fut.as_mut(), &w).is_pending());
        let t = thread::spawn(move || drop(fut));
        assert!(src.cancel());
        t.join().unwrap();
    });
}

/// A waiter re-polled with a new waker while the node is cancelled: the waker that ends up
/// registered is woken exactly once, or the poll sees the cancellation itself.
#[test]
fn waiter_repoll_new_waker_vs_cancel() {
    model(|| {
        let src = Arc::new(CancelSource::new());
        let mut fut: Pin<Box<OwnedCancellation>> = Box::pin(src.token().cancelled_owned());
        let (a, wa) = counting();
        assert!(poll(fut.as_mut(), &wa).is_pending());
        let s = src.clone();
        let t = thread::spawn(move || assert!(s.cancel()));
        let (b, wb) = counting();
        let second = poll(fut.as_mut(), &wb);
        t.join().unwrap();
        let (na, nb) = (a.0.load(SeqCst), b.0.load(SeqCst));
        assert!(na + nb <= 1, "woken twice");
        if second.is_pending() {
            assert_eq!(nb, 1, "pending with waker B, but B was never woken");
            assert!(poll(fut.as_mut(), &wb).is_ready());
        }
    });
}

/// A waker that cancels another node (a nested cancel from inside a waker) while a third
/// thread cancels that node's parent: both calls return, the node carries one reason, and
/// its child is cancelled by the time the top-level call returns.
#[test]
fn waker_cancels_node_vs_parent_cancel() {
    struct CancelOnWake(Arc<CancelSource>);
    impl Wake for CancelOnWake {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.cancel_with(Reason::Code(2));
        }
    }
    model(|| {
        let p = Arc::new(CancelSource::new());
        let x = Arc::new(p.child());
        let xc = x.child();
        let trigger = CancelSource::new();
        let mut fut = Box::pin(trigger.token().cancelled_owned());
        let w = Waker::from(std::sync::Arc::new(CancelOnWake(x.clone())));
        assert!(poll(fut.as_mut(), &w).is_pending());
        let p2 = p.clone();
        let t = thread::spawn(move || {
            p2.cancel_with(Reason::Code(1));
        });
        assert!(trigger.cancel()); // the waker runs here: a nested cancel of x
        t.join().unwrap();
        let r = code(&x.reason().expect("x cancelled"));
        assert!(r == 1 || r == 2);
        assert!(xc.is_cancelled());
    });
}

// ---- join -------------------------------------------------------------------------------

/// A join future is polled on one thread while the parent is cancelled on another and its
/// last child is dropped on a third: the join completes (woken, or ready on the next poll).
#[test]
fn join_vs_cancel_vs_last_child_drop() {
    model3(|| {
        let p = Arc::new(CancelSource::new());
        let child = p.child();
        let p2 = p.clone();
        let j = thread::spawn(move || {
            let (c, w) = counting();
            let mut join = pin!(p2.join());
            // Every `Pending` must be followed by a wake-up (the cancel's walker wakes join
            // waiters too, which is a spurious wake-up for the join: it polls again); the join
            // is ready once the last child has dropped.
            let mut seen = 0;
            while poll(join.as_mut(), &w).is_pending() {
                while c.0.load(SeqCst) == seen {
                    thread::yield_now();
                }
                seen = c.0.load(SeqCst);
            }
        });
        let p3 = p.clone();
        let t = thread::spawn(move || assert!(p3.cancel()));
        drop(child);
        j.join().unwrap();
        t.join().unwrap();
        assert!(!p.has_children());
    });
}

// ---- several parents --------------------------------------------------------------------

/// A heap `any_of` node is dropped while both of its parents are cancelled on two other
/// threads: both links unlink once, nobody touches the freed links, no parent keeps a child.
#[test]
fn heap_any_of_drop_vs_two_parent_cancels() {
    model3(|| {
        let a = Arc::new(CancelSource::new());
        let b = Arc::new(CancelSource::new());
        let node = CancelSource::any_of([&a.token(), &b.token()]);
        let a2 = a.clone();
        let t = thread::spawn(move || assert!(a2.cancel_with(Reason::Code(1))));
        let b2 = b.clone();
        let u = thread::spawn(move || assert!(b2.cancel_with(Reason::Code(2))));
        drop(node);
        t.join().unwrap();
        u.join().unwrap();
        assert!(!a.has_children());
        assert!(!b.has_children());
    });
}

/// A pinned `AnyOf` under two parents, one of which is cancelled from inside a callback
/// (nested) while the other is cancelled at top level on another thread: the node is
/// cancelled exactly once, and its child is cancelled when the top-level call returns.
#[test]
fn any_of_nested_vs_top_level_parent_cancel() {
    model(|| {
        let p1 = Arc::new(CancelSource::new());
        let p2 = Arc::new(CancelSource::new());
        let (v1, v2): (&NodeView, &NodeView) = (&p1, &p2);
        let mut node = pin!(AnyOf::new([v1, v2]));
        let node = node.as_mut().link();
        let mut leaf = pin!(ChildNode::new(node));
        let leaf = leaf.as_mut().link();
        let p = p2.clone();
        let t = thread::spawn(move || {
            p.cancel_with(Reason::Code(2));
        });
        let (n, _reg) = nested_canceller(&p1);
        assert!(n.cancel());
        p1.cancel_with(Reason::Code(9)); // top level (loses): must not return early
        assert!(leaf.is_cancelled());
        t.join().unwrap();
        assert!(node.is_cancelled());
    });
}

// ---- the last handle dropped by a third thread ------------------------------------------

/// The parent is cancelled on one thread while the child's source and its last token are
/// dropped on two others: exactly one of them frees the child (no double free), after the
/// walker is done with it.
#[test]
fn last_handle_dropped_by_third_thread_mid_walk() {
    model3(|| {
        let parent = Arc::new(CancelSource::new());
        let child = parent.child();
        let token = child.token();
        let p = parent.clone();
        let t = thread::spawn(move || assert!(p.cancel()));
        let u = thread::spawn(move || drop(token));
        drop(child);
        t.join().unwrap();
        u.join().unwrap();
        assert!(!parent.has_children());
    });
}

/// A `DropGuard` (cancels its node when dropped) goes away while the parent is cancelled on
/// another thread: the node is cancelled once, with one of the two reasons, and freed.
#[test]
fn drop_guard_vs_parent_cancel() {
    model(|| {
        let parent = Arc::new(CancelSource::new());
        let child = parent.child();
        let token = child.token();
        let guard = child.drop_guard();
        let p = parent.clone();
        let t = thread::spawn(move || assert!(p.cancel_with(Reason::Code(1))));
        drop(guard);
        t.join().unwrap();
        let r = token.reason().expect("cancelled");
        assert!(matches!(r, Reason::Code(1) | Reason::Requested));
        drop(token);
        assert!(!parent.has_children());
    });
}

/// A token makes a child while the root is cancelled and the token's source is dropped on a
/// third thread: the child is linked and then walked, or born cancelled; nothing leaks.
#[test]
fn token_child_vs_cancel_vs_source_drop() {
    model3(|| {
        let root = Arc::new(CancelSource::new());
        let mid = root.child();
        let tok = mid.token();
        let r = root.clone();
        let t = thread::spawn(move || assert!(r.cancel()));
        let u = thread::spawn(move || drop(mid));
        let c = tok.child();
        t.join().unwrap();
        u.join().unwrap();
        assert!(c.is_cancelled());
        drop(c);
        drop(tok);
        assert!(!root.has_children());
    });
}

/// Review F1: thread A drops the last handle of heap child `x`, so `free_chain(x)` unlinks it
/// from `p` in one unlock that also drops `x`'s reference on `p`; main contends on `p`'s lock
/// (`has_children`, announcing `LOCK_PARKED`) and then drops `p`'s only handle. The unlocker
/// used to clear `LOCK_PARKED` after its unlock, writing into `p` after main had freed it (the
/// poison allocator made loom panic). Every unlock now clears `LOCK_PARKED` in its own
/// read-modify-write and wakes by key only (lock.rs invariant 3).
#[test]
fn unlock_unref_vs_contender_freeing_the_parent() {
    model(|| {
        let p = CancelSource::new();
        let x = p.child();
        let a = thread::spawn(move || drop(x));
        let _ = p.has_children();
        drop(p);
        a.join().unwrap();
    });
}

/// Control for the model above: main keeps `p` until A has returned.
#[test]
fn unlock_unref_vs_contender_parent_kept() {
    model(|| {
        let p = CancelSource::new();
        let x = p.child();
        let a = thread::spawn(move || drop(x));
        let _ = p.has_children();
        a.join().unwrap();
        drop(p);
    });
}
