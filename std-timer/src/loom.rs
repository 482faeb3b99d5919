//! The one place that names `std::sync` primitives or `loom`, so that building with
//! `RUSTFLAGS="--cfg loom"` puts every lock and atomic the timer's protocols use under the
//! model checker. (Clocks, thread-locals' bookkeeping and the driver thread's parking are not
//! modelled: models use manual timers, which have no thread.)
#![allow(dead_code, unreachable_pub, unused_imports)]

#[cfg(loom)]
mod inner {
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
    pub(crate) use loom::sync::{Mutex, MutexGuard};
    /// The shard lock (under loom: loom's mutex, so the model sees it).
    pub(crate) type SpinLock<T> = loom::sync::Mutex<T>;
    pub(crate) type SpinGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    pub(crate) fn lock_spin<T>(m: &SpinLock<T>) -> SpinGuard<'_, T> {
        m.lock().unwrap()
    }

    /// Back off in a spin loop (under loom: let the other threads run).
    pub(crate) fn relax(_spins: &mut u32) {
        loom::thread::yield_now();
    }
}

#[cfg(not(loom))]
mod inner {
    pub(crate) use core::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
    };
    pub(crate) use std::sync::{Mutex, MutexGuard};
    /// The shard lock: a test-and-set lock whose release is a plain store (`std`'s mutex
    /// releases with a read-modify-write to look for sleepers; on this path that second
    /// atomic operation is a measurable share of a deadline's cost).
    pub(crate) type SpinLock<T> = spin::mutex::SpinMutex<T>;
    pub(crate) type SpinGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;

    /// Take a [`SpinLock`]: spin briefly, then yield to the OS (the holder may be preempted).
    pub(crate) fn lock_spin<T>(m: &SpinLock<T>) -> SpinGuard<'_, T> {
        let mut spins = 0u32;
        loop {
            if let Some(g) = m.try_lock_weak() {
                return g;
            }
            relax(&mut spins);
        }
    }

    /// Back off in a spin loop: a CPU hint at first, then yield to the OS.
    pub(crate) fn relax(spins: &mut u32) {
        *spins = spins.saturating_add(1);
        if *spins < 64 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
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
