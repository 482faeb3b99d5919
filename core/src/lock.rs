//! The node lock: the `LOCKED` bit of a node's state word, held through a [`Guard`].
//!
//! # Why a bit in the state word
//!
//! The lock shares the word with `CANCELLED`, the walker flags and the reference count, so
//! "cancel and close the list", "unlock and take a reference" and "cancel a leaf and unlock it"
//! are each one atomic operation. The guard's consuming methods ([`Guard::unlock_with`]) are
//! those combined operations; dropping the guard is a plain unlock.
//!
//! # Invariants
//!
//! 1. `LOCKED` is set only by [`Node::lock`] and cleared only through a [`Guard`] (its drop or
//!    [`Guard::unlock_with`]), on the thread that took it. A `Guard` exists exactly while its
//!    thread holds the lock (the walker's [`Guard::keep`] / [`Guard::assume_held`] hand one
//!    lock hold across loop iterations of one walk).
//! 2. The node's entry list, its child count (`entry.aux`) and every waiter slot in the list
//!    are only touched while the lock is held, i.e. through a live `Guard` (or by the owner of
//!    a node nobody else can reach yet).
//! 3. `LOCK_PARKED` is set only while `LOCKED` is set, by a thread about to park on the lock's
//!    key. An unlock whose old word had it wakes every thread parked on the key (they contend
//!    again, and re-announce if they must wait again), using only the key, an address: an
//!    unlock never touches the node after its read-modify-write unless the caller still holds
//!    a claim on it (ADV review F1: an unlock that dropped a reference and then cleared
//!    `LOCK_PARKED` wrote into a node another thread had freed meanwhile). The bit is cleared
//!    in the unlocking read-modify-write (plain unlocks), or right after it while the caller's
//!    claim keeps the node alive ([`Guard::unlock_alive_with`]), or left *stale* (an unlock
//!    that drops the caller's reference): a stale bit only costs the next unlock a wake-up of
//!    nobody, after which that unlock clears it. A waiter validates "`LOCKED` and
//!    `LOCK_PARKED`" under the parking lot's queue lock, so whichever way the bit is cleared,
//!    a parked waiter was queued before the unlock's wake-up or sees the change.
//! 4. No lock is held while user code runs ([`debug_assert_no_lock_held`] checks it with the
//!    `critical-section` feature).
//!
//! # Lock order
//!
//! At most two node locks at a time, parent then child (the walker, hand over hand); nothing
//! takes a parent's lock while holding a child's. Parents are older than their children, so
//! "holds A, waits for B" follows the edges of a DAG and cannot cycle.
//!
//! # Contention
//!
//! A contended locker spins briefly, then parks (with `std`; `park.rs`). Critical sections
//! are a handful of pointer writes, so the spin nearly always wins; parking is for a holder
//! that was preempted, which under `SCHED_FIFO` a higher-priority spinner would never let run.
//!
//! # The lock as a critical section (`critical-section` feature)
//!
//! On a single-core MCU an interrupt handler that cancels a node would spin forever on a lock
//! held by the code it interrupted. With the `critical-section` feature every node lock is
//! also held inside a critical section (interrupts masked on a single core), so no handler can
//! run while a node is locked. Critical sections must nest properly, but the walker locks hand
//! over hand (parent, child, then releases the parent first), so a lock cannot simply own one
//! critical section. Instead module `cs` counts the node locks held (`depth`) and keeps the
//! restore state of the outermost acquire, both in statics touched only inside the critical
//! section: [`Node::lock`] acquires (at depth 0 it keeps the restore state, otherwise it
//! releases the nested acquire at once) and increments the depth; every unlock decrements it
//! and releases the outermost acquire at 0. Because every node lock is released on the thread
//! that took it before the call into the crate returns (invariant 1), the depth equals the
//! number of node locks this thread holds (0, 1, or 2 for hand over hand) and is 0 whenever
//! user code runs. `LOCKED` is only ever held inside the critical section, so a locker inside
//! it never finds another context's `LOCKED` bit set. Without the feature (and under loom)
//! the `cs` functions are empty and inline to nothing.
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use crate::list::List;
use crate::loom::atomic::{AtomicUsize, Ordering::*};
use crate::node::Node;
use crate::park::{self, Backoff};
use crate::state::{LOCK_PARKED, LOCKED};

/// Proof that this thread holds a node's lock. Dropping it unlocks.
#[must_use = "dropping the guard unlocks the node"]
pub(crate) struct Guard<'a> {
    node: &'a Node,
    /// The state word seen when the lock was taken.
    seen: usize,
    /// Not `Send`: the lock is released on the thread that took it (invariant 1).
    _not_send: PhantomData<*const ()>,
}

/// The parking key of a node's lock: the address of its state word.
#[inline]
fn lock_key(state: &AtomicUsize) -> usize {
    core::ptr::from_ref(state) as usize
}

impl Node {
    /// Take the node's lock.
    #[inline]
    pub(crate) fn lock(&self) -> Guard<'_> {
        cs::enter();
        let state = self.state_word();
        let cur = state.load(Relaxed);
        if cur & LOCKED == 0 {
            // Test-and-set rather than compare-and-swap: a reference-count change by another
            // thread does not make the attempt fail.
            let old = state.fetch_or(LOCKED, Acquire);
            if old & LOCKED == 0 {
                return Guard::new(self, old | LOCKED);
            }
        }
        let seen = lock_slow(state);
        Guard::new(self, seen)
    }
}

#[cold]
fn lock_slow(state: &AtomicUsize) -> usize {
    let mut backoff = Backoff::new();
    loop {
        let cur = state.load(Relaxed);
        if cur & LOCKED == 0 {
            let old = state.fetch_or(LOCKED, Acquire);
            if old & LOCKED == 0 {
                return old | LOCKED;
            }
            continue;
        }
        if backoff.spin() {
            continue;
        }
        // Announce, then park while the lock is still held and the announcement still stands
        // (invariant 3; the protocol is in park.rs).
        if cur & LOCK_PARKED == 0
            && state
                .compare_exchange_weak(cur, cur | LOCK_PARKED, Relaxed, Relaxed)
                .is_err()
        {
            continue;
        }
        park::park(lock_key(state), || {
            state.load(Relaxed) & (LOCKED | LOCK_PARKED) == LOCKED | LOCK_PARKED
        });
        backoff = Backoff::new();
    }
}

impl<'a> Guard<'a> {
    #[inline]
    fn new(node: &'a Node, seen: usize) -> Self {
        Self {
            node,
            seen,
            _not_send: PhantomData,
        }
    }

    /// The state word seen when the lock was taken (with `LOCKED`).
    #[inline]
    pub(crate) fn seen(&self) -> usize {
        self.seen
    }

    /// The locked node.
    #[inline]
    pub(crate) fn node(&self) -> &'a Node {
        self.node
    }

    /// The node's entry list (invariant 2: only reachable through a guard).
    #[inline]
    pub(crate) fn list(&self) -> &'a List {
        self.node.list_unguarded()
    }

    /// The node's child count (invariant 2).
    #[inline]
    pub(crate) fn child_count(&self) -> u32 {
        self.node.entry.aux()
    }

    /// Set the node's child count (invariant 2).
    #[inline]
    pub(crate) fn set_child_count(&self, n: u32) {
        self.node.entry.set_aux(n);
    }

    /// Unlock with the read-modify-write `op` on the state word, which must clear `LOCKED`
    /// (and may clear `LOCK_PARKED` and change other bits in the same step); returns the old
    /// word. Wakes the threads parked on the lock if there are any, by key only, so the node
    /// may be gone after `op` (a `LOCK_PARKED` that `op` left set is stale: invariant 3).
    #[inline]
    pub(crate) fn unlock_with(self, op: impl FnOnce(&AtomicUsize) -> usize) -> usize {
        let this = ManuallyDrop::new(self);
        let state = this.node.state_word();
        let key = lock_key(state);
        let old = op(state);
        debug_assert!(old & LOCKED != 0, "cutoff: unlock without the lock");
        released(key, old);
        old
    }

    /// [`unlock_with`](Self::unlock_with) for a caller whose claim keeps the node alive after
    /// the unlock (a reference it holds or just took, a `TAKEN` entry, a borrow): a
    /// `LOCK_PARKED` that `op` left set is cleared before the wake-up.
    #[inline]
    pub(crate) fn unlock_alive_with(self, op: impl FnOnce(&AtomicUsize) -> usize) -> usize {
        let this = ManuallyDrop::new(self);
        let state = this.node.state_word();
        let old = op(state);
        debug_assert!(old & LOCKED != 0, "cutoff: unlock without the lock");
        cs::exit();
        if old & LOCK_PARKED != 0 {
            state.fetch_and(!LOCK_PARKED, Relaxed);
            wake_lockers(lock_key(state));
        }
        old
    }

    /// Unlock by replacing the state word with `f(old)` (its `LOCKED` and `LOCK_PARKED` bits
    /// are cleared for it) in one compare-and-swap loop (`Release`); returns the old word.
    #[inline]
    pub(crate) fn unlock_update(self, f: impl Fn(usize) -> usize) -> usize {
        self.unlock_with(|s| {
            let mut cur = s.load(Relaxed);
            loop {
                let new = f(cur) & !(LOCKED | LOCK_PARKED);
                match s.compare_exchange_weak(cur, new, Release, Relaxed) {
                    Ok(old) => return old,
                    Err(actual) => cur = actual,
                }
            }
        })
    }

    /// Keep holding the lock past this guard's scope (the walker carries one lock hold from
    /// one step to the next); [`assume_held`](Self::assume_held) gets the guard back.
    #[inline]
    pub(crate) fn keep(self) {
        let _ = ManuallyDrop::new(self);
    }

    /// A guard for a lock this thread holds after [`keep`](Self::keep).
    ///
    /// # Safety
    /// This thread took `node`'s lock and kept it with `keep`, and no guard for it exists.
    #[inline]
    pub(crate) unsafe fn assume_held(node: &'a Node) -> Self {
        let seen = node.state_relaxed();
        debug_assert!(seen & LOCKED != 0);
        Self::new(node, seen)
    }
}

impl Drop for Guard<'_> {
    #[inline]
    fn drop(&mut self) {
        let state = self.node.state_word();
        let key = lock_key(state);
        let old = state.fetch_and(!(LOCKED | LOCK_PARKED), Release);
        released(key, old);
    }
}

/// After an unlock that saw `old`: leave the critical section, wake the parked lockers. Uses
/// only the key (invariant 3: the node may be gone).
#[inline]
fn released(key: usize, old: usize) {
    cs::exit();
    if old & LOCK_PARKED != 0 {
        wake_lockers(key);
    }
}

#[cold]
fn wake_lockers(key: usize) {
    park::wake_all(key);
}

/// Debug builds with `critical-section`: panic unless this thread holds no node lock. Called
/// where user code (callbacks, wakers, an extension's `free`) is about to run, which must never
/// happen inside the critical section. Empty otherwise.
#[inline(always)]
pub(crate) fn debug_assert_no_lock_held() {
    #[cfg(all(debug_assertions, feature = "critical-section", not(loom)))]
    {
        let depth = cs::depth();
        assert!(
            depth == 0,
            "cutoff: user code about to run with {depth} node lock(s) held"
        );
    }
}

/// The number of node locks the current thread holds (`critical-section` feature, for tests).
#[cfg(all(test, feature = "critical-section", not(loom)))]
pub(crate) fn lock_depth() -> u32 {
    cs::depth()
}

/// Node locks as one critical section (see "The lock as a critical section" above).
///
/// # Invariants
///
/// 1. `HELD` is only read or written inside the critical section.
/// 2. `depth` is the number of node locks held by the owner of the critical section; while
///    it is above 0, the critical section is held (by its outermost acquire, whose restore
///    state is `outer`), and every later acquire has already been released.
#[cfg(all(feature = "critical-section", not(loom)))]
mod cs {
    use core::cell::Cell;

    use critical_section::{CriticalSection, Mutex, RestoreState};

    struct Held {
        depth: Cell<u32>,
        outer: Cell<RestoreState>,
    }

    static HELD: Mutex<Held> = Mutex::new(Held {
        depth: Cell::new(0),
        outer: Cell::new(RestoreState::invalid()),
    });

    /// Enter the critical section for one more node lock.
    #[inline]
    pub(super) fn enter() {
        // Node locks are released by the thread that took them, before the function that took
        // them returns, so the `exit` that brings the depth back to 0 runs on this thread after
        // every later acquire has been released.
        // SAFETY: released right below if nested, else by that `exit` (invariant 2): nested.
        let restore = unsafe { critical_section::acquire() };
        // SAFETY: we are inside the critical section until that release (invariant 1).
        let cs = unsafe { CriticalSection::new() };
        let held = HELD.borrow(cs);
        let depth = held.depth.get();
        if depth == 0 {
            held.outer.set(restore);
        } else {
            // SAFETY: the acquire just above, released at once: the outermost acquire still
            // holds the critical section (invariant 2).
            unsafe { critical_section::release(restore) };
        }
        held.depth.set(depth + 1);
    }

    /// Leave the critical section for one node lock (just released).
    #[inline]
    pub(super) fn exit() {
        // SAFETY: the caller held a node lock, so the depth is above 0 and the critical section
        // is held, by this thread (invariant 2).
        let cs = unsafe { CriticalSection::new() };
        let held = HELD.borrow(cs);
        let depth = held.depth.get();
        debug_assert!(depth > 0, "cutoff: node unlock without a lock");
        held.depth.set(depth - 1);
        if depth == 1 {
            // SAFETY: the restore state of the outermost acquire, taken on this thread by the
            // `enter` that raised the depth from 0; every acquire since was released at once.
            unsafe { critical_section::release(held.outer.get()) };
        }
    }

    /// Node locks held by this thread: our own depth if we own the critical section; if
    /// another thread owns it, `with` waits until it is released, when the depth is 0.
    #[cfg(any(test, debug_assertions))]
    pub(super) fn depth() -> u32 {
        critical_section::with(|cs| HELD.borrow(cs).depth.get())
    }
}

/// Without `critical-section`, a node lock is just its bit.
#[cfg(not(all(feature = "critical-section", not(loom))))]
mod cs {
    #[inline(always)]
    pub(super) fn enter() {}

    #[inline(always)]
    pub(super) fn exit() {}
}
