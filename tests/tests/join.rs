//! Rule 10: shutdown join. `join()` (async) and `wait_join()` / `wait_join_timeout()`
//! (blocking) complete only once every child (and so every descendant) has been dropped.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use cutoff::{AnyOf, CancelSource, ChildNode, Node, Reason};
use cutoff_tests::{CountingWaker, must_finish, poll_once};
use futures::executor::block_on;

#[test]
fn join_without_children_is_ready_at_once() {
    let node = Node::new();
    let w = CountingWaker::new();
    let mut j = pin!(node.join());
    assert!(poll_once(j.as_mut(), &w.waker()).is_ready());
    assert!(!node.has_children());
    node.wait_join();
    assert!(node.wait_join_timeout(Duration::ZERO));
    let s = CancelSource::new();
    block_on(s.join());
}

#[test]
fn join_completes_exactly_when_the_last_child_goes() {
    let root = CancelSource::new();
    let other = Node::new();
    let heap = root.child();
    let w = CountingWaker::new();
    let mut j = Box::pin(root.join());
    {
        let mut pinned = pin!(ChildNode::new(&root));
        let _pinned = pinned.as_mut().link();
        {
            let mut multi = pin!(AnyOf::new([&*root, &*other]));
            let _multi = multi.as_mut().link();
            root.cancel_with(Reason::Shutdown);
            assert!(poll_once(j.as_mut(), &w.waker()).is_pending());
        } // the multi-parent node goes
        assert!(poll_once(j.as_mut(), &w.waker()).is_pending());
        assert!(root.has_children());
    } // the pinned child goes
    assert!(poll_once(j.as_mut(), &w.waker()).is_pending());
    assert!(root.has_children(), "the heap child is still alive");
    let before = w.count();
    drop(heap);
    assert!(w.count() > before, "the last drop wakes the joiner");
    assert!(poll_once(j.as_mut(), &w.waker()).is_ready());
    assert!(!root.has_children());
    assert!(!other.has_children());
}

#[test]
fn join_step_by_step_counts_every_kind_of_child() {
    let root = CancelSource::new();
    let other = CancelSource::new();
    let heap = root.child();
    let multi = CancelSource::any_of([&other.token(), &root.token()]);
    let w = CountingWaker::new();
    let mut j = Box::pin(root.join());
    assert!(poll_once(j.as_mut(), &w.waker()).is_pending());
    root.cancel(); // may wake the joiner (spuriously); it must stay pending
    assert!(poll_once(j.as_mut(), &w.waker()).is_pending());
    drop(heap);
    assert!(
        poll_once(j.as_mut(), &w.waker()).is_pending(),
        "multi link still there"
    );
    assert!(root.has_children());
    let before = w.count();
    drop(multi);
    assert!(w.count() > before);
    assert!(poll_once(j.as_mut(), &w.waker()).is_ready());
    assert!(!root.has_children());
    assert!(!other.has_children(), "the multi node left both parents");
}

#[test]
fn join_waits_for_grandchildren_behind_a_dropped_child() {
    let root = CancelSource::new();
    let child = root.child();
    let grandchild = child.child();
    drop(child); // the grandchild keeps the child alive and linked
    root.cancel();
    assert!(root.has_children());
    assert!(!root.wait_join_timeout(Duration::from_millis(5)));
    let w = CountingWaker::new();
    let mut j = pin!(root.join());
    assert!(poll_once(j.as_mut(), &w.waker()).is_pending());
    drop(grandchild);
    assert!(w.count() >= 1);
    assert!(poll_once(j.as_mut(), &w.waker()).is_ready());
}

#[test]
fn async_join_completes_only_after_every_child_dropped_on_another_thread() {
    // Fewer and smaller rounds under Miri (still both parities of `round`).
    const N: usize = if cfg!(miri) { 10 } else { 50 };
    let rounds: u32 = if cfg!(miri) { 4 } else { 20 };
    for round in 0..rounds {
        let root = CancelSource::new();
        let kids: Vec<CancelSource> = (0..N).map(|_| root.child()).collect();
        let alive = Arc::new(AtomicUsize::new(N));
        root.cancel_with(Reason::Shutdown);
        let dropper = {
            let alive = alive.clone();
            thread::spawn(move || {
                for k in kids {
                    if round.is_multiple_of(2) {
                        thread::yield_now();
                    }
                    alive.fetch_sub(1, SeqCst); // counted before the drop starts
                    drop(k);
                }
            })
        };
        block_on(root.join());
        assert_eq!(
            alive.load(SeqCst),
            0,
            "join completed while children were alive"
        );
        assert!(!root.has_children());
        dropper.join().unwrap();
    }
}

#[test]
fn blocking_join_completes_only_after_every_child_dropped() {
    let root = Arc::new(CancelSource::new());
    let kids: Vec<CancelSource> = (0..10).map(|_| root.child()).collect();
    let last_drop_started = Arc::new(AtomicBool::new(false));
    root.cancel();
    assert!(
        !root.wait_join_timeout(Duration::from_millis(5)),
        "children alive"
    );
    let go = Arc::new(Barrier::new(2));
    let dropper = {
        let flag = last_drop_started.clone();
        let go = go.clone();
        thread::spawn(move || {
            go.wait();
            let n = kids.len();
            for (i, k) in kids.into_iter().enumerate() {
                thread::sleep(Duration::from_millis(1));
                if i + 1 == n {
                    flag.store(true, SeqCst);
                }
                drop(k);
            }
        })
    };
    go.wait();
    root.wait_join();
    assert!(last_drop_started.load(SeqCst));
    assert!(!root.has_children());
    dropper.join().unwrap();
    assert!(root.wait_join_timeout(Duration::ZERO));
}

#[test]
fn wait_join_timeout_returns_true_once_children_are_gone() {
    let root = Arc::new(CancelSource::new());
    let child = root.child();
    let r2 = root.clone();
    let t = thread::spawn(move || r2.wait_join_timeout(Duration::from_secs(600)));
    thread::sleep(Duration::from_millis(5));
    drop(child);
    assert!(t.join().unwrap());
}

#[test]
fn join_works_without_cancel_and_with_many_joiners() {
    let root = Arc::new(CancelSource::new());
    let child = root.child();
    let go = Arc::new(Barrier::new(5));
    let joiners: Vec<_> = (0..4u32)
        .map(|i| {
            let (root, go) = (root.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                if i.is_multiple_of(2) {
                    block_on(root.join())
                } else {
                    root.wait_join()
                }
                root.has_children()
            })
        })
        .collect();
    go.wait();
    thread::sleep(Duration::from_millis(5));
    drop(child);
    for j in joiners {
        assert!(!j.join().unwrap());
    }
    assert!(!root.is_cancelled(), "join does not cancel");
}

#[test]
fn dropped_pending_join_is_not_woken() {
    let root = CancelSource::new();
    let child = root.child();
    let w = CountingWaker::new();
    {
        let mut j = pin!(root.join());
        assert!(poll_once(j.as_mut(), &w.waker()).is_pending());
    }
    drop(child);
    assert_eq!(w.count(), 0);
    // A join on a child-less node after all that is still ready.
    block_on(root.join());
}

#[test]
fn join_after_subtree_cancel_with_pinned_grandchildren() {
    must_finish("join with pinned children on other threads", || {
        let root = CancelSource::new();
        let go = Barrier::new(4);
        let done = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut c = pin!(ChildNode::new(&root));
                    let c = c.as_mut().link();
                    let mut g = pin!(ChildNode::new(c));
                    let g = g.as_mut().link();
                    go.wait();
                    // Work until cancelled, then let go.
                    assert!(matches!(g.wait(), Reason::Code(1)));
                    done.fetch_add(1, SeqCst);
                });
            }
            go.wait();
            root.cancel_with(Reason::Code(1));
            root.wait_join();
            // join returned: every worker has let go of its pinned nodes, which happens only
            // after it recorded `done` (the frames unwind after the increment).
            assert_eq!(done.load(SeqCst), 3);
        });
        assert!(!root.has_children());
    });
}

#[test]
fn join_races_with_child_drops() {
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 500 }; // fewer under Miri
    must_finish("join vs drop race", || {
        for _ in 0..ROUNDS {
            let root = Arc::new(CancelSource::new());
            let kids: Vec<_> = (0..4).map(|_| root.child()).collect();
            let go = Arc::new(Barrier::new(2));
            let t = {
                let go = go.clone();
                thread::spawn(move || {
                    go.wait();
                    drop(kids);
                })
            };
            go.wait();
            block_on(root.join());
            assert!(!root.has_children());
            t.join().unwrap();
        }
    });
}

/// Joiners already waiting when the cancel walk runs (the walk wakes them; they re-register
/// while it is still going) still finish once the children go.
#[test]
fn joiners_waiting_across_a_big_cancel() {
    // Under Miri: fewer rounds and a smaller (still not instant) cancel.
    const ROUNDS: usize = if cfg!(miri) { 2 } else { 20 };
    const KIDS: usize = if cfg!(miri) { 100 } else { 5_000 };
    must_finish("joiners across cancel", || {
        for _ in 0..ROUNDS {
            let root = Arc::new(CancelSource::new());
            let kids: Vec<CancelSource> = (0..KIDS).map(|_| root.child()).collect();
            let go = Arc::new(Barrier::new(3));
            let joiners: Vec<_> = (0..2u32)
                .map(|i| {
                    let (root, go) = (root.clone(), go.clone());
                    thread::spawn(move || {
                        go.wait();
                        if i == 0 {
                            block_on(root.join());
                        } else {
                            root.wait_join();
                        }
                        assert!(!root.has_children());
                    })
                })
                .collect();
            go.wait();
            root.cancel();
            drop(kids);
            for j in joiners {
                j.join().unwrap();
            }
        }
    });
}
