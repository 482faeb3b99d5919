//! Panics from user code that must not unwind through the crate's bookkeeping.
//!
//! A join waiter's `Waker::wake` runs when a node's last child unlinks (`wait::wake_joiners`),
//! which happens in the middle of freeing or dropping that child: a panic unwinding from there
//! would skip the rest (the free of a heap node, the unlink of a multi-parent node's other
//! links, which then point into freed memory). So with `std` the waker's panic is caught and
//! parked here, per thread, and resumed by the public operation that caused it (the drop of the
//! handle or pinned node, or the `cancel()` whose walker freed the node), once its bookkeeping
//! is complete (review F3). The first panic wins, as in the walker. Without `std` there is no
//! `catch_unwind`; a waker must not panic there.

/// A caught panic payload.
#[cfg(feature = "std")]
pub(crate) type Payload = alloc::boxed::Box<dyn core::any::Any + Send + 'static>;

#[cfg(all(feature = "std", not(any(loom, shuttle))))]
std::thread_local! {
    static PENDING: core::cell::RefCell<Option<Payload>> = const { core::cell::RefCell::new(None) };
}

#[cfg(all(feature = "std", loom))]
loom::thread_local! {
    static PENDING: core::cell::RefCell<Option<Payload>> = core::cell::RefCell::new(None);
}

#[cfg(all(feature = "std", shuttle))]
shuttle::thread_local! {
    static PENDING: core::cell::RefCell<Option<Payload>> = core::cell::RefCell::new(None);
}

/// Keep `p` to be resumed later (the first one wins).
#[cfg(feature = "std")]
pub(crate) fn defer(p: Payload) {
    let _ = PENDING.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(p);
        }
    });
}

/// Take the pending panic, if any.
#[cfg(feature = "std")]
pub(crate) fn take() -> Option<Payload> {
    PENDING
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
}

/// Resume the pending panic, if any (call at the end of a public operation). While this
/// thread is already unwinding (a drop during a panic), the pending one is dropped instead:
/// the first panic wins, and a second one would abort.
#[inline]
pub(crate) fn resume() {
    #[cfg(feature = "std")]
    if let Some(p) = take()
        && !std::thread::panicking()
    {
        std::panic::resume_unwind(p);
    }
}
