//! Deadline nodes: ordinary `cutoff` nodes that cancel themselves when their deadline passes.
//!
//! A deadline node is an extension node of the tree ([`cutoff::ExtHeader`]) followed by a
//! [`DeadlineCore`]: its timer-wheel entry, whose owner's tag ([`Entry::tag`], a 32-bit
//! atomic in what would otherwise be the entry's padding) records which shard the entry is in
//! (as an index into the shard table) and what state it is in. A heap deadline is therefore a
//! 64-byte node plus a 32-byte entry: 96 bytes, one allocation. Everything that works on a node (children, callbacks,
//! waiters, reasons) works on a deadline node.
//!
//! * If an ancestor's deadline is already earlier (or equal) **and will be fired by the same
//!   timer**, the node gets **no timer entry** at all: it is cancelled through that ancestor;
//!   it still reports the inherited deadline. If that deadline belongs to another timer, the
//!   node registers its own entry, at the inherited (earlier) deadline, on its own timer:
//!   every deadline fires on its own timer, whatever the other timer does (it may be a
//!   manual timer nobody turns). See "Which timer fires an inherited deadline" below.
//! * A deadline already in the past gives a node that is cancelled at once with
//!   [`Reason::DeadlineExceeded`].
//! * Otherwise the entry goes into the calling thread's shard of the timer.
//!
//! # Entry states (`DeadlineCore::tag`: payload << 4 | `WAITER` | state)
//!
//! ```text
//!            register                      a turn moves it to the due list
//!   IDLE ─────────────────────▶ PENDING ───────────────────────────────────▶ DUE
//!    ▲  ▲                          │                                         │  │
//!    │  └─── the owner removes it ◀┴─────────────────────────────────────────┘  │
//!    │                                                                          │ a turn takes
//!    └─── end_fire (Release; wakes a parked owner) ◀─────── FIRING ◀────────────┘ it off the list
//!
//!   every transition but end_fire happens under the shard lock
//!
//!   INHERIT: no entry at all (payload: the number of the timer that fires the ancestor's
//!   deadline); set before the node is shared, never changes.
//! ```
//!
//! The payload is the shard's index while `PENDING` or `DUE`. `WAITER` is set (only while
//! `FIRING`) by an owner that is about to park until the firing ends.
//!
//! # Invariants
//!
//! 1. `PENDING` ⇔ the entry is linked in the wheel of the shard named in the tag; `DUE` ⇔ it
//!    is on that shard's due list. Every transition into or out of these two states happens
//!    under that shard's lock, so an owner that sees either under the lock may remove the
//!    entry (from the wheel, or from the due list).
//! 2. While `PENDING`, `DUE` or `FIRING`, the node stays alive: its owner's drop removes a
//!    `PENDING` or `DUE` entry, or waits for a `FIRING` one to return to `IDLE`, before
//!    freeing anything. For a heap node, the driver also holds a handle while firing (never
//!    resurrecting one whose last handle is gone), so user code run by the cancel cannot free
//!    it under the driver.
//! 3. An entry is `FIRING` only while a driver is inside that node's own cancellation
//!    (timer.rs, "Firing"). So an owner's drop waits only for its own node's cancellation;
//!    the only drop that could wait for itself is one made *from inside* that cancellation,
//!    i.e. dropping a pinned node the cancellation is passing through, which the tree
//!    already forbids (DESIGN.md section 12).
//! 4. A shard outlives every entry that is `PENDING` or `DUE` in it, and belongs to the
//!    entry's timer meanwhile (timer.rs, "Shard lifetime"); shards are never freed at all.
//!
//! # Which timer fires an inherited deadline
//!
//! A node inherits (tag `INHERIT`, no entry) only when the ancestor deadline it would inherit
//! is *proved* to be fired by the node's own timer `T`, or is already being fired: the
//! ancestor that supplies it
//!
//! * is `PENDING` in a shard owned by `T`, or is itself `INHERIT` with `T`'s number. Ancestors
//!   outlive their descendants (the tree's invariant 1), so that ancestor's entry stays in
//!   `T`'s wheel until `T` fires it (cancelling the whole subtree) or `T` is dropped (which
//!   cancels it with `ParentGone`, before `T`'s number can be reused); or
//! * is `DUE` or `FIRING` (some timer is cancelling it right now) or `IDLE` (a published
//!   deadline node outside any timer was fired or expired: it is cancelled). The new node
//!   is then born cancelled, or linked in time for that cancellation to reach it.
//!
//! Anything else (an ancestor pending on another timer, a non-timer extension node) makes
//! the node register its own entry, at the inherited deadline, on `T`. The proof is gathered
//! only when an ancestor's deadline is not later than the new one (`probe`: a second
//! `deadline_raw` walk with a thread-local probe that `vt_deadline` reports to), so the
//! common paths (no ancestor deadline, or a later one) pay one thread-local load.
#![allow(unsafe_code)]

use core::fmt;
use core::future::Future;
use core::mem::offset_of;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use cutoff::{
    CancelSource, CancelToken, ExtHeader, ExtVtable, Node, NodeView, OwnedCancellation, Parent,
    Reason,
};

use crate::clock::{duration_to_nanos, to_instant, to_nanos};
use crate::loom::Ordering::*;
use crate::loom::{AtomicU32, SPINS, park, spin_hint, wake_all_with};
use crate::timer::{Inner, NUMBER_LIMIT, Shard, Timer, global_origin};
use crate::wheel::Entry;

const IDLE: u32 = 0;
const PENDING: u32 = 1;
const DUE: u32 = 2;
const FIRING: u32 = 3;
const INHERIT: u32 = 4;
const STATE: u32 = 0b111;
/// Set while `FIRING` by an owner about to park until the firing ends.
const WAITER: u32 = 0b1000;
const SHIFT: u32 = 4;
const _: () = assert!(NUMBER_LIMIT <= 1 << (32 - SHIFT));

/// A deadline node's timer part.
#[repr(C)]
pub(crate) struct DeadlineCore {
    /// The wheel entry; its deadline is the node's effective deadline (global nanoseconds).
    /// Its tag holds shard index << 2 | state.
    entry: Entry,
}

// SAFETY: `entry` is only touched under its shard's lock (or before it is shared); its tag is
// atomic.
unsafe impl Sync for DeadlineCore {}

/// The shared layout of pinned and heap deadline nodes.
#[repr(C)]
pub(crate) struct DeadlineNode {
    header: ExtHeader,
    core: DeadlineCore,
}

static VTABLE: ExtVtable = ExtVtable {
    deadline: vt_deadline,
    free: vt_free,
};

/// # Safety
/// `h` heads a live `DeadlineNode`.
unsafe fn vt_deadline(h: *const ExtHeader) -> u64 {
    // SAFETY: the caller's contract.
    let core = unsafe { &(*h.cast::<DeadlineNode>()).core };
    if probe::active() {
        // A tail call: the common path stays free of a stack frame.
        return probe::note(core);
    }
    // The deadline is written before the node is shared.
    core.entry.deadline()
}

/// # Safety
/// `h` heads a heap `DeadlineNode` made by `Timer::deadline_source`, with no handle left.
unsafe fn vt_free(h: *mut ExtHeader) {
    let node = h.cast::<DeadlineNode>();
    // Take the entry out (or wait for the driver) through the raw pointer first: the driver
    // may still be using the node, so no exclusive `Box` may exist yet.
    // SAFETY: the node is alive until we free it below.
    unsafe { (*node).core.unregister() };
    // SAFETY: allocated as a `Box<DeadlineNode>`; nobody refers to it any more.
    drop(unsafe { Box::from_raw(node) });
}

impl DeadlineNode {
    fn new(deadline: u64) -> Self {
        Self {
            header: ExtHeader::new(&VTABLE),
            core: DeadlineCore {
                entry: Entry::new(deadline),
            },
        }
    }
}

impl DeadlineCore {
    pub(crate) fn from_entry(e: NonNull<Entry>) -> NonNull<DeadlineCore> {
        // `entry` is the first field of a `#[repr(C)]` DeadlineCore.
        e.cast()
    }

    /// The tree node this core belongs to.
    pub(crate) fn node(&self) -> &Node {
        let base = (self as *const DeadlineCore)
            .cast::<u8>()
            .wrapping_sub(offset_of!(DeadlineNode, core))
            .cast::<DeadlineNode>();
        // SAFETY: every DeadlineCore is the `core` field of a DeadlineNode.
        unsafe { (*base).header.node() }
    }

    /// Insert into the calling thread's shard of `timer`. `Err` if already due.
    fn register(&self, timer: &Arc<Inner>) -> Result<(), ()> {
        let (shard, mut locked) = timer.lock_local_shard();
        // SAFETY: the entry lives inside a pinned (or boxed) deadline node whose drop removes
        // it (invariant 2).
        if unsafe { locked.wheel.insert(NonNull::from(&self.entry)) }.is_err() {
            return Err(());
        }
        self.tag().store(shard.index() << SHIFT | PENDING, Release);
        let lowered = shard.lower_next(self.entry.deadline());
        drop(locked);
        if lowered {
            timer.inserted(self.entry.deadline());
        }
        Ok(())
    }

    /// Mark a node that inherits its deadline from an ancestor fired by the timer with
    /// `number` (before the node is shared).
    fn set_inherit(&self, number: u32) {
        self.tag().store(number << SHIFT | INHERIT, Relaxed);
    }

    /// Record what `plan` decided for a node not shared yet, when it is not "register at the
    /// requested deadline" (the effective deadline, and whether it inherits).
    #[cold]
    fn apply(&self, plan: &Plan, timer: &Inner) {
        if plan.deadline() != self.entry.deadline() {
            self.entry.set_deadline(plan.deadline());
        }
        if let Plan::Inherit(_) = plan {
            self.set_inherit(timer.number());
        }
    }

    /// Called by a turn under the shard lock for an entry the wheel just unlinked and that
    /// goes on the due list of the shard with this index.
    ///
    /// # Safety
    /// The entry was `PENDING` in the locked shard.
    pub(crate) unsafe fn mark_due(&self, shard_index: u32) {
        self.tag().store(shard_index << SHIFT | DUE, Relaxed);
    }

    /// Called by a turn under the shard lock for an entry it just took off the due list, to
    /// cancel its node now; returns a handle on a heap node (none for a pinned one).
    ///
    /// # Safety
    /// The entry was `DUE` in the locked shard.
    pub(crate) unsafe fn begin_fire(&self) -> Option<CancelToken> {
        self.tag().store(FIRING, Relaxed);
        self.node().to_token()
    }

    /// The driver is done with a `FIRING` entry: make it `IDLE`, waking its owner if it is
    /// parked waiting for that. Takes a pointer, not `&self`: once the entry is `IDLE` its
    /// owner may free it, while this function is still running.
    ///
    /// # Safety
    /// `begin_fire` was called on `this`, which is still `FIRING` (so alive); after this the
    /// driver does not touch the node again.
    pub(crate) unsafe fn end_fire(this: NonNull<Self>) {
        // SAFETY: `FIRING` keeps the node alive (invariant 2) until the store below.
        let tag: *const AtomicU32 = unsafe { this.as_ref() }.tag();
        // SAFETY: as above; only the owner can have changed the tag since (adding `WAITER`).
        let done = unsafe { &*tag }.compare_exchange(FIRING, IDLE, Release, Relaxed);
        if done.is_err() {
            // The owner set `WAITER` and parks (or is about to) on the tag. Make the entry
            // `IDLE` with the tag's park queue locked: the owner cannot see it (and free the
            // node) before every parked thread has been taken off that queue, so the wake-up
            // never reaches whatever reuses the address.
            wake_all_with(tag as usize, || {
                // SAFETY: still `FIRING`, so alive, until this very store.
                unsafe { &*tag }.store(IDLE, Release);
            });
        }
    }

    /// Shard index << SHIFT | state.
    fn tag(&self) -> &AtomicU32 {
        self.entry.tag()
    }

    /// Take the entry out of its wheel or due list, or wait for a firing in progress (owner's
    /// drop). Afterwards no driver touches the node again.
    fn unregister(&self) {
        let mut w = self.tag().load(Acquire);
        loop {
            match w & STATE {
                PENDING | DUE => {
                    // Invariant 4: shards are never freed (timer.rs, `Shard`), so the index
                    // names a live shard even if the entry has moved on since.
                    let mut locked = Shard::at(w >> SHIFT).lock();
                    if self.tag().load(Relaxed) == w {
                        let e = NonNull::from(&self.entry);
                        if w & STATE == PENDING {
                            // SAFETY: invariant 1: PENDING under the lock means linked here.
                            unsafe { locked.wheel.remove(e) };
                        } else {
                            remove_due(&mut locked.due, e);
                        }
                        self.tag().store(IDLE, Relaxed);
                        return;
                    }
                    drop(locked);
                    w = self.tag().load(Acquire);
                }
                FIRING => {
                    self.wait_fired();
                    return;
                }
                // IDLE, INHERIT: not in any timer.
                _ => return,
            }
        }
    }

    /// Wait until the driver is done firing this entry: spin a few times, then park on the
    /// tag until `end_fire` wakes us (see `crate::loom`, "Blocking").
    #[cold]
    fn wait_fired(&self) {
        let tag = self.tag();
        let mut spins = 0;
        loop {
            let w = tag.load(Acquire);
            // `FIRING` only ever becomes `IDLE` (the owner, us, does not register again).
            if w & STATE != FIRING {
                return;
            }
            if spins < SPINS {
                spins += 1;
                spin_hint();
                continue;
            }
            if w & WAITER == 0
                && tag
                    .compare_exchange(w, w | WAITER, Relaxed, Relaxed)
                    .is_err()
            {
                continue;
            }
            let parked = w | WAITER;
            park(core::ptr::from_ref(tag) as usize, || {
                tag.load(Relaxed) == parked
            });
        }
    }
}

/// Take `e` off a shard's due list (invariant 1: it is on it).
#[cold]
fn remove_due(due: &mut Vec<NonNull<Entry>>, e: NonNull<Entry>) {
    let i = due.iter().position(|&x| x == e);
    debug_assert!(i.is_some(), "a DUE entry not on its shard's due list");
    if let Some(i) = i {
        // Keep the order: the rest still fire oldest first.
        due.remove(i);
    }
}

/// The "same timer" probe (module docs, "Which timer fires an inherited deadline"): while it
/// is active on a thread, `vt_deadline` reports each deadline node it is asked about, so
/// that a `deadline_raw` call tells which timer fires the deadline it returns.
mod probe {
    use core::cell::Cell;

    use super::{DeadlineCore, INHERIT, PENDING, SHIFT, STATE, Shard};
    use crate::loom::Ordering::Acquire;
    use crate::timer::Inner;
    use cutoff::NodeView;

    #[derive(Clone, Copy)]
    struct Probe {
        /// The timer asking (its id).
        timer: usize,
        number: u32,
        /// The earliest deadline reported so far.
        min: u64,
        /// Whether a node reporting `min` is proved to be fired by `timer`.
        same: bool,
    }

    const OFF: Probe = Probe {
        timer: 0,
        number: 0,
        min: u64::MAX,
        same: false,
    };

    #[cfg(not(loom))]
    std::thread_local! {
        /// Whether `PROBE` is active: what every `vt_deadline` call reads (no destructor and
        /// a const initializer, so one thread-local load, and readable at any time).
        static ACTIVE: Cell<bool> = const { Cell::new(false) };
        static PROBE: Cell<Probe> = const { Cell::new(OFF) };
    }
    #[cfg(loom)]
    loom::thread_local! {
        static ACTIVE: Cell<bool> = Cell::new(false);
        static PROBE: Cell<Probe> = Cell::new(OFF);
    }

    /// Whether a probe is active on this thread (one thread-local load).
    #[inline]
    pub(super) fn active() -> bool {
        #[cfg(not(loom))]
        {
            ACTIVE.with(Cell::get)
        }
        #[cfg(loom)]
        {
            ACTIVE.try_with(Cell::get).unwrap_or(false)
        }
    }

    /// `core` reports its deadline to the active probe; returns it.
    #[cold]
    pub(super) fn note(core: &DeadlineCore) -> u64 {
        let d = core.entry.deadline();
        let _ = PROBE.try_with(|p| {
            let mut probe = p.get();
            let same = fired_by(core, &probe);
            if d < probe.min {
                probe.min = d;
                probe.same = same;
            } else if d == probe.min {
                probe.same |= same;
            }
            p.set(probe);
        });
        d
    }

    /// Whether a child on the probing timer may rely on `core`'s node for its deadline: the
    /// node is proved to be cancelled at its deadline by that timer, or is already being
    /// cancelled.
    fn fired_by(core: &DeadlineCore, probe: &Probe) -> bool {
        let w = core.tag().load(Acquire);
        match w & STATE {
            // Its shard's owner can only change once the entry has left the shard, that is,
            // once it is being fired: then the node is cancelled anyway (below).
            PENDING => Shard::at(w >> SHIFT).owner() == probe.timer,
            INHERIT => w >> SHIFT == probe.number,
            // `DUE` / `FIRING`: a turn (or a timer's drop) is cancelling it right now; `IDLE`:
            // a published deadline node that is not in a timer was fired or expired, so it is
            // cancelled. Either way so is (or will be) everything under it.
            _ => true,
        }
    }

    /// `parent`'s deadline, and whether it is proved to be fired by `timer`.
    pub(super) fn deadline_of(parent: &NodeView, timer: &Inner) -> (Option<u64>, bool) {
        let on = Probe {
            timer: timer.id(),
            number: timer.number(),
            ..OFF
        };
        if PROBE.try_with(|p| p.set(on)).is_err() || ACTIVE.try_with(|a| a.set(true)).is_err() {
            return (parent.deadline_raw(), false);
        }
        let d = parent.deadline_raw();
        let _ = ACTIVE.try_with(|a| a.set(false));
        let probe = PROBE.try_with(|p| p.replace(OFF)).unwrap_or(OFF);
        (d, d == Some(probe.min) && probe.same)
    }
}

/// The decision for a new deadline node, given its parent.
enum Plan {
    /// An ancestor's deadline is not later and is fired by the same timer: no timer entry,
    /// inherit it.
    Inherit(u64),
    /// Already due: cancel at once.
    Expired(u64),
    /// Register with the timer, at this (effective) deadline.
    Register(u64),
}

impl Plan {
    /// The node's effective deadline.
    fn deadline(&self) -> u64 {
        match *self {
            Plan::Inherit(d) | Plan::Expired(d) | Plan::Register(d) => d,
        }
    }
}

/// `now` is a clock reading taken at or after the caller's request (so `deadline <= now`
/// really means "already due"); callers that computed `deadline` from a reading pass that one,
/// saving a second clock read.
#[inline]
fn plan(parent: Option<&NodeView>, deadline: u64, now: u64, timer: &Inner) -> Plan {
    if let Some(p) = parent
        && let Some(pd) = p.deadline_raw()
        && pd <= deadline
    {
        return plan_under_earlier(p, deadline, now, timer);
    }
    if deadline <= now {
        Plan::Expired(deadline)
    } else {
        Plan::Register(deadline)
    }
}

/// An ancestor's deadline is not later than `deadline`: inherit it if our timer fires it,
/// else register at it ourselves (module docs, "Which timer fires an inherited deadline").
#[cold]
fn plan_under_earlier(parent: &NodeView, deadline: u64, now: u64, timer: &Inner) -> Plan {
    let (pd, same) = probe::deadline_of(parent, timer);
    let d = pd.map_or(deadline, |pd| pd.min(deadline));
    if same {
        Plan::Inherit(d)
    } else if d <= now {
        Plan::Expired(d)
    } else {
        Plan::Register(d)
    }
}

fn instant_nanos(deadline: Instant) -> u64 {
    to_nanos(global_origin(), deadline)
}

impl Timer {
    /// A heap deadline node under `parent` that cancels itself with
    /// [`Reason::DeadlineExceeded`] at `deadline` (never earlier).
    pub fn deadline_source<'a>(
        &self,
        parent: impl Into<Parent<'a>>,
        deadline: Instant,
    ) -> CancelSource {
        let now = self.inner().now();
        self.deadline_source_nanos(parent.into(), instant_nanos(deadline), now)
    }

    /// A heap deadline node under `parent` that cancels itself after `timeout`.
    pub fn timeout_source<'a>(
        &self,
        parent: impl Into<Parent<'a>>,
        timeout: Duration,
    ) -> CancelSource {
        let now = self.inner().now();
        let d = now.saturating_add(duration_to_nanos(timeout));
        self.deadline_source_nanos(parent.into(), d, now)
    }

    fn deadline_source_nanos(&self, parent: Parent<'_>, deadline: u64, now: u64) -> CancelSource {
        let inner = self.inner();
        let plan = plan(parent.view(), deadline, now, inner);
        let node = Box::new(DeadlineNode::new(plan.deadline()));
        if let Plan::Inherit(_) = plan {
            node.core.set_inherit(inner.number());
        }
        // SAFETY: a fresh heap allocation headed by its ExtHeader, freed by `vt_free`.
        let src = unsafe { ExtHeader::into_source(NonNull::from(Box::leak(node)).cast(), parent) };
        if src.is_cancelled() {
            return src;
        }
        match plan {
            Plan::Inherit(_) => {}
            Plan::Expired(_) => {
                src.cancel_with(Reason::DeadlineExceeded);
            }
            Plan::Register(_) => {
                if inner.is_shut_down() {
                    src.cancel_with(Reason::ParentGone);
                    return src;
                }
                // SAFETY: the source's node is a `DeadlineNode` (made just above).
                let core = unsafe { &(*(&*src as *const Node).cast::<DeadlineNode>()).core };
                if core.register(inner).is_err() {
                    src.cancel_with(Reason::DeadlineExceeded);
                }
            }
        }
        src
    }
}

/// A heap deadline node under `parent` on the global timer, cancelled with
/// [`Reason::DeadlineExceeded`] at `deadline`. See [`Timer::deadline_source`].
///
/// ```
/// use std::time::{Duration, Instant};
/// use cutoff::{CancelSource, Reason};
///
/// let request = CancelSource::new();
/// let step = cutoff_timer::with_deadline(&request, Instant::now() + Duration::from_millis(5));
/// assert_eq!(step.wait(), Reason::DeadlineExceeded);
/// assert!(!request.is_cancelled());
/// ```
pub fn with_deadline<'a>(parent: impl Into<Parent<'a>>, deadline: Instant) -> CancelSource {
    Timer::global().deadline_source(parent, deadline)
}

/// A heap deadline node under `parent` on the global timer, cancelled after `timeout`.
pub fn with_timeout<'a>(parent: impl Into<Parent<'a>>, timeout: Duration) -> CancelSource {
    Timer::global().timeout_source(parent, timeout)
}

/// A pinned deadline node: no allocation. Create it, pin it, [`link`](Self::link) it.
///
/// ```
/// use core::pin::pin;
/// use std::time::{Duration, Instant};
/// use cutoff::{Node, Reason};
/// use cutoff_timer::Deadline;
///
/// let root = Node::new();
/// let mut d = pin!(Deadline::new(&root, Instant::now() + Duration::from_millis(2)));
/// let node = d.as_mut().link();
/// assert_eq!(node.wait(), Reason::DeadlineExceeded);
/// ```
pub struct Deadline<'a> {
    node: DeadlineNode,
    parent: Option<&'a NodeView>,
    timer: &'a Timer,
    deadline: u64,
    /// The clock reading `deadline` was computed from, if any (saves a second read).
    now: Option<u64>,
    linked: bool,
}

impl<'a> Deadline<'a> {
    /// A deadline node under `parent` on the global timer.
    pub fn new(parent: &'a NodeView, deadline: Instant) -> Self {
        Self::with_timer(Timer::global(), Some(parent), deadline)
    }

    /// A deadline node under `parent` (or a root) on `timer`.
    pub fn with_timer(timer: &'a Timer, parent: Option<&'a NodeView>, deadline: Instant) -> Self {
        Self::with_nanos(timer, parent, instant_nanos(deadline), None)
    }

    /// A deadline node `timeout` from now under `parent` on the global timer.
    pub fn after(parent: &'a NodeView, timeout: Duration) -> Self {
        let timer = Timer::global();
        let now = timer.inner().now();
        let d = now.saturating_add(duration_to_nanos(timeout));
        Self::with_nanos(timer, Some(parent), d, Some(now))
    }

    fn with_nanos(
        timer: &'a Timer,
        parent: Option<&'a NodeView>,
        deadline: u64,
        now: Option<u64>,
    ) -> Self {
        Self {
            node: DeadlineNode::new(deadline),
            parent,
            timer,
            deadline,
            now,
            linked: false,
        }
    }

    /// Link the node (the first time) and return it.
    pub fn link(self: Pin<&mut Self>) -> &Node {
        // SAFETY: we never move out of the pinned value.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.linked {
            this.linked = true;
            let inner = this.timer.inner();
            let now = this.now.unwrap_or_else(|| inner.now());
            let plan = plan(this.parent, this.deadline, now, inner);
            if !matches!(plan, Plan::Register(d) if d == this.deadline) {
                this.node.core.apply(&plan, inner);
            }
            // SAFETY: pinned, exclusive, the parent outlives us ('a), and our drop unlinks.
            let header = unsafe { Pin::new_unchecked(&this.node.header) };
            // SAFETY: as above.
            unsafe { header.link(this.parent) };
            let node = this.node.header.node();
            if !node.is_cancelled() {
                match plan {
                    Plan::Inherit(_) => {}
                    Plan::Expired(_) => {
                        node.cancel_with(Reason::DeadlineExceeded);
                    }
                    Plan::Register(_) => {
                        if inner.is_shut_down() || this.node.core.register(inner).is_err() {
                            node.cancel_with(Reason::DeadlineExceeded);
                        }
                    }
                }
            }
        }
        this.node.header.node()
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        self.node.core.unregister();
        if self.linked {
            // SAFETY: linked in `link`; we are going away.
            unsafe { self.node.header.unlink() };
        }
    }
}

impl fmt::Debug for Deadline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("node", self.node.header.node())
            .finish_non_exhaustive()
    }
}

/// Deadlines on any node.
pub trait DeadlineExt {
    /// The earliest deadline on this node's path to the root, if any.
    fn deadline(&self) -> Option<Instant>;
}

impl DeadlineExt for NodeView {
    fn deadline(&self) -> Option<Instant> {
        self.deadline_raw()
            .and_then(|n| to_instant(global_origin(), n))
    }
}

/// The error of [`timeout`] and [`deadline`]: the deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl core::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// Future returned by [`timeout`] and [`deadline`].
    ///
    /// The inner future is polled first; a future that completes on its first poll never
    /// touches the timer (no deadline node is made until it returns `Pending`).
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        deadline: u64,
        #[pin]
        waiting: Option<OwnedCancellation>,
        source: Option<CancelSource>,
    }
}

/// Run `future` with a time limit: `Ok(output)` if it finishes within `duration`,
/// `Err(Elapsed)` otherwise (the future is then dropped with the `Timeout`).
///
/// ```
/// # futures::executor::block_on(async {
/// use std::time::Duration;
/// let r = cutoff_timer::timeout(Duration::from_millis(1), std::future::pending::<()>()).await;
/// assert_eq!(r, Err(cutoff_timer::Elapsed));
/// # });
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    let d = Timer::global()
        .inner()
        .now()
        .saturating_add(duration_to_nanos(duration));
    Timeout {
        future,
        deadline: d,
        waiting: None,
        source: None,
    }
}

/// Run `future` until `at`: `Ok(output)` if it finishes first, `Err(Elapsed)` otherwise.
pub fn deadline<F: Future>(at: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        deadline: instant_nanos(at),
        waiting: None,
        source: None,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if this.waiting.is_none() {
            let timer = Timer::global();
            let now = timer.inner().now();
            let src = timer.deadline_source_nanos(Parent::Root, *this.deadline, now);
            this.waiting.set(Some(src.token().cancelled_owned()));
            *this.source = Some(src);
        }
        match this.waiting.as_pin_mut().map(|w| w.poll(cx)) {
            Some(Poll::Ready(_)) => Poll::Ready(Err(Elapsed)),
            _ => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

// A heap deadline is one 64-byte node plus a 32-byte wheel entry whose padding holds the
// shard index and state: 96 bytes (the issue's budget; Go's `WithTimeout` is ~290).
#[cfg(all(not(loom), target_pointer_width = "64"))]
const _: () = assert!(size_of::<DeadlineNode>() == 96);
