//! The intrusive, doubly-linked entry list every node owns.
//!
//! A node's list holds its *entries*: child nodes, links of multi-parent nodes, callbacks,
//! async/blocking waiters and join waiters. Each entry lives inside the value that owns it
//! (a child node, a pinned `Callback`, a `Cancellation` future), so linking allocates nothing
//! and unlinking is O(1).
//!
//! # Invariants
//!
//! 1. `prev`/`next` of an entry and the list head of a node are only read or written while
//!    holding that node's `LOCKED` bit.
//! 2. An entry's `status` moves `IDLE -> LINKED` (pushed, under the lock),
//!    `LINKED -> IDLE` (removed by its owner, under the lock),
//!    `LINKED -> TAKEN` (popped by a cancel walker, under the lock),
//!    `TAKEN -> DEFERRED` (pushed back at the tail by a walker that could not wait for the
//!    target's own walk, under the lock; walk.rs), `DEFERRED -> LINKED` (a later walker adopts
//!    the node), `DEFERRED -> IDLE` (removed by its owner, like `LINKED`), and
//!    `TAKEN -> RELEASED` (the walker is done with it; a `Release` store or swap, after which
//!    the walker never touches the entry again). Only join waiters go `RELEASED -> LINKED`.
//! 3. While an entry is `LINKED`, `DEFERRED` or `TAKEN`, its memory stays valid: owners
//!    unlink it, or wait for `RELEASED`, before they let it go (pinning guarantees the rest).
//! 4. `kind` never changes after construction.
//! 5. `DEFERRED` entries and join waiters sit at the tail of the list, behind every entry the
//!    walker acts on: they are pushed at the tail, everything else at the front, the walker
//!    never pops a join waiter (joins wait for the last child, not for the cancellation; a
//!    join woken and re-linked at the front on every step livelocked a walk: review F2), and
//!    an adopting walker turns the deferred entries back into `LINKED` at once.
//! 6. The `WAITING` flag is or-ed into a `TAKEN` status by an owner about to park until the
//!    entry is released, only while it holds the node's lock. A release made under that lock
//!    therefore sees the flag with a plain load (no read-modify-write on the walker's hot
//!    path); a release made without the lock swaps the status. Either one wakes the owner.
//!    The exception is the entry through which a walker is *inside* a node (the node's
//!    `WALKING` is set and it is not `ABANDONED`): its owner waits for the node's walk instead
//!    (node.rs `detach_unref`), never sets `WAITING` on it (a walker that descends through an
//!    entry clears a `WAITING` set before and wakes the owner, who then waits for the walk),
//!    and the walker releases it with a plain store ([`Entry::release_walked`]) right before
//!    the read-modify-write that clears `WALKING` and wakes the walk's waiters.
//! 7. The list is doubly linked with the head's `prev` pointing at the tail (so pushing at
//!    the tail is O(1)); the tail's `next` is null.
#![allow(unsafe_code)]

use core::marker::PhantomPinned;
use core::ptr;

use crate::lock::Guard;
use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicU8, Ordering::*};
use crate::park::Backoff;

/// Not in any list.
pub(crate) const IDLE: u8 = 0;
/// In a list.
pub(crate) const LINKED: u8 = 1;
/// Popped by a cancel walker that is still using it.
pub(crate) const TAKEN: u8 = 2;
/// Popped, and the walker is done with it.
pub(crate) const RELEASED: u8 = 3;
/// Popped, then pushed back at the tail for a later walker (walk.rs, "Deferred entries").
pub(crate) const DEFERRED: u8 = 4;
/// Or-ed into `TAKEN` while the owner waits for the release (invariant 6).
const WAITING: u8 = 0x80;

/// What an entry is, which tells the walker what to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// The `entry` field of a child [`Node`](crate::Node).
    Child = 0,
    /// One parent link of a multi-parent node (`crate::any_of::LinkEntry`).
    Link = 1,
    /// A callback registration (`crate::callback::Header`).
    Callback = 2,
    /// A cancellation waiter (`crate::wait::Waiter`).
    Waiter = 3,
    /// A join waiter (`crate::wait::Waiter`, woken when the last child goes).
    Join = 4,
}

/// An intrusive list entry. Always the first field of a `#[repr(C)]` owner (or the `entry`
/// field of a node), so the walker can get back to its owner.
#[repr(C)]
pub(crate) struct Entry {
    prev: UnsafeCell<*const Entry>,
    next: UnsafeCell<*const Entry>,
    /// `IDLE`, `LINKED`, `TAKEN`, `DEFERRED` or `RELEASED` (invariant 2), with `WAITING`
    /// (invariant 6); read it through [`status`](Entry::status).
    status: AtomicU8,
    /// Immutable after construction, but in a cell (as is every other byte of an entry, the
    /// padding included): then a pointer derived from a shared reference to a node may be
    /// used to free it (Tree Borrows only allows that through interior-mutable bytes), which
    /// is what happens when the last handle of a heap node is a token made from a reference.
    kind: UnsafeCell<u8>,
    /// For a node's own entry: the extension id of an extension node (ext.rs), else 0.
    /// Written once before the node is shared.
    ext: UnsafeCell<u8>,
    _pad: UnsafeCell<u8>,
    /// A word for the owner's own use. For a node: its count of child entries (guarded by the
    /// node's own lock). For a link: its index and a last-link flag (immutable).
    pub(crate) aux: UnsafeCell<u32>,
    _pin: PhantomPinned,
}

// SAFETY: all fields are atomics or cells guarded by the owning node's lock (invariant 1).
unsafe impl Send for Entry {}
// SAFETY: as above.
unsafe impl Sync for Entry {}

crate::loom_const_fn! {
    pub(crate) fn new_entry(kind: Kind) -> Entry {
        Entry {
            prev: UnsafeCell::new(ptr::null()),
            next: UnsafeCell::new(ptr::null()),
            status: AtomicU8::new(IDLE),
            kind: UnsafeCell::new(kind as u8),
            ext: UnsafeCell::new(0),
            _pad: UnsafeCell::new(0),
            aux: UnsafeCell::new(0),
            _pin: PhantomPinned,
        }
    }
}

impl Entry {
    pub(crate) fn kind(&self) -> Kind {
        // SAFETY: never written after construction.
        match self.kind.with(|p| unsafe { *p }) {
            0 => Kind::Child,
            1 => Kind::Link,
            2 => Kind::Callback,
            3 => Kind::Waiter,
            _ => Kind::Join,
        }
    }

    pub(crate) fn ext_id(&self) -> u8 {
        // SAFETY: written once before the node is shared (field docs).
        self.ext.with(|p| unsafe { *p })
    }

    /// # Safety
    /// The node is not shared yet.
    pub(crate) unsafe fn set_ext_id(&self, id: u8) {
        // SAFETY: the caller's contract.
        self.ext.with_mut(|p| unsafe { *p = id })
    }

    pub(crate) fn aux(&self) -> u32 {
        // SAFETY: callers read `aux` under the lock that guards it, or it is immutable.
        self.aux.with(|p| unsafe { *p })
    }

    pub(crate) fn set_aux(&self, v: u32) {
        // SAFETY: callers write `aux` under the lock that guards it, or before sharing.
        self.aux.with_mut(|p| unsafe { *p = v })
    }

    /// The entry's status (`Acquire`), without the `WAITING` flag.
    #[inline]
    pub(crate) fn status(&self) -> u8 {
        self.status.load(Acquire) & !WAITING
    }

    /// The parking key of an owner waiting for the release: the status byte's address.
    fn key(&self) -> usize {
        core::ptr::from_ref(&self.status) as usize
    }

    /// Wait until the walker that holds this entry `TAKEN` has released it. Takes the guard of
    /// the lock of the node whose list the entry belongs to (under which the caller saw
    /// `TAKEN`) and releases it; the caller locks again if it needs to.
    #[cold]
    #[inline(never)]
    pub(crate) fn wait_released(&self, g: Guard<'_>) {
        if !crate::park::CAN_PARK {
            drop(g);
            let mut b = Backoff::new();
            while self.status() == TAKEN {
                b.spin();
            }
            return;
        }
        // Announce under the lock (invariant 6), so a release under the same lock sees it.
        let announced = self
            .status
            .compare_exchange(TAKEN, TAKEN | WAITING, Relaxed, Relaxed)
            .is_ok()
            || self.status.load(Relaxed) == TAKEN | WAITING;
        drop(g);
        if !announced {
            return;
        }
        let mut b = Backoff::new();
        // Woken by the release, or by a deferral (then the caller finds `DEFERRED`).
        while self.status.load(Acquire) == TAKEN | WAITING {
            if b.spin() {
                continue;
            }
            crate::park::park(self.key(), || self.status.load(Relaxed) == TAKEN | WAITING);
        }
    }

    /// Release a `TAKEN` entry (the walker is done with it), without holding its node's lock.
    /// After this the caller must not touch the entry: its owner may free it at once.
    #[inline]
    pub(crate) fn release(e: *const Entry) {
        // SAFETY: the walker holds `e` TAKEN (invariant 3) until the store / swap below.
        let (status, key) = unsafe { (&(*e).status, (*e).key()) };
        if crate::park::CAN_PARK {
            if status.swap(RELEASED, Release) & WAITING != 0 {
                crate::park::wake_all(key);
            }
        } else {
            status.store(RELEASED, Release);
        }
    }

    /// Release the entry through which the walker entered a node it is now leaving, right
    /// before it clears that node's `WALKING` (invariant 6: the owner waits for that clear,
    /// so a plain `Release` store is enough here).
    #[inline]
    pub(crate) fn release_walked(e: *const Entry) {
        // SAFETY: the walker holds `e` TAKEN (invariant 3) until the store below.
        let status = unsafe { &(*e).status };
        debug_assert!(status.load(Relaxed) & WAITING == 0);
        status.store(RELEASED, Release);
    }

    /// A walker descends through `e` (TAKEN, popped from the node `_g` locks): an owner that
    /// set `WAITING` before the node was walked through it must wait for the walk instead
    /// (invariant 6). Clear the flag and wake it.
    #[inline]
    pub(crate) fn entered(e: *const Entry, _g: &Guard<'_>) {
        // SAFETY: the walker holds `e` TAKEN (invariant 3).
        let status = unsafe { &(*e).status };
        if status.load(Relaxed) & WAITING != 0 {
            status.store(TAKEN, Relaxed);
            // SAFETY: as above.
            crate::park::wake_all(unsafe { (*e).key() });
        }
    }

    /// [`release`](Self::release) for a walker that holds the lock of the node whose list
    /// the entry came from (`_g`): a plain load and store (invariant 6).
    #[inline]
    pub(crate) fn release_locked(e: *const Entry, _g: &Guard<'_>) {
        // SAFETY: the walker holds `e` TAKEN (invariant 3) until the store below.
        let (status, key) = unsafe { (&(*e).status, (*e).key()) };
        let waiting = status.load(Relaxed) & WAITING != 0;
        status.store(RELEASED, Release);
        if waiting {
            crate::park::wake_all(key);
        }
    }
}

impl core::fmt::Debug for Entry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind())
            .field("status", &self.status.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// The head of an entry list.
pub(crate) struct List {
    head: UnsafeCell<*const Entry>,
}

crate::loom_const_fn! {
    pub(crate) fn new_list() -> List {
        List { head: UnsafeCell::new(ptr::null()) }
    }
}

impl List {
    /// Push `e` at the front and mark it `LINKED`.
    ///
    /// # Safety
    /// The caller holds the owning node's lock, `e` is valid, `IDLE` or `RELEASED`, and stays
    /// valid until it is removed or released (invariant 3).
    pub(crate) unsafe fn push_front(&self, e: *const Entry) {
        // SAFETY: we hold the lock (caller), so head and the neighbours' links are ours.
        unsafe {
            let head = self.head.with(|p| *p);
            if head.is_null() {
                (*e).prev.with_mut(|p| *p = e);
            } else {
                // The head's `prev` is the tail (invariant 7).
                let tail = (*head).prev.with(|p| *p);
                (*e).prev.with_mut(|p| *p = tail);
                (*head).prev.with_mut(|p| *p = e);
            }
            (*e).next.with_mut(|p| *p = head);
            self.head.with_mut(|p| *p = e);
            (*e).status.store(LINKED, Relaxed);
        }
    }

    /// Link `e` at the tail, O(1), with status `status`.
    ///
    /// # Safety
    /// The caller holds the owning node's lock and `e` is valid and in no list.
    unsafe fn link_back(&self, e: *const Entry, status: u8) {
        // SAFETY: we hold the lock (caller), so head and the neighbours' links are ours.
        unsafe {
            let head = self.head.with(|p| *p);
            (*e).next.with_mut(|p| *p = ptr::null());
            if head.is_null() {
                (*e).prev.with_mut(|p| *p = e);
                self.head.with_mut(|p| *p = e);
            } else {
                let tail = (*head).prev.with(|p| *p);
                (*tail).next.with_mut(|p| *p = e);
                (*e).prev.with_mut(|p| *p = tail);
                (*head).prev.with_mut(|p| *p = e);
            }
            (*e).status.store(status, Relaxed);
        }
    }

    /// Push a join waiter at the tail and mark it `LINKED` (invariant 5: the walker never
    /// pops join entries, so they sit behind every entry it acts on).
    ///
    /// # Safety
    /// As for [`push_front`](Self::push_front), and `e` is a `Join` entry.
    pub(crate) unsafe fn push_back_join(&self, e: *const Entry) {
        // SAFETY: forwarded.
        unsafe { self.link_back(e, LINKED) };
    }

    /// Push a `TAKEN` entry back at the tail and mark it `DEFERRED` (invariant 5), O(1).
    ///
    /// # Safety
    /// The caller holds the owning node's lock and holds `e` `TAKEN` (popped from this list).
    pub(crate) unsafe fn push_back_deferred(&self, e: *const Entry) {
        // SAFETY: the caller's contract; `e` is valid while TAKEN.
        unsafe {
            // An owner parked until the release (invariant 6) can now remove the entry
            // itself: wake it (it announced under this lock, so a plain load sees it).
            let waiting = (*e).status.load(Relaxed) & WAITING != 0;
            self.link_back(e, DEFERRED);
            if waiting {
                crate::park::wake_all((*e).key());
            }
        }
    }

    /// Remove a `LINKED` entry and mark it `IDLE`.
    ///
    /// # Safety
    /// The caller holds the owning node's lock and `e` is `LINKED` in this list.
    pub(crate) unsafe fn remove(&self, e: *const Entry) {
        // SAFETY: we hold the lock, and `e` and its neighbours are linked here (invariant 3).
        unsafe {
            self.unlink(e);
            (*e).status.store(IDLE, Relaxed);
        }
    }

    /// Pop the front entry and mark it `TAKEN`.
    ///
    /// # Safety
    /// The caller holds the owning node's lock.
    pub(crate) unsafe fn pop_front(&self) -> Option<*const Entry> {
        let head = self.head.with(unsafe_read);
        if head.is_null() {
            return None;
        }
        // SAFETY: lock held; head is linked here.
        unsafe {
            self.unlink(head);
            (*head).status.store(TAKEN, Relaxed);
        }
        Some(head)
    }

    /// Pop the front entry and mark it `TAKEN`, unless it is `DEFERRED` or a join waiter (then
    /// every entry left is one of those, invariant 5).
    ///
    /// # Safety
    /// The caller holds the owning node's lock.
    pub(crate) unsafe fn pop_front_live(&self) -> Option<*const Entry> {
        let head = self.head.with(unsafe_read);
        if head.is_null() {
            return None;
        }
        // SAFETY: lock held; a non-null head is linked and valid.
        let (status, kind) = unsafe { ((*head).status.load(Relaxed) & !WAITING, (*head).kind()) };
        if status == DEFERRED || kind == Kind::Join {
            return None;
        }
        // SAFETY: as above.
        unsafe { self.pop_front() }
    }

    /// Whether any entry is `DEFERRED` (a scan of the list).
    ///
    /// # Safety
    /// The caller holds the owning node's lock.
    pub(crate) unsafe fn has_deferred(&self) -> bool {
        let mut cur = self.head.with(unsafe_read);
        // SAFETY: lock held; every entry reachable from head is linked and valid.
        unsafe {
            while !cur.is_null() {
                if (*cur).status.load(Relaxed) & !WAITING == DEFERRED {
                    return true;
                }
                cur = (*cur).next.with(|p| *p);
            }
        }
        false
    }

    /// Turn every `DEFERRED` entry back into `LINKED`, for a walker adopting an abandoned
    /// node (walk.rs): the entries its predecessor deferred are its to walk.
    ///
    /// # Safety
    /// The caller holds the owning node's lock.
    pub(crate) unsafe fn undefer_all(&self) {
        let mut cur = self.head.with(unsafe_read);
        // SAFETY: lock held; every entry reachable from head is linked and valid.
        unsafe {
            while !cur.is_null() {
                if (*cur).status.load(Relaxed) == DEFERRED {
                    (*cur).status.store(LINKED, Relaxed);
                }
                cur = (*cur).next.with(|p| *p);
            }
        }
    }

    /// Whether the list is empty.
    ///
    /// # Safety
    /// The caller holds the owning node's lock.
    pub(crate) unsafe fn is_empty(&self) -> bool {
        self.head.with(unsafe_read).is_null()
    }

    /// The kind of the front entry, if any.
    ///
    /// # Safety
    /// The caller holds the owning node's lock.
    pub(crate) unsafe fn front_kind(&self) -> Option<Kind> {
        let head = self.head.with(unsafe_read);
        // SAFETY: lock held; a non-null head is a linked, valid entry.
        (!head.is_null()).then(|| unsafe { (*head).kind() })
    }

    /// Find and pop the first entry of `kind`, marking it `TAKEN`.
    ///
    /// # Safety
    /// The caller holds the owning node's lock.
    pub(crate) unsafe fn pop_kind(&self, kind: Kind) -> Option<*const Entry> {
        let mut cur = self.head.with(unsafe_read);
        // SAFETY: lock held; every entry reachable from head is linked and valid.
        unsafe {
            while !cur.is_null() {
                if (*cur).kind() == kind {
                    self.unlink(cur);
                    (*cur).status.store(TAKEN, Relaxed);
                    return Some(cur);
                }
                cur = (*cur).next.with(|p| *p);
            }
        }
        None
    }

    /// # Safety
    /// Lock held, `e` linked in this list.
    unsafe fn unlink(&self, e: *const Entry) {
        // SAFETY: lock held; `e`, its `prev` and `next` are valid (invariant 3).
        unsafe {
            let head = self.head.with(|p| *p);
            let prev = (*e).prev.with(|p| *p);
            let next = (*e).next.with(|p| *p);
            if ptr::eq(e, head) {
                // `prev` is the tail (invariant 7), which the new head inherits.
                self.head.with_mut(|p| *p = next);
                if !next.is_null() {
                    (*next).prev.with_mut(|p| *p = prev);
                }
            } else {
                (*prev).next.with_mut(|p| *p = next);
                if next.is_null() {
                    // `e` was the tail: `prev` is the new one.
                    (*head).prev.with_mut(|p| *p = prev);
                } else {
                    (*next).prev.with_mut(|p| *p = prev);
                }
            }
        }
    }
}

/// Read a raw cell pointer.
#[inline(always)]
fn unsafe_read<T: Copy>(p: *const T) -> T {
    // SAFETY: only called from `List` methods whose callers hold the lock guarding the cell.
    unsafe { *p }
}

impl Entry {
    /// While an entry is `TAKEN`, its `prev` word is free (it is in no list); the walker
    /// stores in it the node it popped the entry from, and climbs back through that pointer
    /// rather than a `parent` field (which could be stale for a leaked child whose parent has
    /// since moved).
    pub(crate) fn popped_from(&self) -> *const crate::Node {
        // SAFETY: only the walker holding this entry TAKEN reads/writes it.
        self.prev.with(|p| unsafe { *p }).cast()
    }

    pub(crate) fn set_popped_from(&self, n: *const crate::Node) {
        // SAFETY: as above.
        self.prev.with_mut(|p| unsafe { *p = n.cast() })
    }

    /// The `prev` word, reused by multi-parent nodes to remember which link a walker entered
    /// through (their own `entry` is never linked anywhere).
    pub(crate) fn scratch(&self) -> *const Entry {
        // SAFETY: only the walker that owns the node's cancellation reads/writes it.
        self.prev.with(|p| unsafe { *p })
    }

    pub(crate) fn set_scratch(&self, e: *const Entry) {
        // SAFETY: as above.
        self.prev.with_mut(|p| unsafe { *p = e })
    }
}
