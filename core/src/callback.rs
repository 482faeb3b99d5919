//! Callbacks that run once, on the cancelling thread, outside every lock.
//!
//! A [`Callback`] is a pinned registration: its list entry and its closure live inside it, so
//! registering allocates nothing. The rules follow C++ `std::stop_callback`:
//!
//! * the callback runs exactly once: inline in `register` if the node is already cancelled, or
//!   on the thread that cancels the node;
//! * dropping the registration guarantees the callback is not running and will not run: if a
//!   walker on another thread is running it, the drop waits for it to return;
//! * dropping the registration from *inside* its own callback does not wait (that would
//!   deadlock): the walker is told not to touch the registration again. This needs thread
//!   identity, so it works with `std`; without `std` such a drop would spin forever, so don't.
//!
//! # Invariants
//!
//! 1. `runner` is written by the walker under the node's lock when it pops the entry, and read
//!    by `drop` under the same lock.
//! 2. `destroyed` is written by the walker before calling the closure and read only by a drop
//!    on the walker's own thread (so it never races).
//! 3. The closure is moved out of the registration before it runs, so a registration dropped
//!    from inside its callback does not free the running closure.
#![allow(unsafe_code)]

use core::cell::Cell;
use core::fmt;
use core::pin::Pin;
use core::ptr;

use crate::list::{self, Entry, Kind, RELEASED, TAKEN};
use crate::lock::Guard;
use crate::loom::UnsafeCell;
use crate::node::Node;
use crate::reason::{AlreadyCancelled, Reason};
use crate::state::CANCELLED;
use crate::view::NodeView;

/// The type-erased part of a callback registration that the walker sees.
#[repr(C)]
pub(crate) struct Header {
    entry: Entry,
    run: unsafe fn(*const Header, &Reason),
    #[cfg(any(loom, feature = "std"))]
    runner: UnsafeCell<Option<crate::loom::ThreadId>>,
    destroyed: UnsafeCell<*const Cell<bool>>,
}

/// Prepare a popped callback entry: record the running thread.
///
/// # Safety
/// `e` is a TAKEN callback entry of the node `_g` locks.
pub(crate) unsafe fn prepare(e: *const Entry, _g: &Guard<'_>) {
    let _h = e.cast::<Header>();
    #[cfg(any(loom, feature = "std"))]
    // SAFETY: invariant 1: the guard holds the node lock.
    unsafe {
        (*_h)
            .runner
            .with_mut(|p| *p = Some(crate::loom::current_thread()));
    }
}

/// Run a popped callback and release it (unless it was dropped from inside).
///
/// # Safety
/// `e` is a TAKEN callback entry prepared by [`prepare`]; no lock is held.
pub(crate) unsafe fn run(e: *const Entry, reason: &Reason) {
    let h = e.cast::<Header>();
    // SAFETY: `e` is TAKEN so the registration is alive; `run` is immutable.
    unsafe { ((*h).run)(h, reason) }
}

/// A callback registered on a node: runs once when the node is cancelled.
///
/// Create it with [`Callback::new`], pin it, then [`register`](Callback::register) it.
/// Dropping it unregisters it (waiting for a run in progress on another thread).
///
/// # Examples
///
/// ```
/// use core::pin::pin;
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use cutoff::{Callback, Node, Reason};
///
/// static HITS: AtomicU32 = AtomicU32::new(0);
/// let node = Node::new();
/// let mut cb = pin!(Callback::new(&node, |r: &Reason| {
///     assert_eq!(*r, Reason::Code(3));
///     HITS.fetch_add(1, Ordering::Relaxed);
/// }));
/// assert!(cb.as_mut().register());
/// node.cancel_with(Reason::Code(3));
/// assert_eq!(HITS.load(Ordering::Relaxed), 1);
/// ```
///
/// A `Callback` is `!Unpin`; it cannot be moved once registered:
///
/// ```compile_fail
/// fn assert_unpin<T: Unpin>() {}
/// assert_unpin::<cutoff::Callback<'static, fn(&cutoff::Reason)>>();
/// ```
#[repr(C)]
pub struct Callback<'a, F> {
    header: Header,
    node: &'a Node,
    f: UnsafeCell<Option<F>>,
}

// SAFETY: the closure is only moved out and called by one thread at a time (the walker or
// the registering thread), which requires `F: Send`; the rest is synchronised by the node.
unsafe impl<F: Send> Send for Callback<'_, F> {}
// SAFETY: shared access never touches `f` except through the node-locked protocol.
unsafe impl<F: Send> Sync for Callback<'_, F> {}

impl<F> fmt::Debug for Callback<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("entry", &self.header.entry)
            .finish_non_exhaustive()
    }
}

impl<'a, F> Callback<'a, F>
where
    F: FnOnce(&Reason) + Send + 'static,
{
    /// A registration of `f` on `node`; nothing happens until it is pinned and registered.
    ///
    /// The closure must be `'static`: a pinned registration can be leaked (`Box::pin` then
    /// `mem::forget`), and a leaked registration stays linked, so its closure may run after
    /// anything it borrowed is gone. To register a closure that borrows from the stack, use
    /// [`NodeView::with_callback`](crate::NodeView::with_callback), which keeps the
    /// registration in a frame that cannot be leaked, or the `unsafe`
    /// [`new_unchecked`](Self::new_unchecked).
    pub fn new(node: &'a NodeView, f: F) -> Self {
        // SAFETY: `F: 'static`, so a leaked registration cannot outlive what `f` uses.
        unsafe { Self::new_unchecked(node, f) }
    }
}

impl<'a, F> Callback<'a, F>
where
    F: FnOnce(&Reason) + Send,
{
    /// A registration of a closure that may borrow from its environment.
    ///
    /// # Safety
    ///
    /// The registration must not be leaked: its destructor must run before anything `f`
    /// borrows is invalidated. (Stack pinning with `core::pin::pin!` in a plain function
    /// guarantees this; pinning inside a future that itself may be leaked does not.)
    pub unsafe fn new_unchecked(node: &'a NodeView, f: F) -> Self {
        Self {
            header: Header {
                entry: list::new_entry(Kind::Callback),
                run: run_erased::<F>,
                #[cfg(any(loom, feature = "std"))]
                runner: UnsafeCell::new(None),
                destroyed: UnsafeCell::new(ptr::null()),
            },
            node: node.node(),
            f: UnsafeCell::new(Some(f)),
        }
    }

    /// Register the callback. If the node is already cancelled, the callback runs now, on
    /// this thread, and this returns `false`; otherwise it returns `true` and the callback will
    /// run on whichever thread cancels the node. Registering twice is a no-op, and so is
    /// registering one whose closure `disarm` gave back (or that already ran): it returns
    /// `true` on a live node, links nothing and will never run.
    pub fn register(self: Pin<&mut Self>) -> bool {
        match self.as_ref().try_register() {
            Ok(()) => true,
            Err(AlreadyCancelled) => {
                let reason = self.node.reason().unwrap_or(Reason::Requested);
                if let Some(f) = self.take_closure() {
                    crate::lock::debug_assert_no_lock_held();
                    f(&reason);
                }
                false
            }
        }
    }

    /// Register the callback, or return [`AlreadyCancelled`] without running it if the node
    /// is already cancelled (for callers that hold a lock the callback would take).
    /// Registering twice is a no-op (`Ok`), and so is registering one whose closure is spent
    /// (`disarm`ed or already run): `Ok` on a live node, nothing linked, nothing will run.
    pub fn try_register(self: Pin<&Self>) -> Result<(), AlreadyCancelled> {
        let this = self.get_ref();
        if this.header.entry.status() != list::IDLE {
            return Ok(());
        }
        let g = this.node.lock();
        // Re-check under the lock: another thread sharing this pinned registration may have
        // registered it meanwhile.
        if this.header.entry.status() != list::IDLE {
            return Ok(());
        }
        // SAFETY: the entry is idle, so no walker touches the slot, and writers of the slot
        // (`take_closure`) need `&mut`, which excludes this shared borrow.
        let spent = this.f.with(|p| unsafe { (*p).is_none() });
        if g.seen() & CANCELLED != 0 {
            return Err(AlreadyCancelled);
        }
        if spent {
            // Disarmed (or already run): nothing to run, so nothing to link (review F4: this
            // used to report `AlreadyCancelled` on a live node).
            return Ok(());
        }
        // SAFETY: the guard holds the lock; the registration is pinned and unlinks itself
        // before it dies; the pointer is derived from the whole registration (the walker casts
        // it back).
        unsafe { g.list().push_front(ptr::from_ref(this).cast::<Entry>()) };
        Ok(())
    }

    /// Whether the callback is registered and has not run yet.
    pub fn is_registered(&self) -> bool {
        self.header.entry.status() == list::LINKED
    }

    /// Unregister (waiting for a concurrent run to finish, as `drop` does) and give back the
    /// closure if it has not run.
    pub fn disarm(self: Pin<&mut Self>) -> Option<F> {
        self.as_ref().unregister(false);
        self.take_closure()
    }

    fn take_closure(self: Pin<&mut Self>) -> Option<F> {
        // SAFETY: `&mut` access and the entry is not linked or taken (callers ensure), so no
        // walker touches the slot.
        self.f.with_mut(|p| unsafe { (*p).take() })
    }
}

impl<F> Callback<'_, F> {
    /// Unlink, or wait for a run in progress. `dropping` says the registration is about to
    /// be freed: only then does a same-thread call (from inside the callback) tell the walker
    /// not to touch it again; a same-thread `disarm` just returns and lets the walker release
    /// the entry as usual.
    #[cfg_attr(not(any(loom, feature = "std")), allow(unused_variables))]
    fn unregister(self: Pin<&Self>, dropping: bool) {
        let e = &self.header.entry;
        let s = e.status();
        if s == list::IDLE || s == RELEASED {
            return;
        }
        let node = self.node;
        let mut g = node.lock();
        loop {
            match e.status() {
                list::LINKED => {
                    // SAFETY: the guard holds the lock and the entry is linked in its list.
                    unsafe { g.list().remove(e) };
                    break;
                }
                TAKEN => {
                    #[cfg(any(loom, feature = "std"))]
                    {
                        // SAFETY: invariant 1: `runner` is read under the node lock.
                        let runner = self.header.runner.with(|p| unsafe { *p });
                        if runner == Some(crate::loom::current_thread()) {
                            // Called from inside our own callback: never wait for ourselves.
                            // SAFETY: invariant 2: same thread as the walker, which set it.
                            let flag = self.header.destroyed.with(|p| unsafe { *p });
                            if dropping && !flag.is_null() {
                                // SAFETY: the flag lives in the walker's frame, which is below
                                // us on this very stack.
                                unsafe { (*flag).set(true) };
                            }
                            break;
                        }
                    }
                    e.wait_released(g);
                    g = node.lock();
                }
                _ => break,
            }
        }
        drop(g);
    }
}

impl<F> Drop for Callback<'_, F> {
    fn drop(&mut self) {
        // SAFETY: we are being dropped, so we were pinned if ever registered; unpinned
        // registrations are never linked.
        let this = unsafe { Pin::new_unchecked(&*self) };
        this.unregister(true);
    }
}

/// The walker's call into a `Callback<F>`.
///
/// # Safety
/// `h` is the header of a TAKEN, prepared `Callback<'_, F>`.
unsafe fn run_erased<F: FnOnce(&Reason)>(h: *const Header, reason: &Reason) {
    let this = h.cast::<Callback<'_, F>>();
    let destroyed = Cell::new(false);
    // SAFETY: invariant 2: we are the walker; the registration is alive while TAKEN.
    unsafe { (*h).destroyed.with_mut(|p| *p = &destroyed) };
    // SAFETY: the entry is TAKEN by us, so nobody else touches the slot (invariant 3).
    let f = unsafe { (*this).f.with_mut(|p| (*p).take()) };

    struct Release<'d> {
        h: *const Header,
        destroyed: &'d Cell<bool>,
    }
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            if !self.destroyed.get() {
                // SAFETY: not destroyed, so the registration still waits for this store; the
                // pointer covers the whole registration (it came from the list).
                unsafe {
                    (*self.h).destroyed.with_mut(|p| *p = ptr::null());
                    Entry::release(self.h.cast());
                }
            }
        }
    }
    let _release = Release {
        h,
        destroyed: &destroyed,
    };
    if let Some(f) = f {
        f(reason);
    }
}
