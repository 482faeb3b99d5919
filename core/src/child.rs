//! Pinned children: tree nodes that live inside a pinned value and allocate nothing.
#![allow(unsafe_code)]

use core::fmt;
use core::pin::Pin;

use crate::node::Node;
use crate::state::INIT;
use crate::view::NodeView;

/// A child node that lives inside a pinned value (a stack frame, a field of a pinned future,
/// a `static`) and links into its parent intrusively: zero heap allocations.
///
/// Create it with [`ChildNode::new`], pin it, and call [`link`](ChildNode::link) to get the
/// [`Node`]. If the parent is already cancelled, the child is born cancelled with the
/// parent's reason and never links. Dropping the child unlinks it in O(1).
///
/// # Examples
///
/// ```
/// use core::pin::pin;
/// use cutoff::{ChildNode, Node};
///
/// let root = Node::new();
/// let mut a = pin!(ChildNode::new(&root));
/// let a = a.as_mut().link();
/// let mut b = pin!(ChildNode::new(a));
/// let b = b.as_mut().link();
/// a.cancel();
/// assert!(b.is_cancelled());
/// assert!(!root.is_cancelled());
/// ```
///
/// `ChildNode` is `!Unpin`:
///
/// ```compile_fail
/// fn assert_unpin<T: Unpin>() {}
/// assert_unpin::<cutoff::ChildNode<'static>>();
/// ```
pub struct ChildNode<'p> {
    node: Node,
    parent: &'p Node,
}

impl<'p> ChildNode<'p> {
    /// An unlinked child of `parent`.
    pub fn new(parent: &'p NodeView) -> Self {
        Self {
            node: Node::new(),
            parent: parent.node(),
        }
    }

    /// Link the child into its parent (the first time) and return it.
    pub fn link(self: Pin<&mut Self>) -> &Node {
        // `Pin<&mut>` proves we are the only user; a shared borrow is all we need.
        let this = self.into_ref().get_ref();
        if this.node.state_relaxed() & INIT == 0 {
            // SAFETY: `&mut` gives exclusive access; the node is pinned at its final address;
            // `'p` keeps the parent alive longer than us (node.rs invariant 1).
            unsafe { this.parent.adopt(&raw const this.node, false) };
        }
        &this.node
    }

    /// The node, if it has been linked; `None` before [`link`](Self::link).
    pub fn get(self: Pin<&Self>) -> Option<&Node> {
        let this = self.get_ref();
        (this.node.state_relaxed() & INIT != 0).then_some(&this.node)
    }
}

impl Drop for ChildNode<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the node and are dropping it; the parent is alive (`'p`).
        unsafe { self.node.unlink_from_parents(false) };
        crate::unwind::resume();
    }
}

impl fmt::Debug for ChildNode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildNode")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}
