//! The one place that names `std::sync` primitives, `parking_lot` or `loom`, so that building
//! with `RUSTFLAGS="--cfg loom"` puts every lock, atomic and park of the timer's protocols under
//! the model checker. (Clocks, thread-locals' bookkeeping and the driver thread's parking are
//! not modelled: models use manual timers, which have no thread.)
//!
//! # Blocking, not spinning
//!
//! Every wait of one thread for another in this crate spins a bounded, small number of times
//! and then blocks in the kernel until it is woken: the shard lock is a `parking_lot` mutex,
//! and the wait for a deadline being fired ([`park`] / [`wake_all_with`]) is `parking_lot_core`'s
//! address-keyed parking. A spin-then-yield loop never makes progress when the waiter has a
//! higher real-time priority (`SCHED_FIFO`) than the holder on the same CPU: `sched_yield`
//! only yields to threads of the same priority.
//!
//! Under loom the shard lock is loom's mutex and [`park`] / [`wake_all_with`] are a small model of
//! `parking_lot_core` (a loom-mutex-protected list of parked loom threads per address, loom's
//! `park` / `unpark`), so a lost wake-up shows up as a loom deadlock.
#![allow(dead_code, unreachable_pub, unused_imports)]
#![allow(unsafe_code)]

#[cfg(loom)]
mod inner {
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
    pub(crate) use loom::sync::{Mutex, MutexGuard};
    /// The shard lock (under loom: loom's mutex, so the model sees it block).
    pub(crate) type ShardLock<T> = loom::sync::Mutex<T>;
    pub(crate) type ShardGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    pub(crate) fn lock_shard<T>(m: &ShardLock<T>) -> ShardGuard<'_, T> {
        m.lock().unwrap()
    }

    /// Spin-phase back-off (under loom: let the other threads run).
    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }

    /// How many times a waiter re-checks before it parks (under loom: once, so that the
    /// models explore the parking path).
    pub(crate) const SPINS: u32 = 1;

    /// The model of `parking_lot_core`'s table: parked threads by address.
    struct Parked(loom::sync::Mutex<Vec<(usize, loom::thread::Thread)>>);

    loom::lazy_static! {
        static ref PARKED: Parked = Parked(loom::sync::Mutex::new(Vec::new()));
    }

    /// Park the calling thread on `key` if `validate()` holds, atomically with respect to
    /// [`wake_all_with`] of the same key (both take the table's lock). May return spuriously.
    pub(crate) fn park(key: usize, validate: impl FnOnce() -> bool) {
        let me = loom::thread::current();
        {
            let mut parked = PARKED.0.lock().unwrap();
            if !validate() {
                return;
            }
            parked.push((key, me));
        }
        loom::thread::park();
    }

    /// See the `std` version (nothing to do under loom).
    pub(crate) fn init_parking() {}

    /// Run `under_lock` while `key`'s queue is locked, then wake every thread parked on `key`.
    pub(crate) fn wake_all_with(key: usize, under_lock: impl FnOnce()) {
        let woken: Vec<_> = {
            let mut parked = PARKED.0.lock().unwrap();
            under_lock();
            let mut woken = Vec::new();
            parked.retain(|(k, t)| {
                if *k == key {
                    woken.push(t.clone());
                    false
                } else {
                    true
                }
            });
            woken
        };
        for t in woken {
            t.unpark();
        }
    }
}

#[cfg(not(loom))]
mod inner {
    pub(crate) use core::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
    pub(crate) use std::sync::{Mutex, MutexGuard};
    /// The shard lock: `parking_lot`'s one-byte mutex. Uncontended it is one compare-exchange
    /// to lock and one to unlock; contended it spins a few times (with a handful of
    /// `sched_yield`s) and then parks the waiter until the holder's unlock wakes it.
    pub(crate) type ShardLock<T> = parking_lot::Mutex<T>;
    pub(crate) type ShardGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    #[inline]
    pub(crate) fn lock_shard<T>(m: &ShardLock<T>) -> ShardGuard<'_, T> {
        m.lock()
    }

    /// Spin-phase back-off: a CPU hint.
    #[inline]
    pub(crate) fn spin_hint() {
        core::hint::spin_loop();
    }

    /// How many times a waiter re-checks (with a CPU hint in between) before it parks. Small:
    /// what it waits for (a cancellation, user callbacks included) is rarely shorter.
    pub(crate) const SPINS: u32 = 64;

    /// Park the calling thread on `key` if `validate()` holds, atomically with respect to
    /// [`wake_all_with`] of the same key. May return spuriously.
    ///
    /// `key` must be the address of something the caller's protocol owns (for a deadline: its
    /// entry's tag), so that nothing else parks on it while the protocol uses it.
    pub(crate) fn park(key: usize, validate: impl FnOnce() -> bool) {
        // The caller's `validate` is one atomic load and a compare; `timed_out` is a no-op,
        // and there is no timeout anyway.
        // SAFETY: `parking_lot_core::park`'s contract: `key` is an address we control (the
        // caller's); `validate` and `timed_out` neither panic nor call into the parking lot.
        unsafe {
            parking_lot_core::park(
                key,
                validate,
                || {},
                |_, _| {},
                parking_lot_core::DEFAULT_PARK_TOKEN,
                None,
            );
        }
    }

    /// Make `parking_lot_core` allocate its process-wide table of parked threads now (about
    /// 1 KiB, made on first use and never freed), so that this one-time allocation happens
    /// when a timer is made, at a predictable point, rather than at the first contended shard
    /// lock or parked drop somewhere in the middle of a program (a leak check that takes its
    /// baseline after creating the global timer, like `tests/tests/soak.rs`, then sees
    /// nothing).
    pub(crate) fn init_parking() {
        static KEY: u8 = 0;
        // SAFETY: `parking_lot_core::unpark_all`'s contract: the key is the address of our own
        // private static, on which nothing ever parks (so this wakes no one).
        unsafe {
            parking_lot_core::unpark_all(
                core::ptr::from_ref(&KEY) as usize,
                parking_lot_core::DEFAULT_UNPARK_TOKEN,
            );
        }
    }

    /// Run `under_lock` while `key`'s queue is locked, then wake every thread parked on `key`.
    ///
    /// A waiter that sees what `under_lock` stored may free the memory at `key` at once; since
    /// the store happens with the queue locked, every thread parked on `key` has been taken
    /// out of the queue before that can happen, so a later parker at a reused address is
    /// never woken by this call.
    pub(crate) fn wake_all_with(key: usize, under_lock: impl FnOnce()) {
        // SAFETY: `parking_lot_core::unpark_filter`'s contract: `key` is an address we control
        // (the caller's), and the filter and callback do not panic or call into the parking
        // lot (a constant, and the caller's single atomic store).
        unsafe {
            parking_lot_core::unpark_filter(
                key,
                |_| parking_lot_core::FilterOp::Unpark,
                |_| {
                    under_lock();
                    parking_lot_core::DEFAULT_UNPARK_TOKEN
                },
            );
        }
    }
}

pub(crate) use inner::*;

/// Lock a mutex, ignoring poisoning (the wheel's methods leave it consistent on unwind).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(loom)]
    {
        m.lock().unwrap()
    }
    #[cfg(not(loom))]
    {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}
