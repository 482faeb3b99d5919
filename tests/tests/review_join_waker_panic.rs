//! Adversarial review: a join waker that panics while the walker frees a node (walk.rs `leave`
//! -> token.rs `free_walked` -> node.rs `detach_unref` -> wait.rs `wake_joiners`).
//!
//! Fixed (review F3): a join waker's panic is caught and parked per thread (core/src/unwind.rs)
//! and resumed by the public operation once its bookkeeping is complete. Regression test.
//!
//! When the walker's reference is the last one on a heap node it is leaving, it frees the node
//! itself (`free_walked`). Unlinking the node from its parent can make the parent childless,
//! and then `detach_unref` wakes the parent's join waiters right there, on the walker's thread.
//! `wake_joiners` catches a panicking waker and *resumes* the panic when it is done, so the
//! panic unwinds out of `free_walked` before `free_node` runs (and out of `leave` before the
//! node's reference on its parent is handed to the walker). `Finish` completes the walk and the
//! panic comes out of `cancel()`, as documented for callbacks and wakers, but the node being
//! freed is never freed (and, with a heap parent, the reference it held on the parent is never
//! dropped, so the parent leaks too).
//!
//! The first test hangs the node off a `static` root, so only the child's own allocation is at
//! stake; it measures live heap bytes with a counting allocator (a control run with a quiet
//! waker frees everything). The second test does the same to a heap `any_of` node: the unwind
//! also skips unlinking the node's other links, so its other parent keeps a child forever
//! (`has_children()` stays true and `join()` never completes, although every handle of the
//! node is gone), against `NodeView::join`'s documented promise.
//!
//! Both tests serialize on a mutex (the panic hook is process-wide).
//!
//! Run: cargo test -p cutoff-tests --release --test review_join_waker_panic

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use cutoff::{CancelSource, Join, Node, OnCancel, Reason};

/// Counts the bytes allocated minus the bytes freed *on the current thread* (the scenarios
/// are single-threaded: the walker runs on the test's thread), so other threads of the test
/// harness do not disturb the count.
struct Counting;

std::thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: forwards to `System`, counting live bytes per thread (a const thread-local with no
// destructor: allocates nothing).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as isize));
        // SAFETY: forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as isize));
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

struct Panics;
impl Wake for Panics {
    fn wake(self: Arc<Self>) {
        panic!("expected test panic: join waker");
    }
}

type Reg = OnCancel<Box<dyn FnOnce(&Reason) + Send>>;

static P: Node = Node::new();
static CONTROL: Node = Node::new();

fn scenario(p: &'static Node, panicking: bool) {
    let child = CancelSource::child_of(p);
    // A join future on P, pending while the child lives; polled once with a quiet waker so
    // that the walker's (spurious) wake-up of it is harmless.
    let join: Arc<Mutex<Pin<Box<Join<'static>>>>> = Arc::new(Mutex::new(Box::pin(p.join())));
    let noop = Waker::from(Arc::new(Noop));
    assert!(
        join.lock()
            .unwrap()
            .as_mut()
            .poll(&mut Context::from_waker(&noop))
            .is_pending()
    );
    // The child's callback re-polls the join with a panicking waker (it relinks into the
    // cancelled P), then drops its own registration, which holds the child's last handle.
    let slot: Arc<Mutex<Option<Reg>>> = Arc::new(Mutex::new(None));
    let (s2, j2) = (slot.clone(), join.clone());
    let f: Box<dyn FnOnce(&Reason) + Send> = Box::new(move |_| {
        let panics = if panicking {
            Waker::from(Arc::new(Panics))
        } else {
            Waker::from(Arc::new(Noop))
        };
        let r = j2
            .lock()
            .unwrap()
            .as_mut()
            .poll(&mut Context::from_waker(&panics));
        assert_eq!(r, Poll::Pending);
        let reg = s2.lock().unwrap().take();
        drop(reg);
    });
    *slot.lock().unwrap() = Some(child.token().on_cancel(f));
    drop(child); // the registration's token is now the child's only handle
    let r = catch_unwind(AssertUnwindSafe(|| p.cancel()));
    assert_eq!(
        r.is_err(),
        panicking,
        "the join waker's panic comes out of cancel()"
    );
    assert!(slot.lock().unwrap().is_none());
    assert!(!p.has_children());
    drop(join);
}

static SERIAL: Mutex<()> = Mutex::new(());

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

#[test]
fn a_panicking_join_waker_in_the_walkers_free_path_leaks_the_node() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    quiet();
    // Warm up the panic machinery (first-panic allocations) outside the measurement.
    let _ = catch_unwind(|| panic!("expected test panic: warm-up"));
    // Control: the same with a quiet join waker frees everything.
    let before = live();
    scenario(&CONTROL, false);
    assert_eq!(live() - before, 0, "control run leaked");
    let before = live();
    scenario(&P, true);
    let after = live();
    assert_eq!(
        after - before,
        0,
        "{} bytes still live after every handle, registration and future is gone \
         (size_of::<Node>() = {})",
        after - before,
        size_of::<Node>()
    );
}

/// The multi-parent variant: m = any_of(p1, p2) (heap). p1's join waker panics while the
/// walker of p1 frees m (its last handle dropped by its own callback): the unwind leaves m's
/// link in p2, so p2 reports a child forever although every handle of m is gone.
/// Returns whether p2 still reports a child once every handle of m is gone.
fn any_of_case(panicking: bool) -> bool {
    // p1 is leaked so that its join future can be 'static (the callback re-polls it).
    let p1: &'static CancelSource = cutoff_tests::leak(CancelSource::new());
    let p2 = CancelSource::new();
    let m = CancelSource::any_of([&p1.token(), &p2.token()]);
    let join: Arc<Mutex<Pin<Box<Join<'static>>>>> = Arc::new(Mutex::new(Box::pin(p1.join())));
    let noop = Waker::from(Arc::new(Noop));
    assert!(
        join.lock()
            .unwrap()
            .as_mut()
            .poll(&mut Context::from_waker(&noop))
            .is_pending()
    );
    let slot: Arc<Mutex<Option<Reg>>> = Arc::new(Mutex::new(None));
    let (s2, j2) = (slot.clone(), join.clone());
    let f: Box<dyn FnOnce(&Reason) + Send> = Box::new(move |_| {
        let panics = if panicking {
            Waker::from(Arc::new(Panics))
        } else {
            Waker::from(Arc::new(Noop))
        };
        let r = j2
            .lock()
            .unwrap()
            .as_mut()
            .poll(&mut Context::from_waker(&panics));
        assert_eq!(r, Poll::Pending);
        let reg = s2.lock().unwrap().take();
        drop(reg);
    });
    *slot.lock().unwrap() = Some(m.token().on_cancel(f));
    drop(m); // the registration's token is now m's only handle
    let r = catch_unwind(AssertUnwindSafe(|| p1.cancel()));
    assert_eq!(
        r.is_err(),
        panicking,
        "the join waker's panic comes out of cancel()"
    );
    assert!(slot.lock().unwrap().is_none(), "every handle of m is gone");
    assert!(!p1.has_children());
    p2.has_children()
}

#[test]
fn a_panicking_join_waker_while_freeing_an_any_of_node_leaves_its_other_link() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    quiet();
    assert!(!any_of_case(false), "control run: p2 must end childless");
    assert!(
        !any_of_case(true),
        "p2 still has a child although every handle of its only child m was dropped \
         (m's link in p2 was never unlinked)"
    );
}
