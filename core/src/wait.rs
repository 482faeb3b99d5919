//! Waiting for cancellation: the [`Cancellation`] future, blocking waits, and join waiters.
//!
//! A waiter is an intrusive entry plus a `Waker` slot inside the future, so waiting allocates
//! nothing and any number of futures can wait on one node. The slot is guarded by the node's
//! list lock, like the entry itself: a poll stores its waker under the lock when it links (or
//! when the executor changed wakers), and the walker moves it out under the same lock when it
//! pops the entry, so no wake-up can be lost between "not cancelled yet" and "linked".
//! `Waker::clone` and `drop` are user code, so they run before taking, or after releasing, the
//! lock; only `will_wake` (a pointer comparison) and moves happen under it. The walker releases
//! the entry before it calls `wake`, so a future may be dropped while the wake-up runs.
//!
//! We started with `atomic-waker` for the slot. Since the slot is only touched together with
//! list surgery that already holds the node lock, a plain slot under that lock removed two
//! atomic read-modify-writes per waiter from the cancel path (measured: cancel waking 1,000
//! waiters went from 1.85x tokio-util's per-waiter cost to below it; see docs/BENCHMARKS.md).
#![allow(unsafe_code)]

use core::future::Future;
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::list::{self, Entry, Kind, RELEASED};
use crate::lock::Guard;
use crate::loom::UnsafeCell;
use crate::node::Node;
use crate::reason::{Cancelled, Reason};
use crate::state::{CANCELLED, JOINERS};
#[cfg(all(feature = "std", not(loom)))]
use crate::view::NodeView;

/// An entry that wakes a task.
#[repr(C)]
pub(crate) struct Waiter {
    entry: Entry,
    /// # Safety
    /// Only touched while holding the lock of the node the entry belongs to (or by the owner
    /// once the entry is detached for good, when it drops).
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the waker slot is guarded by the node lock (field docs); the entry is Sync.
unsafe impl Sync for Waiter {}

impl Waiter {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            entry: list::new_entry(kind),
            waker: UnsafeCell::new(None),
        }
    }

    /// Whether the stored waker would wake the same task as `w`.
    fn will_wake(&self, w: &Waker, _g: &Guard<'_>) -> bool {
        // SAFETY: the guard holds the node lock (field docs).
        self.waker
            .with(|p| unsafe { (*p).as_ref().is_some_and(|old| old.will_wake(w)) })
    }

    /// Replace the stored waker, returning the old one (to be dropped after unlocking).
    fn swap_waker(&self, w: Option<Waker>, _g: &Guard<'_>) -> Option<Waker> {
        // SAFETY: the guard holds the node lock (field docs).
        self.waker
            .with_mut(|p| unsafe { core::mem::replace(&mut *p, w) })
    }

    /// Poll for cancellation of `node`.
    pub(crate) fn poll_cancelled(&self, node: &Node, cx: &mut Context<'_>) -> Poll<Reason> {
        if let Some(r) = node.reason() {
            return Poll::Ready(r);
        }
        if self.entry.status() == list::IDLE {
            // First poll: clone the waker before taking the lock (user code).
            let w = cx.waker().clone();
            let g = node.lock();
            if g.seen() & CANCELLED != 0 {
                drop(g);
                drop(w);
                // SAFETY: CANCELLED seen under the lock.
                return Poll::Ready(unsafe { node.reason_unchecked() });
            }
            let old = self.swap_waker(Some(w), &g);
            // SAFETY: the guard holds the lock; the waiter is pinned (callers) and detaches on
            // drop; the pointer covers the whole waiter (the walker casts it back).
            unsafe { g.list().push_front(ptr::from_ref(self).cast::<Entry>()) };
            drop(g);
            drop(old);
            return Poll::Pending;
        }
        let g = node.lock();
        if self.entry.status() != list::LINKED {
            // Popped by the walker, so the node is cancelled.
            drop(g);
            return Poll::Ready(node.reason().unwrap_or(Reason::Requested));
        }
        if self.will_wake(cx.waker(), &g) {
            return Poll::Pending;
        }
        drop(g);
        let w = cx.waker().clone();
        let g = node.lock();
        if self.entry.status() != list::LINKED {
            drop(g);
            drop(w);
            return Poll::Ready(node.reason().unwrap_or(Reason::Requested));
        }
        let old = self.swap_waker(Some(w), &g);
        drop(g);
        drop(old);
        Poll::Pending
    }

    /// Poll until `node` has no children.
    pub(crate) fn poll_join(&self, node: &Node, cx: &mut Context<'_>) -> Poll<()> {
        let w = cx.waker().clone();
        let g = node.lock();
        if g.child_count() == 0 {
            if self.entry.status() == list::LINKED {
                // SAFETY: the guard holds the lock; linked in this list.
                unsafe { g.list().remove(&self.entry) };
            }
            drop(g);
            drop(w);
            return Poll::Ready(());
        }
        let old = self.swap_waker(Some(w), &g);
        let s = self.entry.status();
        if s == list::IDLE || s == RELEASED {
            // At the tail, where the walker never pops (list.rs invariant 5).
            // SAFETY: the guard holds the lock; pinned and detached on drop; whole-waiter
            // pointer.
            unsafe { g.list().push_back_join(ptr::from_ref(self).cast::<Entry>()) };
            g.set_flags(JOINERS);
        }
        drop(g);
        drop(old);
        Poll::Pending
    }

    /// Detach from `node` (the owner is going away).
    pub(crate) fn detach(&self, node: &Node) {
        let s = self.entry.status();
        if s == list::IDLE || s == RELEASED {
            return;
        }
        // SAFETY: our entry belongs to `node`'s list and we own it.
        unsafe { node.detach(&self.entry) };
    }
}

/// Take the waker of a popped waiter entry.
///
/// # Safety
/// `e` is a TAKEN waiter or join entry of the node `g` locks.
pub(crate) unsafe fn take_waker(e: *const Entry, g: &Guard<'_>) -> Option<Waker> {
    // SAFETY: TAKEN keeps the waiter alive; Waiter is repr(C) with the entry first; the lock
    // guards the slot.
    unsafe { (*e.cast::<Waiter>()).swap_waker(None, g) }
}

/// Wake every join waiter of the node `g` locks; the lock is released on return.
///
/// With `std`, a panicking waker does not stop the other joiners from being woken, and the
/// first panic is not resumed here (this runs in the middle of unlinking a child): it is
/// parked in `unwind.rs`, and the public operation that got here resumes it when done.
pub(crate) fn wake_joiners(mut g: Guard<'_>) {
    let node = g.node();
    loop {
        // SAFETY: the guard holds the lock.
        match unsafe { g.list().pop_kind(Kind::Join) } {
            None => {
                g.clear_flags(JOINERS);
                drop(g);
                break;
            }
            Some(e) => {
                // SAFETY: we popped it, so it is TAKEN; the guard holds the lock.
                let w = unsafe { take_waker(e, &g) };
                Entry::release_locked(e, &g);
                drop(g);
                if let Some(w) = w {
                    crate::lock::debug_assert_no_lock_held();
                    #[cfg(feature = "std")]
                    if let Err(p) =
                        std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| w.wake()))
                    {
                        crate::unwind::defer(p);
                    }
                    #[cfg(not(feature = "std"))]
                    w.wake();
                }
                g = node.lock();
            }
        }
    }
}

pin_project! {
    /// Future returned by [`NodeView::cancelled`]: completes with the [`Reason`] once the node
    /// is cancelled.
    ///
    /// Its waiter lives inside the future, so waiting allocates nothing; any number of futures
    /// may wait on one node and each is woken exactly once.
    ///
    /// # Cancel safety
    ///
    /// Dropping a pending `Cancellation` unlinks it in O(1); nothing is lost, and a new one
    /// can be created at any time.
    #[must_use = "futures do nothing unless polled"]
    pub struct Cancellation<'a> {
        node: &'a Node,
        #[pin]
        waiter: Waiter,
    }

    impl<'a> PinnedDrop for Cancellation<'a> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.detach(this.node);
        }
    }
}

impl<'a> Cancellation<'a> {
    pub(crate) fn new(node: &'a Node) -> Self {
        Self {
            node,
            waiter: Waiter::new(Kind::Waiter),
        }
    }
}

impl Future for Cancellation<'_> {
    type Output = Reason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reason> {
        let this = self.project();
        this.waiter.poll_cancelled(this.node, cx)
    }
}

impl core::fmt::Debug for Cancellation<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cancellation")
            .field("node", &self.node)
            .field("waiter", &self.waiter.entry)
            .finish()
    }
}

pin_project! {
    /// Future returned by [`NodeView::join`]: completes once no child of the node is alive.
    #[must_use = "futures do nothing unless polled"]
    pub struct Join<'a> {
        node: &'a Node,
        #[pin]
        waiter: Waiter,
    }

    impl<'a> PinnedDrop for Join<'a> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.detach(this.node);
        }
    }
}

impl<'a> Join<'a> {
    pub(crate) fn new(node: &'a Node) -> Self {
        Self {
            node,
            waiter: Waiter::new(Kind::Join),
        }
    }
}

impl Future for Join<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        this.waiter.poll_join(this.node, cx)
    }
}

impl core::fmt::Debug for Join<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Join")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Future returned by [`NodeView::run_until_cancelled`].
    ///
    /// Resolves to `Ok(output)` if the inner future finishes first, or
    /// `Err(Cancelled)` carrying the reason once the node is cancelled. The inner future is
    /// polled first, so a future that is ready wins even if the node is cancelled.
    #[must_use = "futures do nothing unless polled"]
    pub struct RunUntilCancelled<'a, F> {
        #[pin]
        future: F,
        #[pin]
        cancelled: Cancellation<'a>,
    }
}

impl<'a, F> RunUntilCancelled<'a, F> {
    pub(crate) fn new(node: &'a Node, future: F) -> Self {
        Self {
            future,
            cancelled: Cancellation::new(node),
        }
    }
}

impl<F: Future> Future for RunUntilCancelled<'_, F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.cancelled.poll(cx) {
            Poll::Ready(r) => Poll::Ready(Err(Cancelled::new(r))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> core::fmt::Debug for RunUntilCancelled<'_, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RunUntilCancelled")
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

/// Block the current thread until `node` is cancelled or `deadline` passes.
#[cfg(all(feature = "std", not(loom)))]
pub(crate) fn block(node: &NodeView, deadline: Option<std::time::Instant>) -> Option<Reason> {
    use core::pin::pin;
    use core::sync::atomic::{AtomicBool, Ordering};

    if let Some(r) = node.reason() {
        return Some(r);
    }
    let done = AtomicBool::new(false);
    let thread = std::thread::current();
    // SAFETY: the registration is pinned in this frame and dropped before `done` and
    // `thread` (declared earlier), on return and on unwind; it cannot be leaked.
    let cb = pin!(unsafe {
        crate::Callback::new_unchecked(node, |_: &Reason| {
            done.store(true, Ordering::Release);
            thread.unpark();
        })
    });
    if cb.as_ref().try_register().is_err() {
        return node.reason();
    }
    loop {
        if done.load(Ordering::Acquire) {
            break;
        }
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = std::time::Instant::now();
                if now >= d {
                    break;
                }
                std::thread::park_timeout(d - now);
            }
        }
    }
    let reason = node.reason();
    // `cb` drops here, after `done` and `thread` are no longer needed by us: its drop waits for
    // a callback still running on the cancelling thread, so the closure's borrows stay valid.
    reason
}

/// Drive a future to completion on this thread (used for blocking joins).
#[cfg(all(feature = "std", not(loom)))]
pub(crate) fn block_on<F: Future>(f: F, deadline: Option<std::time::Instant>) -> Option<F::Output> {
    use alloc::sync::Arc;
    use core::pin::pin;
    use std::task::Wake;

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = std::time::Instant::now();
                if now >= d {
                    return None;
                }
                std::thread::park_timeout(d - now);
            }
        }
    }
}
