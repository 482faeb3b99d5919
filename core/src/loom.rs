//! The one place that names `core::sync`, `std::thread`, `loom` or `shuttle`.
//!
//! Every atomic, cell and thread id in the crate comes from here (waits live in `park.rs`),
//! so that building with `RUSTFLAGS="--cfg loom"` swaps them all for `loom`'s model-checked versions. In a normal
//! build, [`model`] just runs its closure, so the loom models also run under `cargo test`.
//!
//! Under `RUSTFLAGS="--cfg shuttle"` the atomics and the thread ids come from `shuttle`
//! instead (and `park.rs` yields to shuttle's scheduler), for randomized schedule
//! exploration (`core/tests/shuttle.rs`). Shuttle runs every atomic operation as `SeqCst`, so
//! it explores interleavings of the threads, not weak memory: orderings are loom's job. Cells
//! stay `core`'s (shuttle does not track them). Shuttle builds need the `std` feature.
#![allow(dead_code, unreachable_pub, unused_imports)]

#[cfg(all(loom, shuttle))]
compile_error!("cutoff: `--cfg loom` and `--cfg shuttle` are exclusive");
#[cfg(all(shuttle, not(feature = "std")))]
compile_error!("cutoff: `--cfg shuttle` builds need the `std` feature");

#[cfg(loom)]
mod inner {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering, fence};
    }
    pub(crate) type ThreadId = loom::thread::ThreadId;

    pub(crate) fn current_thread() -> ThreadId {
        loom::thread::current().id()
    }
}

#[cfg(not(loom))]
mod inner {
    #[cfg(all(not(feature = "portable-atomic"), not(shuttle)))]
    pub(crate) mod atomic {
        pub(crate) use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering, fence};
    }
    #[cfg(all(feature = "portable-atomic", not(shuttle)))]
    pub(crate) mod atomic {
        pub(crate) use portable_atomic::{AtomicU8, AtomicUsize, Ordering, fence};
    }

    /// `core::cell::UnsafeCell` with loom's closure-based API, so both builds share code.
    #[derive(Debug)]
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        #[inline(always)]
        pub(crate) const fn new(value: T) -> Self {
            Self(core::cell::UnsafeCell::new(value))
        }
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// Shuttle's atomics (every operation is a scheduling point, run as `SeqCst`).
    #[cfg(shuttle)]
    pub(crate) mod atomic {
        pub(crate) use shuttle::sync::atomic::{AtomicU8, AtomicUsize, Ordering, fence};
    }

    #[cfg(all(feature = "std", not(shuttle)))]
    pub(crate) type ThreadId = std::thread::ThreadId;
    #[cfg(all(feature = "std", not(shuttle)))]
    pub(crate) fn current_thread() -> ThreadId {
        std::thread::current().id()
    }

    /// Shuttle's threads share one OS thread, so only shuttle's ids tell them apart.
    #[cfg(shuttle)]
    pub(crate) type ThreadId = shuttle::thread::ThreadId;
    #[cfg(shuttle)]
    pub(crate) fn current_thread() -> ThreadId {
        shuttle::thread::current().id()
    }
}

pub(crate) use inner::*;

/// An `AtomicPtr` usable in a `static` (never modelled by loom or shuttle: it only holds a
/// registry of `'static` vtables).
#[cfg(not(feature = "portable-atomic"))]
pub(crate) type StaticAtomicPtr<T> = core::sync::atomic::AtomicPtr<T>;
/// An `AtomicPtr` usable in a `static` (never modelled by loom).
#[cfg(feature = "portable-atomic")]
pub(crate) type StaticAtomicPtr<T> = portable_atomic::AtomicPtr<T>;

/// Run a loom model (under `cfg(loom)`), or just run `f` once.
#[cfg(all(test, loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Run a loom model (under `cfg(loom)`), or just run `f` once.
#[cfg(all(test, not(loom)))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    f();
}
