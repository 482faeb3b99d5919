//! Bare metal: which features fit which targets, and a `static` root cancelled from an
//! interrupt handler. (Documentation only.)
//!
//! `cutoff` is `#![no_std]` and its pinned API needs no allocator: a root is a `static`
//! ([`Node::new`](crate::Node::new) is a `const fn`), children, callbacks and waiters live in
//! the stack frames and futures that own them, and [`cancelled`](crate::NodeView::cancelled)
//! is an allocation-free future any executor can poll.
//!
//! # Which features for which target
//!
//! | target | atomics | `cutoff` features | also needed |
//! |---|---|---|---|
//! | `thumbv6m-none-eabi` (Cortex-M0/M0+), `riscv32imc` (no `A` extension) | load and store only: no compare-and-swap | `default-features = false`, `["portable-atomic", "critical-section"]` | `portable-atomic` with its `critical-section` feature (or `unsafe-assume-single-core`), and a `critical-section` implementation |
//! | `thumbv7m`, `thumbv7em`, `thumbv8m.main` (Cortex-M3/M4/M7/M33), `riscv32imac` | native compare-and-swap | `default-features = false`; add `"critical-section"` only when an interrupt handler may cancel (or otherwise lock a node, see below) | a `critical-section` implementation, with that feature |
//! | any of the above with a heap (`#[global_allocator]`) | | add `"alloc"` | |
//! | hosted (Linux, macOS, Windows) | | the defaults (`std`) | |
//!
//! A `critical-section` implementation comes from the platform crate, for example
//! `cortex-m` with its `critical-section-single-core` feature on a single-core Cortex-M, `riscv`
//! with `critical-section-single-hart` on a single-hart RISC-V, or the HAL of a multi-core chip
//! (`rp2040-hal`, `esp-hal`), whose implementation is a spinlock plus an interrupt mask. On a
//! thumbv6m part, for example:
//!
//! ```toml
//! [dependencies]
//! cutoff = { version = "0.1", default-features = false, features = ["portable-atomic", "critical-section"] }
//! portable-atomic = { version = "1", default-features = false, features = ["critical-section"] }
//! cortex-m = { version = "0.7", features = ["critical-section-single-core"] }
//! ```
//!
//! # Why `critical-section` when an interrupt handler cancels
//!
//! A node's list (its children, callbacks and waiters) is guarded by a lock bit in its state
//! word, held for a few pointer writes. Without the feature a contended locker spins. On one
//! core an interrupt handler that cancels a node while the code it interrupted holds that
//! node's lock (say, the main loop is registering a callback on it) would spin forever: the
//! holder cannot run again until the handler returns. With `critical-section`, every node lock
//! is also held inside a critical section (interrupts masked, on a single core), so a handler
//! can only run when no node is locked and never spins. The locks are taken hand over hand
//! (parent, then child, then the parent is released), which critical sections cannot express
//! directly; `cutoff` counts the node locks held and leaves the critical section when the
//! count returns to 0.
//!
//! Only operations that lock a node need it: cancelling, linking a child, registering or
//! dropping a callback, polling or dropping a waiter, dropping a child. An interrupt handler
//! that only *reads* ([`is_cancelled`](crate::NodeView::is_cancelled),
//! [`reason`](crate::NodeView::reason)) needs nothing: those are plain atomic loads.
//!
//! # What each feature costs
//!
//! * **`critical-section`**: each node lock enters the critical section (on a single-core
//!   Cortex-M: read `PRIMASK`, `cpsid i`; the last unlock restores it), and the second lock of a
//!   hand-over-hand pair enters and leaves a nested one at once. Interrupts are masked only
//!   while a node is locked, which is never while user code runs: callbacks and wakers run with
//!   interrupts enabled. The cancel walk lets go of its lock between steps (each child, each
//!   callback, each batch of up to 32 wakers), so the longest stretch with interrupts masked does
//!   not grow with the size or depth of the tree. (One exception: when the last child of a node
//!   that has [`join`](crate::NodeView::join) waiters goes away, the node's list is scanned
//!   for them.) Static data: a lock counter and the saved restore state. With the feature off,
//!   the generated code is exactly what it was before the feature existed.
//! * **`portable-atomic`**: the state word's read-modify-writes (lock, unlock, cancel,
//!   reference counts) go through `portable-atomic`, which on a target without
//!   compare-and-swap makes each one a short critical section (or, with
//!   `unsafe-assume-single-core`, an interrupt-masked sequence). Loads, such as
//!   `is_cancelled()`, stay single loads. On targets with native atomics it compiles to them.
//! * **`alloc`**: the heap handles ([`CancelSource`](crate::CancelSource),
//!   [`CancelToken`](crate::CancelToken), `OnCancel`, `DropGuard`) and `Reason::Error`: one
//!   allocation per heap node. Needs a `#[global_allocator]`. The pinned API never allocates.
//! * **`std`** (hosted only): blocking waits, panic isolation in callbacks, thread identity.
//!
//! # Rules for interrupt handlers
//!
//! * A handler may cancel, read, and create and drop nodes and registrations it owns for the
//!   length of its own run (they live in its stack frame).
//! * A handler must not drop a child, a registration or a waiter that the interrupted code
//!   might be cancelling at that moment: the drop would wait for a walk that cannot continue
//!   until the handler returns.
//! * Callbacks and wakers on a node that a handler cancels run in the handler: keep them short
//!   and interrupt-safe (set a flag, wake a task), as any interrupt code must be.
//! * Without `std`, a `cancel()` that finds a walk already in progress (in the code it
//!   interrupted) returns at once; that walk completes after the handler returns. With `std`
//!   it would wait for that walk, so on a single core do not cancel from an interrupt handler in
//!   a build with `std`.
//!
//! # Example
//!
//! A `static` root cancelled from an interrupt handler and awaited by an async task, polled
//! by a minimal executor (run as a test on the host, where the "interrupt" is a plain call;
//! `nostd-check/` in the repository runs the same program as a `#![no_std]` binary with the
//! `critical-section` feature):
//!
//! ```
//! use core::pin::pin;
//! use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
//! use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
//! use cutoff::{Node, Reason};
//!
//! /// Cancelled when the stop button is pressed.
//! static STOP: Node = Node::new();
//!
//! /// The button's interrupt handler (on a Cortex-M: `#[interrupt] fn EXTI0()`).
//! fn on_stop_button() {
//!     STOP.cancel_with(Reason::Code(1));
//! }
//!
//! /// Set by the waker (possibly from the interrupt): the task wants to be polled.
//! static RUN: AtomicBool = AtomicBool::new(true);
//!
//! fn waker() -> Waker {
//!     fn clone(_: *const ()) -> RawWaker {
//!         RawWaker::new(core::ptr::null(), &VTABLE)
//!     }
//!     fn wake(_: *const ()) {
//!         RUN.store(true, Ordering::Release);
//!     }
//!     fn noop(_: *const ()) {}
//!     static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, noop);
//!     // SAFETY: the functions ignore the data pointer and only touch an atomic.
//!     unsafe { Waker::from_raw(RawWaker::new(core::ptr::null(), &VTABLE)) }
//! }
//!
//! static BLINKS: AtomicU32 = AtomicU32::new(0);
//!
//! /// Blinks until stopped; returns why it stopped.
//! async fn blink() -> Reason {
//!     // A real task would await a timer: `STOP.run_until_cancelled(tick()).await`.
//!     BLINKS.fetch_add(1, Ordering::Relaxed);
//!     STOP.cancelled().await
//! }
//!
//! let mut task = pin!(blink());
//! let waker = waker();
//! let mut cx = Context::from_waker(&waker);
//! let mut idle = 0;
//! let reason = loop {
//!     if RUN.swap(false, Ordering::Acquire) {
//!         if let Poll::Ready(reason) = task.as_mut().poll(&mut cx) {
//!             break reason;
//!         }
//!     }
//!     // Nothing to run: sleep until an interrupt (`cortex_m::asm::wfi()`). Here the
//!     // button's interrupt fires on the third idle round.
//!     idle += 1;
//!     if idle == 3 {
//!         on_stop_button();
//!     }
//! };
//! assert_eq!(reason, Reason::Code(1));
//! assert_eq!(BLINKS.load(Ordering::Relaxed), 1);
//! assert_eq!(idle, 3); // woken once, by the cancel in the handler
//! ```
