//! A `#![no_std]` `#![no_main]` program that uses `cutoff` with default features off.
//!
//! It exists to prove two things in CI (see README.md): that `cutoff` without `std` really
//! does not pull `std` in (if it did, linking this binary fails with a duplicate
//! `panic_impl` lang item next to our `#[panic_handler]`), and that the pinned API works end
//! to end without an allocator. With `--features critical-section` it also runs the bare-metal
//! example: a `static` root cancelled from an interrupt handler (`isr.rs`). It links against
//! the system C library only for its start files, `main`'s calling convention and `abort` (and,
//! with `critical-section`, for the signal that stands in for the interrupt); it exits 0 on
//! success and with the number of the first failed check otherwise.
#![no_std]
#![no_main]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "critical-section")]
mod isr;

use core::pin::pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};

use cutoff::{AnyOf, Callback, ChildNode, Node, Reason};

/// A root built by a `const fn`, as an embedded program would have it.
static ROOT: Node = Node::new();

#[link(name = "c")]
unsafe extern "C" {
    fn abort() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: `abort` has no preconditions.
    unsafe { abort() }
}

/// The precompiled `core` for this target is built with unwinding and its unwind tables
/// name this symbol. With `panic = "abort"` nothing ever unwinds, so it is never called; it
/// only has to exist for the linker. (A real `std` in the link would bring its own and the
/// duplicate `panic_impl` lang item would fail the build first.)
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Entry point, called by the C runtime's start files.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    match run().and_then(|()| run_alloc()).and_then(|()| run_isr()) {
        Ok(()) => 0,
        Err(code) => code,
    }
}

#[cfg(not(feature = "critical-section"))]
fn run_isr() -> Result<(), i32> {
    Ok(())
}

/// A `static` root cancelled from an interrupt handler (`critical-section`, see `isr.rs`).
#[cfg(feature = "critical-section")]
fn run_isr() -> Result<(), i32> {
    isr::run()?;
    isr::run_mid_walk()
}

/// Fail with `code` unless `cond` holds.
fn check(cond: bool, code: i32) -> Result<(), i32> {
    if cond { Ok(()) } else { Err(code) }
}

fn run() -> Result<(), i32> {
    check(!ROOT.is_cancelled(), 1)?;

    // A pinned child on the stack, and a pinned grandchild under it.
    let mut child = pin!(ChildNode::new(&ROOT));
    let child = child.as_mut().link();
    let mut grandchild = pin!(ChildNode::new(child));
    let grandchild = grandchild.as_mut().link();
    check(ROOT.has_children(), 2)?;
    check(!grandchild.is_cancelled(), 3)?;

    // A callback on the child. Its closure must be `'static`, so what it records goes to
    // statics (`run` runs once per process).
    static HITS: AtomicU32 = AtomicU32::new(0);
    static CODE: AtomicU32 = AtomicU32::new(0);
    let mut cb = pin!(Callback::new(child, |r: &Reason| {
        HITS.fetch_add(1, Ordering::Relaxed);
        if let Reason::Code(c) = r {
            CODE.store(*c, Ordering::Relaxed);
        }
    }));
    check(cb.as_mut().register(), 4)?;

    // A node with two parents: a local root and the grandchild.
    let other = Node::new();
    let mut any = pin!(AnyOf::new([&*other, grandchild]));
    let any = any.as_mut().link();

    // A waiter, polled once with a no-op waker.
    let mut fut = pin!(any.cancelled());
    let mut cx = Context::from_waker(Waker::noop());
    check(fut.as_mut().poll(&mut cx).is_pending(), 5)?;

    // Cancel the static root with an application code.
    check(ROOT.cancel_with(Reason::Code(42)), 6)?;
    check(!ROOT.cancel_with(Reason::Code(7)), 7)?;
    check(ROOT.reason() == Some(Reason::Code(42)), 8)?;
    check(child.reason() == Some(Reason::Code(42)), 9)?;
    check(grandchild.reason() == Some(Reason::Code(42)), 10)?;
    check(any.reason() == Some(Reason::Code(42)), 11)?;
    check(!other.is_cancelled(), 12)?;
    check(HITS.load(Ordering::Relaxed) == 1, 13)?;
    check(CODE.load(Ordering::Relaxed) == 42, 14)?;
    check(
        fut.as_mut().poll(&mut cx) == Poll::Ready(Reason::Code(42)),
        15,
    )?;

    // A child of a cancelled parent is born cancelled with the parent's reason.
    let mut late = pin!(ChildNode::new(&ROOT));
    let late = late.as_mut().link();
    check(late.reason() == Some(Reason::Code(42)), 16)?;

    // `try_register` on a cancelled node reports instead of running inline.
    static RAN_LATE: AtomicU32 = AtomicU32::new(0);
    let late_cb = pin!(Callback::new(late, |_: &Reason| {
        RAN_LATE.fetch_add(1, Ordering::Relaxed);
    }));
    check(late_cb.as_ref().try_register().is_err(), 17)?;
    check(RAN_LATE.load(Ordering::Relaxed) == 0, 18)?;

    // A scoped callback whose closure borrows from the stack: runs on a cancel inside the
    // scope, runs at once on a cancelled node, and is unregistered once the scope is left.
    let mut scoped = pin!(ChildNode::new(&other));
    let scoped = scoped.as_mut().link();
    let runs = AtomicU32::new(0);
    let bump = |_: &Reason| {
        runs.fetch_add(1, Ordering::Relaxed);
    };
    scoped.with_callback(bump, || {});
    check(runs.load(Ordering::Relaxed) == 0, 19)?;
    let inside = scoped.with_callback(bump, || {
        let before = runs.load(Ordering::Relaxed);
        scoped.cancel_with(Reason::Code(9));
        (before, runs.load(Ordering::Relaxed))
    });
    check(inside == (0, 1), 20)?;
    let inline = scoped.with_callback(bump, || runs.load(Ordering::Relaxed));
    check(inline == 2, 21)?;
    check(!other.is_cancelled(), 22)?;
    Ok(())
}

#[cfg(not(feature = "alloc"))]
fn run_alloc() -> Result<(), i32> {
    Ok(())
}

/// The heap handles, on a bump allocator.
#[cfg(feature = "alloc")]
fn run_alloc() -> Result<(), i32> {
    use cutoff::CancelSource;

    let server = CancelSource::new();
    let conn = server.child();
    let token = conn.token();
    {
        // A pinned grandchild under a heap child.
        let mut req = pin!(ChildNode::new(&token));
        let req = req.as_mut().link();
        check(server.has_children(), 101)?;
        check(server.cancel_with(Reason::Shutdown), 102)?;
        check(token.reason() == Some(Reason::Shutdown), 103)?;
        check(req.reason() == Some(Reason::Shutdown), 104)?;
    }
    drop(conn);
    check(server.has_children(), 105)?; // the token still holds the child
    drop(token);
    check(!server.has_children(), 106)?;
    check(bump::used() > 0, 107)?;
    Ok(())
}

#[cfg(feature = "alloc")]
mod bump {
    //! A minimal bump allocator over a static buffer; frees are no-ops.
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    const SIZE: usize = 64 * 1024;

    #[repr(align(64))]
    struct Arena(UnsafeCell<[u8; SIZE]>);

    struct Bump {
        arena: Arena,
        next: AtomicUsize,
    }

    // SAFETY: disjoint regions are handed out by an atomic bump pointer.
    unsafe impl Sync for Bump {}

    #[global_allocator]
    static HEAP: Bump = Bump {
        arena: Arena(UnsafeCell::new([0; SIZE])),
        next: AtomicUsize::new(0),
    };

    pub(crate) fn used() -> usize {
        HEAP.next.load(Ordering::Relaxed)
    }

    // SAFETY: every block returned is in bounds, aligned, and never handed out twice.
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let base = self.arena.0.get().cast::<u8>();
            let mut cur = self.next.load(Ordering::Relaxed);
            loop {
                let start = (cur + layout.align() - 1) & !(layout.align() - 1);
                let end = match start.checked_add(layout.size()) {
                    Some(end) if end <= SIZE => end,
                    _ => return core::ptr::null_mut(),
                };
                match self.next.compare_exchange_weak(
                    cur,
                    end,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    // SAFETY: `start..end` is inside the arena.
                    Ok(_) => return unsafe { base.add(start) },
                    Err(actual) => cur = actual,
                }
            }
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
    }
}
