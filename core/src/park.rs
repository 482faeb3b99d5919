//! Waiting for another thread: spin a bounded number of times, then block until woken.
//!
//! The one place that names `parking_lot_core`. Every wait in the crate (a contended node
//! lock, a walker's entry to be released, a concurrent walk to finish) has the same shape:
//! a condition read from an atomic, which another thread ends with one read-modify-write
//! that also tells it whether anyone announced a wait. So a waiter
//!
//! 1. re-checks the condition, spinning with [`SpinWait`] (a few CPU hints, then a few
//!    `yield`s: about 10 rounds in all), so a short hold never costs a system call;
//! 2. then *announces* itself by setting a "someone is parked here" bit in the same atomic
//!    (a CAS that only succeeds while the condition still holds);
//! 3. then parks on the atomic's address with a `validate` closure that re-reads the word
//!    under the parking lot's queue lock and sleeps only if the condition and the bit both
//!    still hold.
//!
//! The thread that ends the condition clears the bit in the same read-modify-write and, if
//! the old value had it, calls [`wake_all`], which needs only the key (the watched object may
//! be gone by then). Because `validate` runs under
//! the queue lock that `wake_*` also takes, a waiter either sees the condition end in
//! `validate` (and does not sleep) or is already queued when the wake-up looks for it: no
//! wake-up is lost. Spurious wake-ups are harmless: every waiter loops on the condition.
//!
//! Why block at all: a spinner with a higher real-time priority than the holder never lets the
//! holder run on a shared CPU (`sched_yield` does not yield to a lower priority), so an
//! unbounded spin is a livelock under `SCHED_FIFO` (issue 11; `tests/tests/rt_priority.rs`).
//!
//! Without `std` there is nothing to block on: waits spin with `core::hint::spin_loop` (on a
//! single core, the `critical-section` feature makes every node lock a critical section, so a
//! lock is never found held). Under loom, the parking lot is a small model of its own (a loom
//! mutex over a list of `(key, loom::sync::Notify)`, with the same validate-under-the-queue-lock
//! rule) and waits park at once instead of spinning: loom then explores the announce / validate /
//! wake protocol itself, and a lost wake-up is a deadlock loom reports; it also keeps spin loops
//! out of the models' state space. Under shuttle, waits yield to shuttle's scheduler
//! (`shuttle::thread::yield_now`: a parked OS thread would stop every shuttle thread, since they
//! all run on it, and shuttle's PCT scheduler needs the yield to know a spinning thread waits for
//! another).
//!
//! Keys: a parking key is the address of the atomic the waiter watches, plus a small offset
//! when one atomic carries two conditions (the node lock and the walk share the state word).
//! The offsets stay inside the atomic, so no two conditions of different objects share a key.
#![allow(unsafe_code)]

/// Spin-then-block backoff for one wait.
pub(crate) struct Backoff {
    #[cfg(all(feature = "std", not(any(loom, shuttle))))]
    spin: parking_lot_core::SpinWait,
}

impl Backoff {
    #[inline]
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(all(feature = "std", not(any(loom, shuttle))))]
            spin: parking_lot_core::SpinWait::new(),
        }
    }

    /// Back off once. Returns `false` when the spin budget is spent and the caller should
    /// announce itself and [`park`]. Without `std` (or under shuttle) it never runs out; under
    /// loom it is spent at once (see the module docs).
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        #[cfg(all(feature = "std", not(any(loom, shuttle))))]
        {
            self.spin.spin()
        }
        #[cfg(loom)]
        {
            false
        }
        #[cfg(shuttle)]
        {
            shuttle::thread::yield_now();
            true
        }
        #[cfg(all(not(feature = "std"), not(any(loom, shuttle))))]
        {
            core::hint::spin_loop();
            true
        }
    }
}

/// Whether [`park`] can block (with `std`, and under loom; not under shuttle). Without it,
/// callers never announce a wait, since [`Backoff::spin`] never runs out.
pub(crate) const CAN_PARK: bool = cfg!(any(loom, all(feature = "std", not(shuttle))));

/// Block until woken by [`wake_all`] on `key`, if `still_waiting` (called under
/// the parking lot's queue lock) returns `true`; return at once otherwise. Spurious returns
/// are possible: callers re-check their condition.
///
/// `still_waiting` must be a plain read of atomics (no panics, no calls into this module).
#[inline]
pub(crate) fn park(key: usize, still_waiting: impl FnOnce() -> bool) {
    #[cfg(all(feature = "std", not(any(loom, shuttle))))]
    {
        // SAFETY: `still_waiting` only reads atomics (caller's contract), so it neither panics
        // nor calls into the parking lot; `before_sleep` and `timed_out` do nothing.
        unsafe {
            parking_lot_core::park(
                key,
                still_waiting,
                || {},
                |_, _| {},
                parking_lot_core::DEFAULT_PARK_TOKEN,
                None,
            );
        }
    }
    #[cfg(loom)]
    lot::park(key, still_waiting);
    #[cfg(not(any(loom, all(feature = "std", not(any(loom, shuttle))))))]
    {
        let _ = (key, still_waiting);
    }
}

/// Wake every thread parked on `key`.
#[inline]
pub(crate) fn wake_all(key: usize) {
    #[cfg(all(feature = "std", not(any(loom, shuttle))))]
    // SAFETY: `unpark_all` has no preconditions beyond not being called from `validate`.
    unsafe {
        parking_lot_core::unpark_all(key, parking_lot_core::DEFAULT_UNPARK_TOKEN);
    }
    #[cfg(loom)]
    lot::wake(key);
    #[cfg(not(any(loom, all(feature = "std", not(any(loom, shuttle))))))]
    let _ = key;
}

/// The parking lot under loom: one queue of `(key, notify)` behind a loom mutex, which plays
/// the part of `parking_lot_core`'s bucket lock (`validate` and the wake-up's callback run under
/// it).
#[cfg(loom)]
mod lot {
    use loom::sync::{Arc, Mutex, Notify};
    use std::vec::Vec;

    loom::lazy_static! {
        static ref LOT: Mutex<Vec<(usize, Arc<Notify>)>> = Mutex::new(Vec::new());
    }

    pub(super) fn park(key: usize, still_waiting: impl FnOnce() -> bool) {
        let me = {
            let mut q = LOT.lock().unwrap();
            if !still_waiting() {
                return;
            }
            let me = Arc::new(Notify::new());
            q.push((key, me.clone()));
            me
        };
        // loom's `Notify` may wake spuriously; `parking_lot_core::park` returns only once a
        // wake-up took the thread off the queue, so wait until ours did.
        loop {
            me.wait();
            if !LOT.lock().unwrap().iter().any(|(_, n)| Arc::ptr_eq(n, &me)) {
                return;
            }
        }
    }

    pub(super) fn wake(key: usize) {
        LOT.lock().unwrap().retain(|(k, n)| {
            if *k != key {
                return true;
            }
            n.notify();
            false
        });
    }
}
