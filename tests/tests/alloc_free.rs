//! Rule 1 (no-alloc mode): zero heap allocations per pinned child, callback, waiter, join and
//! multi-parent node, including linking, cancelling and unlinking.
//!
//! A counting `#[global_allocator]` counts only allocations made on the current thread while
//! a thread-local flag is set, so other tests running in parallel in this binary do not
//! disturb the count.

use std::pin::pin;
use std::task::Waker;

use cutoff::{AnyOf, Callback, ChildNode, Node, Reason};
use cutoff_tests::{ThreadAllocCounter, allocs_in, poll_once};

#[global_allocator]
static GLOBAL: ThreadAllocCounter = ThreadAllocCounter;

const N: usize = 10_000;

#[test]
fn the_counter_counts() {
    assert!(allocs_in(|| drop(std::hint::black_box(Box::new(5u64)))) >= 1);
    // Heap mode does allocate (sanity check of the harness, not a requirement).
    let src = cutoff::CancelSource::new();
    assert!(allocs_in(|| drop(std::hint::black_box(src.child()))) >= 1);
}

#[test]
fn pinned_children_allocate_nothing() {
    static MINE: Node = Node::new(); // not shared with the tests running in parallel
    let n = allocs_in(|| {
        for _ in 0..N {
            let mut c = pin!(ChildNode::new(&MINE));
            let c = c.as_mut().link();
            let mut g = pin!(ChildNode::new(c));
            let g = g.as_mut().link();
            assert!(!g.is_cancelled());
            assert!(MINE.has_children());
        }
    });
    assert_eq!(n, 0, "allocations for {N} pinned children");
    assert!(!MINE.has_children());
}

#[test]
fn pinned_callbacks_allocate_nothing_registered_run_or_dropped() {
    // Each test has its own root: a root shared by the tests running in parallel is
    // contended, and a contended wait parks (with `std`), which may allocate the parking
    // lot's per-thread data the first time a thread parks.
    static ROOT: Node = Node::new();
    // Not shared with the tests running in parallel; a `static` so the closure is `'static`.
    static HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    // Warm up anything lazily initialised per thread (thread handle for the runner id).
    {
        let mut c = pin!(ChildNode::new(&ROOT));
        let c = c.as_mut().link();
        let mut cb = pin!(Callback::new(c, |_: &Reason| {}));
        cb.as_mut().register();
        c.cancel();
    }
    let n = allocs_in(|| {
        for i in 0..N {
            let mut c = pin!(ChildNode::new(&ROOT));
            let c = c.as_mut().link();
            let mut cb = pin!(Callback::new(c, |r: &Reason| {
                assert_eq!(*r, Reason::Code(1));
                HITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }));
            assert!(cb.as_mut().register());
            let mut cb2 = pin!(Callback::new(&ROOT, |_: &Reason| {}));
            assert!(cb2.as_mut().register());
            if i.is_multiple_of(2) {
                c.cancel_with(Reason::Code(1)); // runs the callback
                // Registering on a cancelled node runs inline: still nothing allocated.
                let mut late = pin!(Callback::new(c, |_: &Reason| {}));
                assert!(!late.as_mut().register());
            }
        }
    });
    assert_eq!(n, 0, "allocations for {N} pinned callbacks");
    assert_eq!(HITS.load(std::sync::atomic::Ordering::Relaxed), N / 2);
}

#[test]
fn scoped_callbacks_allocate_nothing_run_or_unregistered() {
    // Each test has its own root: a root shared by the tests running in parallel is
    // contended, and a contended wait parks (with `std`), which may allocate the parking
    // lot's per-thread data the first time a thread parks.
    static ROOT: Node = Node::new();
    let hits = std::sync::atomic::AtomicUsize::new(0); // borrowed by the callbacks
    let bump = |_: &Reason| {
        hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    // Warm up anything lazily initialised per thread (thread handle for the runner id).
    {
        let mut c = pin!(ChildNode::new(&ROOT));
        let c = c.as_mut().link();
        c.with_callback(|_: &Reason| {}, || c.cancel());
    }
    let n = allocs_in(|| {
        for i in 0..N {
            let mut c = pin!(ChildNode::new(&ROOT));
            let c = c.as_mut().link();
            c.with_callback(bump, || {
                if i.is_multiple_of(2) {
                    c.cancel(); // runs the callback
                }
            });
            // Already cancelled (every other round): runs inline; otherwise just unregisters.
            c.with_callback(bump, || {});
        }
    });
    assert_eq!(n, 0, "allocations for {N} scoped callbacks");
    assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), N);
}

#[test]
fn cancelled_futures_allocate_nothing() {
    // Each test has its own root: a root shared by the tests running in parallel is
    // contended, and a contended wait parks (with `std`), which may allocate the parking
    // lot's per-thread data the first time a thread parks.
    static ROOT: Node = Node::new();
    let waker = Waker::noop();
    let n = allocs_in(|| {
        for i in 0..N {
            let mut c = pin!(ChildNode::new(&ROOT));
            let c = c.as_mut().link();
            let mut f = pin!(c.cancelled());
            assert!(poll_once(f.as_mut(), waker).is_pending());
            let mut f2 = pin!(ROOT.cancelled());
            assert!(poll_once(f2.as_mut(), waker).is_pending());
            if i.is_multiple_of(2) {
                c.cancel_with(Reason::Shutdown); // wakes the waiter
                assert!(poll_once(f.as_mut(), waker).is_ready());
            }
            let mut r = pin!(c.run_until_cancelled(std::future::ready(i)));
            assert!(poll_once(r.as_mut(), waker).is_ready());
        }
    });
    assert_eq!(n, 0, "allocations for {N} cancelled() futures");
}

#[test]
fn joins_and_multi_parent_nodes_allocate_nothing() {
    // Each test has its own root: a root shared by the tests running in parallel is
    // contended, and a contended wait parks (with `std`), which may allocate the parking
    // lot's per-thread data the first time a thread parks.
    static ROOT: Node = Node::new();
    let waker = Waker::noop();
    let other = Node::new();
    let n = allocs_in(|| {
        for _ in 0..N {
            let mut c = pin!(ChildNode::new(&ROOT));
            let c = c.as_mut().link();
            let mut j = pin!(c.join());
            {
                let mut m = pin!(AnyOf::new([c, &*other]));
                let m = m.as_mut().link();
                assert!(poll_once(j.as_mut(), waker).is_pending());
                c.cancel();
                assert!(m.is_cancelled());
            }
            assert!(poll_once(j.as_mut(), waker).is_ready());
        }
    });
    assert_eq!(n, 0, "allocations for {N} joins and AnyOf nodes");
    assert!(!other.has_children());
}
