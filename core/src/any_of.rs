//! Nodes with several parents: cancelled when *any* parent is (.NET's linked token sources).
//!
//! A multi-parent node is an ordinary root [`Node`] plus one [`LinkEntry`] per parent. Each
//! link sits in its parent's list like a child; when a parent's walker pops it, it cancels the
//! target node with that parent's reason (first parent wins) and walks it. The node's
//! `parent` pointer points at the first link; links are contiguous and the last one carries a
//! flag.
#![allow(unsafe_code)]

use core::fmt;
use core::pin::Pin;
use core::ptr;

use crate::list::{self, Entry, Kind};
use crate::node::Node;
use crate::state::{CANCELLED, INIT, MULTI};
use crate::view::NodeView;

const LAST: u32 = 1 << 31;
/// The link holds a reference count on a heap parent.
pub(crate) const COUNTED: u32 = 1 << 30;

/// One parent link of a multi-parent node.
#[repr(C)]
pub(crate) struct LinkEntry {
    entry: Entry,
    parent: *const Node,
    target: *const Node,
}

impl LinkEntry {
    pub(crate) fn new() -> Self {
        Self {
            entry: list::new_entry(Kind::Link),
            parent: ptr::null(),
            target: ptr::null(),
        }
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn parent(&self) -> *const Node {
        self.parent
    }

    pub(crate) fn target(&self) -> *const Node {
        self.target
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn is_counted(&self) -> bool {
        self.entry.aux() & COUNTED != 0
    }
}

/// Link `node` under every parent.
///
/// # Safety
/// `node` is fresh and exclusively owned; `links` is at its final address with one slot per
/// parent, non-empty, and outlives the node's linkage; each parent outlives the node
/// (node.rs invariant 1). `counted[i]` says whether the caller transferred a reference count
/// on parent `i` to the link.
pub(crate) unsafe fn link_all(
    node: &Node,
    links: &mut [LinkEntry],
    parents: impl Iterator<Item = (*const Node, bool)>,
) {
    let n = links.len();
    debug_assert!(n > 0);
    for (i, (slot, (parent, counted))) in links.iter_mut().zip(parents).enumerate() {
        slot.parent = parent;
        slot.target = node;
        let mut aux = i as u32;
        if i + 1 == n {
            aux |= LAST;
        }
        if counted {
            aux |= COUNTED;
        }
        slot.entry.set_aux(aux);
    }
    // SAFETY: exclusive access to the fresh node.
    // `as_mut_ptr`: the node frees a heap slice through this pointer later.
    unsafe { node.set_parent_ptr(links.as_mut_ptr().cast_const().cast()) };
    node.set_flags(MULTI | INIT);
    for link in links.iter() {
        if node.is_cancelled() {
            break;
        }
        // SAFETY: the parent outlives the node (caller).
        let parent = unsafe { &*link.parent };
        let g = parent.lock();
        if g.seen() & CANCELLED != 0 {
            // SAFETY: CANCELLED seen under the lock.
            let reason = unsafe { parent.reason_unchecked() };
            drop(g);
            node.cancel_with(reason);
            continue;
        }
        // SAFETY: the guard holds the lock; the link is pinned (caller) and detached in
        // `unlink_all`.
        unsafe { g.list().push_front(ptr::from_ref(link).cast::<Entry>()) };
        g.set_child_count(g.child_count() + 1);
        drop(g);
    }
}

/// Detach every link starting at `first`.
///
/// # Safety
/// `first` is the first link of a node being dropped by its owner; parents are alive.
pub(crate) unsafe fn unlink_all(first: *const LinkEntry) {
    let mut cur = first;
    loop {
        // SAFETY: links are contiguous and valid until the owner frees them after this call.
        let link = unsafe { &*cur };
        if link.entry.status() != list::IDLE {
            // SAFETY: the parent is alive and the link belongs to its list; the target is the
            // node its owner is dropping, alive until this call returns.
            unsafe { (*link.parent).detach_child(&link.entry, &*link.target()) };
        }
        if link.entry.aux() & LAST != 0 {
            return;
        }
        // SAFETY: not the last, so the next slot exists.
        cur = unsafe { cur.add(1) };
    }
}

/// The minimum of `f(parent)` over the parents of the links starting at `first`.
///
/// # Safety
/// `first` is the first link of an initialised multi-parent node that the caller keeps alive
/// (so its parents are alive too).
pub(crate) unsafe fn min_over_parents(first: *const LinkEntry, f: fn(&Node) -> u64) -> u64 {
    let mut min = u64::MAX;
    let mut cur = first;
    loop {
        // SAFETY: links are contiguous up to the one flagged LAST; parents outlive the node.
        let link = unsafe { &*cur };
        // SAFETY: as above.
        min = min.min(f(unsafe { &*link.parent }));
        if link.entry.aux() & LAST != 0 {
            return min;
        }
        // SAFETY: not the last, so the next slot exists.
        cur = unsafe { cur.add(1) };
    }
}

/// Number of links starting at `first`.
///
/// # Safety
/// `first` is the first link of an initialised multi-parent node.
#[cfg(feature = "alloc")]
pub(crate) unsafe fn count(first: *const LinkEntry) -> usize {
    let mut n = 1;
    let mut cur = first;
    // SAFETY: links are contiguous up to the one flagged LAST.
    while unsafe { (*cur).entry.aux() } & LAST == 0 {
        n += 1;
        // SAFETY: as above.
        cur = unsafe { cur.add(1) };
    }
    n
}

/// A pinned node with `N` parents: cancelled when any of them is, with that parent's reason.
/// No allocation.
///
/// # Examples
///
/// ```
/// use core::pin::pin;
/// use cutoff::{AnyOf, Node, Reason};
///
/// let shutdown = Node::new();
/// let client_gone = Node::new();
/// let mut req = pin!(AnyOf::new([&*shutdown, &*client_gone]));
/// let req = req.as_mut().link();
/// client_gone.cancel_with(Reason::Code(499));
/// assert_eq!(req.reason(), Some(Reason::Code(499)));
/// ```
pub struct AnyOf<'p, const N: usize> {
    node: Node,
    links: [LinkEntry; N],
    parents: [&'p Node; N],
}

impl<'p, const N: usize> AnyOf<'p, N> {
    /// An unlinked node with the given parents.
    pub fn new(parents: [&'p NodeView; N]) -> Self {
        Self {
            node: Node::new(),
            links: core::array::from_fn(|_| LinkEntry::new()),
            parents: parents.map(NodeView::node),
        }
    }

    /// Link into every parent (the first time) and return the node. With `N == 0` the node is
    /// a plain root.
    pub fn link(self: Pin<&mut Self>) -> &Node {
        // SAFETY: we never move out of the pinned value.
        let this = unsafe { self.get_unchecked_mut() };
        if N > 0 && this.node.state_relaxed() & INIT == 0 {
            let parents = this.parents.map(|p| (p as *const Node, false));
            // SAFETY: exclusive, pinned; `'p` parents outlive us; links live with the node.
            unsafe { link_all(&this.node, &mut this.links, parents.into_iter()) };
        }
        &this.node
    }
}

impl<const N: usize> Drop for AnyOf<'_, N> {
    fn drop(&mut self) {
        // SAFETY: we own the node; parents are alive (`'p`).
        unsafe { self.node.unlink_from_parents(false) };
        crate::unwind::resume();
    }
}

impl<const N: usize> fmt::Debug for AnyOf<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyOf")
            .field("node", &self.node)
            .field("parents", &N)
            .finish()
    }
}
