//! The tree node: one state word, an intrusive entry list, a write-once reason.
//!
//! # Design
//!
//! Every node, whether it lives in a `static`, on a stack, inside a pinned struct or on the
//! heap behind a [`CancelSource`](crate::CancelSource), is the same [`Node`]. Its state word
//! (see `state.rs`) packs `CANCELLED`, a list lock bit and a few flags; `is_cancelled()` is one
//! `Acquire` load of it. Cancellation is *pushed down* at cancel time, so no reader ever walks
//! up the tree.
//!
//! Children, callbacks and waiters are [`Entry`]s linked into the node's list. Cancelling a
//! node sets `CANCELLED` under its lock (so nothing new links afterwards) and then *walks* the
//! subtree iteratively: pop one entry under the lock, mark it `TAKEN`, unlock, act on it,
//! relock. Acting on a child means locking the child, writing the inherited reason, setting its
//! `CANCELLED` bit and making it the current node; when a node's list is empty the walker
//! releases the node's own entry and climbs back to its parent. The walker therefore needs no
//! stack and no allocation, holds at most one node lock at a time, and never holds one while
//! user code (callbacks, wakers) runs.
//!
//! Visit order is deterministic: depth first, pre-order (a node is marked cancelled before
//! anything under it), and within a node newest entry first (entries are pushed at the front).
//! That is the order of a stack unwinding: the last thing registered is cleaned up first.
//!
//! # Invariants
//!
//! 1. **Lifetime.** A node outlives every entry linked into it: pinned children, callbacks and
//!    waiters borrow their node (`'a`), heap children hold a reference count on a heap parent
//!    (`COUNTED_PARENT`) or point at a `'static` one. So a node's list is empty when it drops,
//!    and a child can always reach its parent to unlink.
//! 2. **Reason before bit.** `reason` is written only while holding the lock and before
//!    `CANCELLED` is set (with `Release`); it is never written again. Whoever observes
//!    `CANCELLED` with `Acquire` may read it.
//! 3. **No links after cancel.** `CANCELLED` is only set while holding the lock; linking checks
//!    it under the same lock and refuses (the child is born cancelled, the callback runs or
//!    reports, the waiter completes). Only join waiters may link into a cancelled node.
//! 4. **Walker ownership.** A popped (`TAKEN`) entry, and for a child the whole node, is kept
//!    alive by its owner until the walker stores `RELEASED` (list.rs invariant 3). A node the
//!    walker has descended into stays `TAKEN` until the walker climbs out, so the walker can
//!    always climb back to a live parent.
//! 5. **One walker per node.** The thread that set a node's `CANCELLED` bit walks its list, or
//!    the one that adopted it after its walker abandoned it (walk.rs W2). A walker that pops a
//!    child which is already cancelled adopts it (abandoned), releases it (walk over), waits
//!    for it (top-level walk) or defers it (nested walk).
//! 6. **Child count.** `entry.aux` of a node counts the child and link entries that hang off
//!    it and have not dropped yet; it changes only under the node's own lock.
//! 7. **Walk complete means subtree cancelled** (walk.rs W1): `WALKING` is clear on a
//!    cancelled node only when every descendant is cancelled.
//!
//! # Lock ordering and contention
//!
//! See `lock.rs`: at most two node locks at a time, parent then child (the walker, hand over
//! hand); contended lockers spin briefly, then park (with `std`). The `critical-section`
//! feature makes every node lock a critical section (also in `lock.rs`).
#![allow(unsafe_code)]

use core::ptr;

use crate::list::{self, Entry, Kind, List};
use crate::lock::Guard;
use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicUsize, Ordering::*};
use crate::reason::Reason;
use crate::state::*;

/// A node of the cancellation tree.
///
/// A `Node` made by [`Node::new`] is a root; it can be a `static` (the constructor is `const`),
/// a local, or a field. Children hang off it as [`ChildNode`](crate::ChildNode)s (pinned, no
/// allocation) or [`CancelSource`](crate::CancelSource)s (heap, with the `alloc` feature);
/// both deref to `Node`, so everything below works on any node.
///
/// # Examples
///
/// ```
/// use cutoff::{ChildNode, Node, Reason};
/// use core::pin::pin;
///
/// static ROOT: Node = Node::new();
///
/// let mut child = pin!(ChildNode::new(&ROOT));
/// let child: &Node = child.as_mut().link();
/// assert!(!child.is_cancelled());
/// ROOT.cancel_with(Reason::Shutdown);
/// assert_eq!(child.reason(), Some(Reason::Shutdown));
/// ```
pub struct Node {
    /// See `state.rs`.
    state: AtomicUsize,
    /// Children, callbacks, waiters.
    ///
    /// # Safety
    /// Only touched while holding `LOCKED`.
    list: List,
    /// The parent node (or, with `MULTI`, the first `LinkEntry`). Written once before the node
    /// is shared; null for roots and for children born cancelled.
    parent: UnsafeCell<*const ()>,
    /// Written once under the lock before `CANCELLED` is set (invariant 2).
    reason: UnsafeCell<Option<Reason>>,
    /// This node's entry in its parent's list; `aux` is this node's own child count.
    pub(crate) entry: Entry,
}

// SAFETY: all shared state is atomic or guarded by the lock bit / write-once protocol above.
unsafe impl Send for Node {}
// SAFETY: as above.
unsafe impl Sync for Node {}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("cancelled", &self.is_cancelled())
            .field("reason", &self.reason())
            .finish_non_exhaustive()
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

impl Node {
    crate::loom_const_fn! {
        /// A new root node, not cancelled, with no parent. `const`, so it can be a `static`.
        #[must_use]
        pub fn new() -> Node {
            Node {
                state: AtomicUsize::new(0),
                list: list::new_list(),
                parent: UnsafeCell::new(ptr::null()),
                reason: UnsafeCell::new(None),
                entry: list::new_entry(Kind::Child),
            }
        }
    }

    /// Whether the node is cancelled. One `Acquire` load; if it returns `true`, the
    /// [`reason`](Self::reason) is visible too.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.state.load(Acquire) & CANCELLED != 0
    }

    /// Why the node was cancelled, or `None` if it is not cancelled.
    pub fn reason(&self) -> Option<Reason> {
        if self.is_cancelled() {
            // SAFETY: CANCELLED observed with Acquire (invariant 2).
            Some(unsafe { self.reason_unchecked() })
        } else {
            None
        }
    }

    /// Cancel the node and its whole subtree with [`Reason::Requested`].
    ///
    /// Returns `true` if this call cancelled the node, `false` if it was already cancelled.
    /// See [`cancel_with`](Self::cancel_with).
    pub fn cancel(&self) -> bool {
        self.cancel_with(Reason::Requested)
    }

    /// Cancel the node and its whole subtree with `reason`.
    ///
    /// The first call wins and returns `true`; later calls return `false` and leave the first
    /// reason in place. Descendants inherit the reason, unless they were already cancelled.
    ///
    /// The walk is iterative (no recursion; a million-deep chain is fine on a small stack),
    /// holds at most one node lock at a time and none while callbacks or wakers run. Order:
    /// depth first, each node before its entries, newest entry first.
    ///
    /// When this call returns, whether it won (`true`) or lost (`false`), every descendant
    /// reports cancelled: if another thread is still cancelling this node or a part of the
    /// subtree, this call waits for it to finish. The one exception is a call made from inside
    /// a callback or waker that a cancellation is running on this same thread (that
    /// cancellation may be the one it would wait for); it returns without waiting, and leaves
    /// any part of the subtree that another thread is still cancelling to the next call that
    /// may wait: a later `cancel()` of this node or of an ancestor, made outside every callback,
    /// finishes it before returning. Without `std` there is no thread identity, so calls never
    /// wait; a part of the subtree being cancelled by another call is finished by that call, or
    /// by a later cancel of this node or an ancestor.
    ///
    /// # Panics
    ///
    /// With `std`, a panic in a callback or waker is caught, the walk completes (every other
    /// callback still runs and no lock stays held), and the first panic is then resumed from
    /// this call. Without `std`, the walk is completed while unwinding; a second panic during
    /// that completion aborts, as any panic during unwinding does.
    pub fn cancel_with(&self, reason: Reason) -> bool {
        let g = self.lock();
        if g.seen() & CANCELLED != 0 {
            drop(g);
            // Someone else won; let them finish the subtree before we report back.
            crate::walk::finish_walk(self);
            return false;
        }
        g.publish_cancel(reason);
        crate::walk::Walk::new(g).run();
        true
    }

    // ---- crate-internal machinery -------------------------------------------------------

    /// The state word (for `lock.rs`, which owns the `LOCKED` and `LOCK_PARKED` bits).
    #[inline]
    pub(crate) fn state_word(&self) -> &AtomicUsize {
        &self.state
    }

    /// The entry list, without proof of the lock: only for [`Guard::list`] (lock.rs
    /// invariant 2).
    #[inline]
    pub(crate) fn list_unguarded(&self) -> &List {
        &self.list
    }

    /// Current state word (`Relaxed`).
    #[inline]
    pub(crate) fn state_relaxed(&self) -> usize {
        self.state.load(Relaxed)
    }

    /// Current state word (`Acquire`).
    #[inline]
    pub(crate) fn state_acquire(&self) -> usize {
        self.state.load(Acquire)
    }

    #[inline]
    pub(crate) fn set_flags(&self, flags: usize) {
        self.state.fetch_or(flags, Release);
    }

    /// Clear walker flags without holding the lock, returning the old word (`Release`: the
    /// walker's work on the subtree happens-before a waiter that sees `WALKING` clear).
    #[inline]
    pub(crate) fn clear_flags_release(&self, flags: usize) -> usize {
        self.state.fetch_and(!flags, Release)
    }

    /// [`set_flags`](Self::set_flags) for a node no other thread can reach yet: a plain
    /// load and store, no read-modify-write.
    #[inline]
    pub(crate) fn set_flags_exclusive(&self, flags: usize) {
        self.state.store(self.state.load(Relaxed) | flags, Relaxed);
    }

    /// Set `flags` if the state word is still `cur` (one `Relaxed` CAS); `false` if it changed.
    #[inline]
    pub(crate) fn try_set_flags(&self, cur: usize, flags: usize) -> bool {
        self.state
            .compare_exchange_weak(cur, cur | flags, Relaxed, Relaxed)
            .is_ok()
    }

    /// Write the reason and set `CANCELLED` on a node that will never be walked (born
    /// cancelled: nothing is linked to it).
    ///
    /// # Safety
    /// The caller owns the node exclusively and `CANCELLED` is clear.
    pub(crate) unsafe fn publish_born_cancelled(&self, reason: Reason) {
        // SAFETY: invariant 2: exclusive access.
        self.reason.with_mut(|p| unsafe { *p = Some(reason) });
        self.state.fetch_or(CANCELLED | INIT, Release);
    }

    /// Clone the reason.
    ///
    /// # Safety
    /// `CANCELLED` was observed with `Acquire` (or under the lock).
    pub(crate) unsafe fn reason_unchecked(&self) -> Reason {
        // SAFETY: invariant 2: the reason is written before the bit and never again.
        self.reason
            .with(|p| unsafe { (*p).clone() })
            .unwrap_or(Reason::Requested)
    }

    pub(crate) fn parent_ptr(&self) -> *const () {
        // SAFETY: written once before the node is shared (see field docs).
        self.parent.with(|p| unsafe { *p })
    }

    /// # Safety
    /// The node is not shared yet (or the caller holds its lock and `INIT` is clear).
    pub(crate) unsafe fn set_parent_ptr(&self, p: *const ()) {
        // SAFETY: caller guarantees exclusivity.
        self.parent.with_mut(|slot| unsafe { *slot = p });
    }

    /// Whether any child (pinned, heap or multi-parent link) is still alive under this node.
    pub(crate) fn child_count_nonzero(&self) -> bool {
        self.lock().child_count() != 0
    }

    /// Link `child` under `self`, or make it born cancelled if `self` is cancelled.
    ///
    /// Returns `true` if linked. With `counted`, the child takes one reference on `self` (in
    /// the same atomic operation as the unlock) if it links.
    ///
    /// # Safety
    /// `child` is at its final address, not yet initialised, and exclusively owned by the
    /// caller (or its lock is held); `self` outlives `child` (invariant 1).
    pub(crate) unsafe fn adopt(&self, child_ptr: *const Node, counted: bool) -> bool {
        // SAFETY: forwarded; `self` is the parent.
        unsafe { Node::adopt_raw(self, child_ptr, counted) }
    }

    /// [`adopt`](Self::adopt) with the parent as a raw pointer too: the child stores it and
    /// may free a heap parent through it later (when the parent's last reference was the
    /// child's), so it must keep the parent allocation's own provenance.
    ///
    /// # Safety
    /// As for `adopt`; `parent_ptr` points to a live node.
    pub(crate) unsafe fn adopt_raw(
        parent_ptr: *const Node,
        child_ptr: *const Node,
        counted: bool,
    ) -> bool {
        // SAFETY: the caller's contract: a live parent.
        let this = unsafe { &*parent_ptr };
        // `child_ptr` keeps the provenance it came with (for a heap node, the allocation's
        // own), and the entry pointer pushed below is derived from it, so that a walker that
        // ends up freeing the node does so through a pointer allowed to (Miri, Tree Borrows).
        // SAFETY: the caller's contract: a live node.
        let child = unsafe { &*child_ptr };
        let g = this.lock();
        if g.seen() & CANCELLED != 0 {
            // SAFETY: CANCELLED seen under the lock.
            let reason = unsafe { this.reason_unchecked() };
            // A born-cancelled child does not need its parent (and takes no reference on it).
            drop(g);
            // SAFETY: the child is exclusively ours and not cancelled yet.
            unsafe { child.publish_born_cancelled(reason) };
            return false;
        }
        // The child is still exclusively ours (nobody can reach it before the push below), so
        // a plain store sets its flags; the parent's unlock (Release) publishes them.
        let flags = INIT | if counted { COUNTED_PARENT } else { 0 };
        child
            .state
            .store(child.state.load(Relaxed) | flags, Relaxed);
        // SAFETY: exclusive access to the child (caller); the guard holds `this`'s lock.
        unsafe {
            child.set_parent_ptr(parent_ptr.cast());
            g.list().push_front(Node::entry_ptr_raw(child_ptr));
        }
        g.set_child_count(g.child_count() + 1);
        #[cfg(feature = "alloc")]
        if counted {
            // The child's reference on us, taken in the same operation as the unlock.
            g.unlock_ref();
            return true;
        }
        drop(g);
        true
    }

    /// Detach an entry we own from this node's list (waiting for a walker holding it).
    ///
    /// # Safety
    /// `e` belongs to `self`'s list (linked, taken, deferred, released or never linked) and the
    /// caller owns it; it is not a child or link entry (those go through
    /// [`detach_child`](Self::detach_child)).
    pub(crate) unsafe fn detach(&self, e: &Entry) {
        // SAFETY: forwarded.
        unsafe { self.detach_unref(e, None, false) };
    }

    /// Detach the child or link entry `e` of the node `target` (which the caller owns and is
    /// dropping) from this node's list, uncount it and wake join waiters when it was the last.
    ///
    /// # Safety
    /// As for [`detach`](Self::detach), and `e` is `target`'s own entry or one of its links.
    pub(crate) unsafe fn detach_child(&self, e: &Entry, target: &Node) {
        // SAFETY: forwarded.
        unsafe { self.detach_unref(e, Some(target), false) };
    }

    /// The shared body of [`detach`](Self::detach) and [`detach_child`](Self::detach_child);
    /// with `unref` it also drops one reference on `self` in the same atomic operation as the
    /// unlock, and returns `true` if that was the last reference.
    ///
    /// A walker that entered `target` through `e` releases `e` with a plain store just before
    /// it clears `target`'s `WALKING` (walk.rs, `leave`), so while it is inside, the owner
    /// waits for the walk to end (woken by that clear), not for the release (list.rs
    /// invariant 6).
    ///
    /// # Safety
    /// As for `detach` / `detach_child`; with `unref`, the caller owns a reference on `self`.
    pub(crate) unsafe fn detach_unref(
        &self,
        e: &Entry,
        target: Option<&Node>,
        unref: bool,
    ) -> bool {
        // Walked through an entry right now (walk.rs W2): wait for that walk, not the entry.
        let walked = |t: Option<&Node>| {
            t.is_some_and(|t| t.state_acquire() & (WALKING | ABANDONED) == WALKING)
        };
        let mut g = self.lock();
        loop {
            // The status first: a walker releases `e` before it clears `WALKING`.
            let status = e.status();
            match (status, walked(target)) {
                (list::LINKED | list::DEFERRED, _) => {
                    // SAFETY: the guard holds the lock and `e` is in our list.
                    unsafe { g.list().remove(e) };
                    break;
                }
                (list::TAKEN | list::RELEASED, true) => {
                    drop(g);
                    if let Some(t) = target {
                        crate::walk::wait_walk_end(t);
                    }
                    g = self.lock();
                }
                (list::TAKEN, false) => {
                    e.wait_released(g);
                    g = self.lock();
                }
                _ => break,
            }
        }
        if target.is_some() {
            let n = g.child_count() - 1;
            g.set_child_count(n);
            if n == 0 && g.seen() & JOINERS != 0 {
                crate::wait::wake_joiners(g);
                #[cfg(feature = "alloc")]
                if unref {
                    return self.ref_dec();
                }
                return false;
            }
        }
        #[cfg(feature = "alloc")]
        if unref {
            return g.unlock_unref();
        }
        let _ = unref;
        drop(g);
        false
    }

    /// Unlink this node from its parent(s). Called from the owner's drop.
    ///
    /// With `unref`, a reference this node holds on a single heap parent (`COUNTED_PARENT`)
    /// is dropped in the same atomic operation as the parent's unlock; returns `true` if it was
    /// the parent's last reference (the caller then frees the parent).
    ///
    /// # Safety
    /// The caller owns the node and is dropping it; its parents are alive (invariant 1).
    pub(crate) unsafe fn unlink_from_parents(&self, unref: bool) -> bool {
        let st = self.state.load(Acquire);
        if st & INIT == 0 {
            return false;
        }
        let parent = self.parent_ptr();
        if parent.is_null() {
            return false;
        }
        if st & MULTI != 0 {
            // SAFETY: a MULTI node's parent pointer is its first link (any_of.rs).
            unsafe { crate::any_of::unlink_all(parent.cast()) };
            false
        } else {
            let unref = unref && st & COUNTED_PARENT != 0;
            // SAFETY: invariant 1: the parent is alive; our entry belongs to its list; with
            // `unref` we own the reference this node holds on it.
            unsafe { (*(parent as *const Node)).detach_unref(&self.entry, Some(self), unref) }
        }
    }

    /// A pointer to this node's own entry that keeps the provenance of the whole node, so the
    /// walker can get back to the node from it (a `&self.entry` or `&raw const self.entry`
    /// would be limited to the field under Stacked Borrows).
    pub(crate) fn entry_ptr(&self) -> *const Entry {
        Node::entry_ptr_raw(core::ptr::from_ref(self))
    }

    /// [`entry_ptr`](Self::entry_ptr) from a raw node pointer, keeping its provenance.
    pub(crate) fn entry_ptr_raw(node: *const Node) -> *const Entry {
        node.cast::<u8>()
            .wrapping_add(core::mem::offset_of!(Node, entry))
            .cast::<Entry>()
    }

    /// Whether `parent` holds a reference count (heap chain).
    #[cfg(feature = "alloc")]
    pub(crate) fn has_counted_parent(&self) -> bool {
        self.state.load(Relaxed) & COUNTED_PARENT != 0
    }

    pub(crate) fn is_multi(&self) -> bool {
        self.state.load(Relaxed) & MULTI != 0
    }

    // ---- reference counting for heap nodes (alloc) ----

    /// Take a reference if this is a heap node that still has one (never resurrects a node
    /// whose count reached zero). Returns whether it took one.
    #[cfg(feature = "alloc")]
    pub(crate) fn try_ref(&self) -> bool {
        let mut cur = self.state.load(Relaxed);
        loop {
            let refs = cur & REF_MASK;
            if refs == 0 || refs > REF_MASK / 2 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(cur, cur + REF_ONE, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Set the initial reference count of a fresh heap node.
    #[cfg(feature = "alloc")]
    pub(crate) fn init_refs(&self, refs: usize) {
        self.state.store(refs, Relaxed);
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn ref_inc(&self) {
        let old = self.state.fetch_add(REF_ONE, Relaxed);
        // Like `Arc`: refuse long before the count could wrap (on 32-bit targets the field has
        // 24 bits), undoing our increment so the count stays exact.
        if old & REF_MASK > REF_MASK / 2 {
            self.state.fetch_sub(REF_ONE, Relaxed);
            panic!("cutoff: too many handles to one node");
        }
    }

    /// Returns true if this was the last reference.
    #[cfg(feature = "alloc")]
    pub(crate) fn ref_dec(&self) -> bool {
        let old = self.state.fetch_sub(REF_ONE, Release);
        if old & REF_MASK == REF_ONE {
            crate::loom::atomic::fence(Acquire);
            true
        } else {
            false
        }
    }

    /// Before running user code on this node's entries, the walker takes one reference on it
    /// if it is a heap node (pinned nodes have a zero count) and has none yet. Lock held.
    ///
    /// Called while the walker still holds the popped entry `TAKEN` (walk.rs). The owner of
    /// that entry keeps its own reference until it sees the entry `RELEASED`, so the count
    /// cannot reach zero meanwhile; the increment is still a never-from-zero CAS (as in
    /// [`try_ref`](Self::try_ref)), so a count that did reach zero (a node whose last owner
    /// is freeing it) is never brought back (ADV-1: a `load` + `fetch_add` here, after the
    /// release, resurrected a node its owner was freeing: double free).
    #[cfg(feature = "alloc")]
    pub(crate) fn hold_for_walker(&self) {
        let mut cur = self.state.load(Relaxed);
        loop {
            let refs = cur & REF_MASK;
            // (Near the overflow limit the walker goes without; see `ref_inc`.)
            if refs == 0 || cur & WALKER_REF != 0 || refs > REF_MASK / 2 {
                return;
            }
            match self.state.compare_exchange_weak(
                cur,
                cur + (REF_ONE | WALKER_REF),
                Relaxed,
                Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The walker was handed one reference on this node (freeing the child it came from).
    /// Record it as the walker's reference, or drop it if the walker already holds one.
    #[cfg(feature = "alloc")]
    pub(crate) fn adopt_walker_ref(&self) {
        let old = self.state.fetch_or(WALKER_REF, Relaxed);
        if old & WALKER_REF != 0 {
            let last = self.ref_dec();
            debug_assert!(!last, "the walker's own reference keeps the node alive");
        }
    }

    /// Drop one reference unless it is the last; returns `true` (and keeps it) if it is.
    #[cfg(feature = "alloc")]
    pub(crate) fn ref_dec_unless_last(&self) -> bool {
        let mut cur = self.state.load(Relaxed);
        loop {
            if cur & REF_MASK == REF_ONE {
                crate::loom::atomic::fence(Acquire);
                return true;
            }
            match self
                .state
                .compare_exchange_weak(cur, cur - REF_ONE, Release, Relaxed)
            {
                Ok(_) => return false,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// The node's combined unlock operations: each clears `LOCKED` in the same atomic step as
/// another change of the state word (lock.rs, "Why a bit in the state word").
impl Guard<'_> {
    /// Unlock and take one reference in the same atomic operation.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn unlock_ref(self) {
        let node = self.node();
        // LOCKED is set, so adding `REF_ONE - LOCKED` clears exactly that bit and adds one
        // reference; the reference keeps the node alive past the unlock.
        let old = self.unlock_alive_with(|s| s.fetch_add(REF_ONE - LOCKED, Release));
        if old & REF_MASK > REF_MASK / 2 {
            node.state.fetch_sub(REF_ONE, Relaxed);
            panic!("cutoff: too many handles to one node");
        }
    }

    /// Unlock and drop one reference in one atomic operation; `true` if it was the last.
    /// The node may be gone once it returns (a `LOCK_PARKED` it saw stays, stale: lock.rs
    /// invariant 3).
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn unlock_unref(self) -> bool {
        // LOCKED is set, so subtracting it clears exactly that bit.
        let old = self.unlock_with(|s| s.fetch_sub(LOCKED + REF_ONE, Release));
        if old & REF_MASK == REF_ONE {
            crate::loom::atomic::fence(Acquire);
            true
        } else {
            false
        }
    }

    /// Unlock and clear `flags` in the same `Release` operation; returns the old word.
    #[inline]
    pub(crate) fn unlock_clearing(self, flags: usize) -> usize {
        self.unlock_with(|s| s.fetch_and(!(LOCKED | LOCK_PARKED | flags), Release))
    }

    /// Unlock and set `flags` (known to be clear) in the same `Release` operation. The caller
    /// keeps the node alive past the unlock (the walker, on its current node).
    #[inline]
    pub(crate) fn unlock_setting(self, flags: usize) {
        self.unlock_alive_with(|s| s.fetch_xor(LOCKED | flags, Release));
    }

    /// Set or clear `flags` while holding the lock.
    #[inline]
    pub(crate) fn set_flags(&self, flags: usize) {
        self.node().state.fetch_or(flags, Relaxed);
    }

    /// Clear `flags` while holding the lock.
    #[inline]
    pub(crate) fn clear_flags(&self, flags: usize) {
        self.node().state.fetch_and(!flags, Relaxed);
    }

    /// Write the reason and set `CANCELLED | WALKING`, keeping the lock.
    ///
    /// Panics (debug) if the node was already cancelled when the lock was taken.
    pub(crate) fn publish_cancel(&self, reason: Reason) {
        debug_assert!(self.seen() & CANCELLED == 0);
        let node = self.node();
        // SAFETY: invariant 2: we hold the lock and `CANCELLED` was clear when we took it (it
        // is only set under the lock), so no reader or writer of the reason exists.
        node.reason.with_mut(|p| unsafe { *p = Some(reason) });
        node.state.fetch_or(CANCELLED | WALKING, Release);
    }

    /// Write the reason, set `CANCELLED` and release the lock in one operation, for a node
    /// whose list is empty (a leaf: nothing to walk, so no `WALKING`).
    pub(crate) fn publish_cancel_leaf(self, reason: Reason) {
        debug_assert!(self.seen() & CANCELLED == 0);
        // SAFETY: the guard holds the lock (so the list cannot change).
        debug_assert!(unsafe { self.list().is_empty() });
        let node = self.node();
        // SAFETY: invariant 2: we hold the lock and the bit was clear, so no reader exists.
        node.reason.with_mut(|p| unsafe { *p = Some(reason) });
        // LOCKED is set and CANCELLED clear: toggling both unlocks and cancels at once. The
        // walker's TAKEN entry keeps the leaf alive past the unlock.
        self.unlock_alive_with(|s| s.fetch_xor(LOCKED | CANCELLED, Release));
    }
}
