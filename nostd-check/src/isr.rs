//! `--features critical-section`: a `static` root cancelled from an interrupt handler and
//! awaited by an async task on a minimal executor, as on a single-core MCU.
//!
//! The host stands in for the MCU: the interrupt is the POSIX signal `SIGUSR1`, its handler is
//! the interrupt service routine, and "masking interrupts" is blocking that signal. The
//! `critical-section` implementation below (`set_impl!`) does exactly that, so it is the
//! equivalent of `cortex-m`'s `critical-section-single-core` (read PRIMASK, `cpsid i`; restore
//! on release). A signal raised while it is blocked stays pending and is delivered when it is
//! unblocked, as a pending interrupt is taken when interrupts are enabled again.
//!
//! To show that an interrupt is held off while `cutoff` holds a node lock (and would otherwise
//! spin forever on that lock), the implementation can raise the signal from inside its own
//! `acquire`, i.e. while the main code is about to take a node lock. The handler checks that it
//! only ever runs outside every critical section.

use core::pin::pin;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering::Relaxed};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use cutoff::{Callback, ChildNode, Node, Reason};

use crate::check;

/// The "interrupt" line.
const IRQ: libc::c_int = libc::SIGUSR1;

/// Cancelled when the stop button is pressed (from its interrupt handler).
static STOP: Node = Node::new();

// ---- the "hardware": interrupt masking as a critical-section implementation ----------------

struct MaskIrq;
critical_section::set_impl!(MaskIrq);

/// Critical sections entered and not left yet, nested ones included.
static NEST: AtomicU32 = AtomicU32::new(0);
/// Raise the interrupt in the N-th `acquire` from now (0: never).
static RAISE_IN: AtomicU32 = AtomicU32::new(0);
/// The interrupt was raised while masked (it had to wait).
static RAISED_MASKED: AtomicBool = AtomicBool::new(false);

fn irq_set() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; `sigemptyset` initialises it.
    let mut set = unsafe { core::mem::zeroed() };
    // SAFETY: `set` is a valid `sigset_t` and `IRQ` a valid signal number.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, IRQ);
    }
    set
}

// SAFETY: `acquire` masks the interrupt (blocks the signal) and reports whether it was masked
// already; `release` unmasks only if it was not, so nested sections restore in order. The
// program is single-threaded: masking the only interrupt excludes every other context.
unsafe impl critical_section::Impl for MaskIrq {
    unsafe fn acquire() -> bool {
        let set = irq_set();
        // SAFETY: as in `irq_set`.
        let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: valid pointers to signal sets.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) };
        NEST.fetch_add(1, Relaxed);
        if RAISE_IN.load(Relaxed) != 0 && RAISE_IN.fetch_sub(1, Relaxed) == 1 {
            // The interrupt arrives now, with interrupts masked: it stays pending.
            RAISED_MASKED.store(true, Relaxed);
            // SAFETY: raising a signal we handle.
            unsafe { libc::raise(IRQ) };
        }
        // SAFETY: `old` was filled in by `sigprocmask`.
        unsafe { libc::sigismember(&old, IRQ) == 1 }
    }

    unsafe fn release(was_masked: bool) {
        NEST.fetch_sub(1, Relaxed);
        if !was_masked {
            let set = irq_set();
            // SAFETY: a valid signal set; a pending interrupt is taken right here.
            unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, core::ptr::null_mut()) };
        }
    }
}

// ---- the interrupt handler -----------------------------------------------------------------

/// Interrupts taken.
static IRQS: AtomicU32 = AtomicU32::new(0);
/// An interrupt was taken inside a critical section (must never happen).
static TAKEN_MASKED: AtomicBool = AtomicBool::new(false);
/// We are inside the interrupt handler.
static IN_ISR: AtomicBool = AtomicBool::new(false);

/// The interrupt service routine (on a Cortex-M: `#[interrupt] fn EXTI0()`).
extern "C" fn on_irq(_: libc::c_int) {
    if NEST.load(Relaxed) != 0 {
        TAKEN_MASKED.store(true, Relaxed);
    }
    IN_ISR.store(true, Relaxed);
    IRQS.fetch_add(1, Relaxed);
    STOP.cancel_with(Reason::Code(7));
    IN_ISR.store(false, Relaxed);
}

// ---- the task and its executor -------------------------------------------------------------

/// Set by the waker: the task wants to be polled.
static RUN: AtomicBool = AtomicBool::new(true);
/// The task was woken from inside the interrupt handler.
static WOKEN_IN_ISR: AtomicBool = AtomicBool::new(false);

fn waker() -> Waker {
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(core::ptr::null(), &VTABLE)
    }
    fn wake(_: *const ()) {
        WOKEN_IN_ISR.store(IN_ISR.load(Relaxed), Relaxed);
        RUN.store(true, Relaxed);
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, noop);
    // SAFETY: the functions ignore the data pointer and only touch atomics.
    unsafe { Waker::from_raw(RawWaker::new(core::ptr::null(), &VTABLE)) }
}

/// Works until stopped; returns why it stopped.
async fn worker() -> Reason {
    STOP.cancelled().await
}

pub(crate) fn run() -> Result<(), i32> {
    // SAFETY: installing a handler that only touches atomics and `cutoff` nodes.
    unsafe {
        libc::signal(
            IRQ,
            on_irq as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };

    // A pinned child of the static root, with a callback: it runs in the interrupt handler.
    static CB_IN_ISR: AtomicBool = AtomicBool::new(false);
    let mut child = pin!(ChildNode::new(&STOP));
    let child = child.as_mut().link();
    let mut cb = pin!(Callback::new(child, |_: &Reason| {
        CB_IN_ISR.store(IN_ISR.load(Relaxed), Relaxed);
    }));
    check(cb.as_mut().register(), 201)?;

    // The executor. The interrupt arrives while the task's first poll is taking the root's lock
    // to register its waiter: it is held off until that lock is released, then cancels the root
    // and wakes the task from the handler.
    let mut task = pin!(worker());
    let waker = waker();
    let mut cx = Context::from_waker(&waker);
    RAISE_IN.store(1, Relaxed);
    let mut polls = 0;
    let mut reason = None;
    for _ in 0..10 {
        if RUN.swap(false, Relaxed) {
            polls += 1;
            if let Poll::Ready(r) = task.as_mut().poll(&mut cx) {
                reason = Some(r);
                break;
            }
        }
        // Idle: a real executor would wait for an interrupt here (`wfi`).
    }
    check(RAISED_MASKED.load(Relaxed), 202)?;
    check(IRQS.load(Relaxed) == 1, 203)?;
    check(!TAKEN_MASKED.load(Relaxed), 204)?;
    check(reason == Some(Reason::Code(7)), 205)?;
    check(polls == 2, 206)?;
    check(WOKEN_IN_ISR.load(Relaxed), 207)?;
    check(CB_IN_ISR.load(Relaxed), 208)?;
    check(child.reason() == Some(Reason::Code(7)), 209)?;
    check(NEST.load(Relaxed) == 0, 211)?;
    Ok(())
}

/// An interrupt in the middle of a cancel walk: the main code cancels a subtree of a root (hand
/// over hand down a chain) and the interrupt, arriving while it holds two node locks, cancels
/// the root. It runs at the walk's next step boundary; the walk then finishes its subtree.
pub(crate) fn run_mid_walk() -> Result<(), i32> {
    static ROOT: Node = Node::new();
    static WALKS: AtomicU32 = AtomicU32::new(0);
    /// The deepest node of the chain the main code is cancelling.
    static DEEPEST: AtomicPtr<Node> = AtomicPtr::new(core::ptr::null_mut());
    /// The interrupt came while that walk was still on its way down.
    static MID_WALK: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_irq2(_: libc::c_int) {
        if NEST.load(Relaxed) != 0 {
            TAKEN_MASKED.store(true, Relaxed);
        }
        WALKS.fetch_add(1, Relaxed);
        let deepest = DEEPEST.load(Relaxed);
        // SAFETY: set below to a node that outlives the walk the interrupt arrives in.
        MID_WALK.store(
            !deepest.is_null() && !unsafe { &*deepest }.is_cancelled(),
            Relaxed,
        );
        ROOT.cancel_with(Reason::Code(9));
    }
    // SAFETY: as in `run`.
    unsafe {
        libc::signal(
            IRQ,
            on_irq2 as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };

    let mut a = pin!(ChildNode::new(&ROOT));
    let a = a.as_mut().link();
    let mut b = pin!(ChildNode::new(a));
    let b = b.as_mut().link();
    let mut c = pin!(ChildNode::new(b));
    let c = c.as_mut().link();
    let mut d = pin!(ChildNode::new(c));
    let d = d.as_mut().link();
    DEEPEST.store(core::ptr::from_ref(d).cast_mut(), Relaxed);
    let mut sibling = pin!(ChildNode::new(&ROOT));
    let sibling = sibling.as_mut().link();

    // Raise it in the 3rd acquire of `a.cancel()`: lock `a`, relock `a` for the first step,
    // then lock `b` while holding `a` (a nested section).
    RAISED_MASKED.store(false, Relaxed);
    TAKEN_MASKED.store(false, Relaxed);
    RAISE_IN.store(3, Relaxed);
    check(a.cancel_with(Reason::Code(1)), 221)?;
    check(RAISED_MASKED.load(Relaxed), 222)?;
    check(WALKS.load(Relaxed) == 1, 223)?;
    check(!TAKEN_MASKED.load(Relaxed), 224)?;
    check(ROOT.reason() == Some(Reason::Code(9)), 225)?;
    check(sibling.reason() == Some(Reason::Code(9)), 226)?;
    for n in [a, b, c, d] {
        check(n.reason() == Some(Reason::Code(1)), 227)?;
    }
    check(NEST.load(Relaxed) == 0, 228)?;
    check(MID_WALK.load(Relaxed), 229)?;
    DEEPEST.store(core::ptr::null_mut(), Relaxed);
    Ok(())
}
