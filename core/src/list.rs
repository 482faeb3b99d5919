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
//!    `LINKED -> TAKEN` (popped by a cancel walker, under the lock) and
//!    `TAKEN -> RELEASED` (the walker is done with it; a `Release` store, after which the walker
//!    never touches the entry again). Only join waiters go `RELEASED -> LINKED` again.
//! 3. While an entry is `LINKED` or `TAKEN`, its memory stays valid: owners unlink it, or wait
//!    for `RELEASED`, before they let it go (pinning guarantees the rest).
//! 4. `kind` never changes after construction.
#![allow(unsafe_code)]

use core::marker::PhantomPinned;
use core::ptr;

use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicU8, Ordering::*};

/// Not in any list.
pub(crate) const IDLE: u8 = 0;
/// In a list.
pub(crate) const LINKED: u8 = 1;
/// Popped by a cancel walker that is still using it.
pub(crate) const TAKEN: u8 = 2;
/// Popped, and the walker is done with it.
pub(crate) const RELEASED: u8 = 3;

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
    /// `IDLE`, `LINKED`, `TAKEN` or `RELEASED` (invariant 2).
    pub(crate) status: AtomicU8,
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

    /// Wait until a walker has released this entry.
    pub(crate) fn wait_released(&self) {
        let mut spins = 0;
        while crate::loom::spin_read_u8(&self.status, Acquire) == TAKEN {
            crate::loom::relax(&mut spins);
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
            (*e).prev.with_mut(|p| *p = ptr::null());
            (*e).next.with_mut(|p| *p = head);
            if !head.is_null() {
                (*head).prev.with_mut(|p| *p = e);
            }
            self.head.with_mut(|p| *p = e);
            (*e).status.store(LINKED, Relaxed);
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
            let prev = (*e).prev.with(|p| *p);
            let next = (*e).next.with(|p| *p);
            if prev.is_null() {
                self.head.with_mut(|p| *p = next);
            } else {
                (*prev).next.with_mut(|p| *p = next);
            }
            if !next.is_null() {
                (*next).prev.with_mut(|p| *p = prev);
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
