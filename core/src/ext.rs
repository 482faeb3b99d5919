//! Extension nodes: tree nodes that carry more than the tree itself needs, defined by other
//! crates. `cutoff-timer` uses them for deadline nodes (a node plus its timer-wheel entry).
//!
//! An extension node is a `#[repr(C)]` struct whose first field is an [`ExtHeader`], which is
//! just a [`Node`]: the node's `EXT` state bit says it is one, and a spare byte of the node
//! holds the extension's id, an index into a small process-wide table of registered
//! [`ExtVtable`]s (so an extension node costs no extra word). Through it the tree can
//!
//! * ask it for its **deadline** ([`NodeView::deadline_raw`] walks up the tree to the nearest
//!   extension node and takes the earliest deadline on the way), and
//! * **free** it through the vtable when it lives on the heap behind a
//!   [`CancelSource`](crate::CancelSource) and the last handle goes.
//!
//! The extension crate is responsible for what its part of the struct needs (for a deadline,
//! taking its entry out of the timer wheel and waiting for a firing in progress) in its own
//! `Drop`.
#![allow(unsafe_code)]

use core::fmt;
use core::pin::Pin;

use crate::node::Node;
use crate::state::{EXT, INIT, MULTI};
use crate::view::NodeView;

/// What the tree needs to know about an extension node.
pub struct ExtVtable {
    /// The node's effective deadline (already the earliest on its path when it was linked),
    /// in the extension's time unit, or `u64::MAX` for none.
    ///
    /// # Safety
    /// Called with a pointer to a live header whose vtable is this one.
    pub deadline: unsafe fn(*const ExtHeader) -> u64,
    /// Drop and free a heap extension node whose last handle is gone. The tree has already
    /// unlinked it from its parents and released its references on them.
    ///
    /// # Safety
    /// Called once, with a pointer produced for [`ExtHeader::into_source`], when no handle to
    /// the node remains.
    #[cfg(feature = "alloc")]
    pub free: unsafe fn(*mut ExtHeader),
}

impl fmt::Debug for ExtVtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtVtable").finish_non_exhaustive()
    }
}

/// The first field of an extension node: a tree node that knows its extension's vtable.
#[repr(C)]
pub struct ExtHeader {
    node: Node,
}

/// Registered vtables; an extension's id is its index + 1.
static TABLE: [crate::loom::StaticAtomicPtr<ExtVtable>; 15] =
    [const { crate::loom::StaticAtomicPtr::new(core::ptr::null_mut()) }; 15];

impl ExtVtable {
    /// This vtable's id, registering it on first use.
    ///
    /// # Panics
    /// If more than 15 different vtables are registered in one process.
    fn id(&'static self) -> u8 {
        use core::sync::atomic::Ordering::{AcqRel, Acquire};
        let me = core::ptr::from_ref(self).cast_mut();
        for (i, slot) in TABLE.iter().enumerate() {
            let cur = slot.load(Acquire);
            if cur == me {
                return i as u8 + 1;
            }
            if cur.is_null() {
                match slot.compare_exchange(core::ptr::null_mut(), me, AcqRel, Acquire) {
                    Ok(_) => return i as u8 + 1,
                    Err(other) if other == me => return i as u8 + 1,
                    Err(_) => {}
                }
            }
        }
        panic!("cutoff: too many extension vtables (at most 15)");
    }

    /// The vtable with id `id`.
    fn by_id(id: u8) -> &'static ExtVtable {
        let p = TABLE[usize::from(id) - 1].load(core::sync::atomic::Ordering::Acquire);
        // SAFETY: ids are only handed out for registered `&'static` vtables, never removed.
        unsafe { &*p }
    }
}

impl fmt::Debug for ExtHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtHeader")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl ExtHeader {
    /// A fresh header (an unlinked root node) for the extension described by `vtable`.
    pub fn new(vtable: &'static ExtVtable) -> ExtHeader {
        let header = ExtHeader { node: Node::new() };
        // SAFETY: the node is not shared yet.
        unsafe { header.node.entry.set_ext_id(vtable.id()) };
        header
    }

    fn vtable(&self) -> &'static ExtVtable {
        ExtVtable::by_id(self.node.entry.ext_id())
    }

    /// The tree node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Link this (pinned) extension node under `parent`, or make it born cancelled if the
    /// parent is; with `None` it becomes an extension root. Returns `true` if it linked under
    /// a parent. Calling it again does nothing and returns whether the node is linked.
    ///
    /// # Safety
    /// The header is the first field of a `#[repr(C)]` extension struct that the vtable
    /// understands; it is pinned at its final address and owned exclusively by the caller
    /// (no other thread can reach it yet); `parent` outlives it; before the extension struct
    /// is freed, its owner calls [`unlink`](Self::unlink).
    pub unsafe fn link(self: Pin<&Self>, parent: Option<&NodeView>) -> bool {
        let this = self.get_ref();
        if this.node.state_relaxed() & INIT != 0 {
            return !this.node.parent_ptr().is_null();
        }
        // The node is still exclusively ours (caller's contract), so plain stores set its
        // flags (an atomic read-modify-write here cost a deadline ~9 ns); linking publishes
        // them through the parent's unlock (Release), a root through whatever shares it.
        match parent {
            Some(parent) => {
                this.node.set_flags_exclusive(EXT);
                // SAFETY: exclusive, pinned, parent outlives us (caller).
                unsafe { parent.node().adopt(&raw const this.node, false) }
            }
            None => {
                this.node.set_flags_exclusive(EXT | INIT);
                false
            }
        }
    }

    /// Unlink this pinned extension node from its parent (its owner's `Drop` calls this).
    ///
    /// # Safety
    /// The caller owns the node and is about to free it; it was linked with
    /// [`link`](Self::link).
    pub unsafe fn unlink(&self) {
        // SAFETY: forwarded contract.
        unsafe { self.node.unlink_from_parents(false) };
        crate::unwind::resume();
    }

    /// Make a heap extension node into a [`CancelSource`](crate::CancelSource), linked under
    /// `parent`.
    ///
    /// # Safety
    /// `ptr` points to a fresh heap allocation (made by the extension) whose first field is
    /// this header, not shared with anyone; the vtable's `free` can free it.
    #[cfg(feature = "alloc")]
    pub unsafe fn into_source(
        ptr: core::ptr::NonNull<ExtHeader>,
        parent: Parent<'_>,
    ) -> crate::CancelSource {
        let child = ptr.as_ptr().cast::<Node>().cast_const();
        // SAFETY: fresh and exclusive (caller).
        unsafe { (*child).init_refs(crate::state::REF_ONE | EXT) };
        match parent {
            Parent::Root => {}
            // SAFETY: exclusive child; the handle keeps the parent alive and the child takes
            // a reference on it; the parent pointer keeps the allocation's provenance.
            Parent::Heap(h) => unsafe {
                Node::adopt_raw(h.ptr.as_ptr(), child, true);
            },
            // SAFETY: exclusive child; a 'static parent outlives it.
            Parent::Static(v) => unsafe {
                v.node().adopt(child, false);
            },
        }
        // SAFETY: one reference, transferred to the source.
        unsafe { crate::CancelSource::from_raw(ptr.cast()) }
    }
}

/// Where a new heap node hangs: nowhere, under a heap node (through one of its handles), or
/// under a `'static` node. Used by extension crates (`cutoff_timer::with_timeout(&parent, ..)`).
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug)]
pub enum Parent<'a> {
    /// No parent: a root.
    Root,
    /// A heap node, through a [`CancelSource`](crate::CancelSource) or
    /// [`CancelToken`](crate::CancelToken) that the caller holds.
    Heap(HeapRef<'a>),
    /// A `'static` node, such as a `static` root.
    Static(&'static NodeView),
}

/// A borrowed handle to a heap node (see [`Parent::Heap`]).
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug)]
pub struct HeapRef<'a> {
    ptr: core::ptr::NonNull<Node>,
    _handle: core::marker::PhantomData<&'a crate::CancelToken>,
}

#[cfg(feature = "alloc")]
impl<'a> Parent<'a> {
    /// The parent node, if any.
    pub fn view(&self) -> Option<&'a NodeView> {
        match *self {
            Parent::Root => None,
            // SAFETY: the borrowed handle keeps the node alive for 'a.
            Parent::Heap(h) => Some(unsafe { &*h.ptr.as_ptr().cast_const() }),
            Parent::Static(v) => Some(v),
        }
    }
}

#[cfg(feature = "alloc")]
impl<'a> From<&'a crate::CancelToken> for Parent<'a> {
    fn from(t: &'a crate::CancelToken) -> Self {
        Parent::Heap(HeapRef {
            ptr: t.raw(),
            _handle: core::marker::PhantomData,
        })
    }
}

#[cfg(feature = "alloc")]
impl<'a> From<&'a crate::CancelSource> for Parent<'a> {
    fn from(s: &'a crate::CancelSource) -> Self {
        Parent::Heap(HeapRef {
            ptr: s.raw(),
            _handle: core::marker::PhantomData,
        })
    }
}

#[cfg(feature = "alloc")]
impl From<&'static Node> for Parent<'static> {
    fn from(n: &'static Node) -> Self {
        Parent::Static(n)
    }
}

impl Node {
    /// If this node is an extension node, its header.
    pub(crate) fn ext_header(&self) -> Option<&ExtHeader> {
        if self.state_relaxed() & EXT != 0 {
            // SAFETY: the EXT bit is only set on the `node` field of an `ExtHeader` (see
            // `link` and `into_source`), which is `#[repr(C)]` with the node first.
            Some(unsafe { &*(self as *const Node).cast::<ExtHeader>() })
        } else {
            None
        }
    }

    /// Free a heap extension node through its vtable.
    ///
    /// # Safety
    /// As for [`ExtVtable::free`].
    #[cfg(feature = "alloc")]
    pub(crate) unsafe fn free_ext(ptr: *const Node) {
        let h = ptr.cast::<ExtHeader>().cast_mut();
        // SAFETY: the caller's contract; the vtable is immutable.
        unsafe { ((*h).vtable().free)(h) }
    }
}

impl NodeView {
    /// The earliest deadline of any extension node (for example a `cutoff-timer` deadline)
    /// on this node's path to the root, in that extension's time unit (nanoseconds for
    /// `cutoff-timer`), or `None`.
    ///
    /// It walks up to the nearest extension node (whose stored deadline already includes
    /// its own ancestors'); through a multi-parent node it takes the earliest over all of its
    /// parents. Cost: the number of plain nodes between this node and that extension node.
    pub fn deadline_raw(&self) -> Option<u64> {
        let d = path_deadline(self.node());
        (d != u64::MAX).then_some(d)
    }
}

fn path_deadline(mut node: &Node) -> u64 {
    loop {
        if let Some(h) = node.ext_header() {
            // SAFETY: a live header with its own vtable.
            return unsafe { (h.vtable().deadline)(h) };
        }
        let st = node.state_relaxed();
        if st & INIT == 0 {
            return u64::MAX;
        }
        let parent = node.parent_ptr();
        if parent.is_null() {
            return u64::MAX;
        }
        if st & MULTI != 0 {
            // SAFETY: a MULTI node's parent pointer is its first link; its parents outlive
            // it (node.rs invariant 1), and we are borrowing the node.
            return unsafe { crate::any_of::min_over_parents(parent.cast(), path_deadline) };
        }
        // SAFETY: node.rs invariant 1: a node we can reach outlives... its parent outlives it.
        node = unsafe { &*parent.cast::<Node>() };
    }
}
