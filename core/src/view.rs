//! [`NodeView`]: the observe-only face of a node.
#![allow(unsafe_code)]

use core::ops::Deref;

use crate::callback::Callback;
use crate::node::Node;
use crate::reason::Reason;
use crate::wait::{Cancellation, Join, RunUntilCancelled};

/// A node seen by someone who may watch it and hang things off it, but not cancel it.
///
/// Every node derefs to a `NodeView` ([`Node`], [`CancelSource`](crate::CancelSource),
/// [`ChildNode`](crate::ChildNode) once linked), and so does the observe-only
/// [`CancelToken`](crate::CancelToken). Children, callbacks and waiters take a
/// `&NodeView`, so they can be attached to any of them.
#[repr(transparent)]
pub struct NodeView {
    node: Node,
}

impl NodeView {
    pub(crate) fn from_node(node: &Node) -> &NodeView {
        // SAFETY: `NodeView` is `repr(transparent)` over `Node`.
        unsafe { &*(node as *const Node as *const NodeView) }
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Whether the node is cancelled: one `Acquire` load of the node's own state word.
    ///
    /// # Memory ordering
    ///
    /// If this returns `true`, the reason and everything the canceller did before cancelling
    /// are visible to the caller, and so is the cancellation of every ancestor the
    /// cancellation came through.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.node.is_cancelled()
    }

    /// The reason, once cancelled.
    pub fn reason(&self) -> Option<Reason> {
        self.node.reason()
    }

    /// A future that completes with the reason once the node is cancelled. It allocates
    /// nothing; see [`Cancellation`].
    pub fn cancelled(&self) -> Cancellation<'_> {
        Cancellation::new(&self.node)
    }

    /// Run `future` until it completes (`Ok`) or the node is cancelled (`Err`). The future is
    /// polled first, so if it is ready it wins.
    pub fn run_until_cancelled<F: core::future::Future>(
        &self,
        future: F,
    ) -> RunUntilCancelled<'_, F> {
        RunUntilCancelled::new(&self.node, future)
    }

    /// A future that completes once no child of this node is alive (every pinned child,
    /// heap child and multi-parent link under it has been dropped). Use it after cancelling a
    /// subtree to wait for the work under it to let go.
    pub fn join(&self) -> Join<'_> {
        Join::new(&self.node)
    }

    /// Run `body` with `f` registered as a callback on this node, then unregister it.
    ///
    /// Unlike [`Callback::new`], `f` may borrow from the caller's stack: the registration
    /// lives in this call's frame, which cannot be leaked, and its drop waits for a run in
    /// progress on another thread. If the node is already cancelled, `f` runs at once, before
    /// `body`. No allocation.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::sync::atomic::{AtomicBool, Ordering};
    /// use cutoff::{Node, Reason};
    ///
    /// let node = Node::new();
    /// let stop = AtomicBool::new(false);
    /// node.with_callback(|_: &Reason| stop.store(true, Ordering::Relaxed), || {
    ///     node.cancel();
    /// });
    /// assert!(stop.load(Ordering::Relaxed));
    /// ```
    pub fn with_callback<F, R>(&self, f: F, body: impl FnOnce() -> R) -> R
    where
        F: FnOnce(&Reason) + Send,
    {
        // SAFETY: the registration is pinned in this frame, which is left only by returning
        // or unwinding, both of which drop it before anything `f` borrows (which outlives this
        // call) goes away.
        let mut cb = core::pin::pin!(unsafe { Callback::new_unchecked(self, f) });
        cb.as_mut().register();
        body()
    }

    /// A new [`CancelToken`](crate::CancelToken) for this node, if it is a heap node (one made
    /// by [`CancelSource`](crate::CancelSource)) that still has a handle. `None` for pinned and
    /// `static` nodes. Useful to keep a node alive from a place that only has a reference,
    /// such as a callback.
    #[cfg(feature = "alloc")]
    pub fn to_token(&self) -> Option<crate::CancelToken> {
        if self.node.try_ref() {
            // SAFETY: we just took the reference the token owns.
            Some(unsafe { crate::CancelToken::from_raw(core::ptr::NonNull::from(&self.node)) })
        } else {
            None
        }
    }

    /// Whether any child is alive under this node.
    pub fn has_children(&self) -> bool {
        self.node.child_count_nonzero()
    }

    /// Block this thread until the node is cancelled; returns the reason.
    #[cfg(all(feature = "std", not(loom)))]
    pub fn wait(&self) -> Reason {
        crate::wait::block(self, None).unwrap_or(Reason::Requested)
    }

    /// Block until the node is cancelled (`Some(reason)`) or `timeout` passes (`None`).
    /// A timeout too large to represent waits forever.
    #[cfg(all(feature = "std", not(loom)))]
    pub fn wait_timeout(&self, timeout: core::time::Duration) -> Option<Reason> {
        let deadline = std::time::Instant::now().checked_add(timeout);
        crate::wait::block(self, deadline)
    }

    /// Block until no child of this node is alive.
    #[cfg(all(feature = "std", not(loom)))]
    pub fn wait_join(&self) {
        crate::wait::block_on(self.join(), None);
    }

    /// Block until no child is alive (`true`) or `timeout` passes (`false`).
    #[cfg(all(feature = "std", not(loom)))]
    pub fn wait_join_timeout(&self, timeout: core::time::Duration) -> bool {
        let deadline = std::time::Instant::now().checked_add(timeout);
        crate::wait::block_on(self.join(), deadline).is_some()
    }
}

impl core::fmt::Debug for NodeView {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&self.node, f)
    }
}

impl Deref for Node {
    type Target = NodeView;
    fn deref(&self) -> &NodeView {
        NodeView::from_node(self)
    }
}
