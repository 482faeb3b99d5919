//! Heap handles (`alloc`): [`CancelSource`], [`CancelToken`], [`DropGuard`].
//!
//! A heap node is a `Box<Node>` whose reference count lives in the node's own state word (no
//! separate `Arc` header), so a live child costs one 64-byte allocation. A heap child holds one
//! reference on a heap parent, so parents outlive children (node.rs invariant 1); releasing the
//! last reference of a long chain climbs it in a loop, never by recursion.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;
use core::pin::Pin;
use core::ptr::NonNull;

use crate::any_of::{self, LinkEntry};
use crate::callback::Callback;
use crate::list::Kind;
use crate::node::Node;
use crate::reason::Reason;
use crate::state::REF_ONE;
use crate::view::NodeView;
use crate::wait::Waiter;

/// An owning handle to a heap node that can cancel it.
///
/// `CancelSource` derefs to [`Node`], so it has [`cancel`](Node::cancel),
/// [`is_cancelled`](NodeView::is_cancelled), [`cancelled`](NodeView::cancelled) and the rest.
/// Dropping it does **not** cancel the node (use [`drop_guard`](Self::drop_guard) for that);
/// the node is freed when the last `CancelSource`, [`CancelToken`] and child are gone, and
/// unlinks itself from its parent then, whether or not anyone cancelled it.
///
/// # Examples
///
/// ```
/// use cutoff::{CancelSource, Reason};
///
/// let server = CancelSource::new();
/// let request = server.child();
/// let token = request.token();
/// std::thread::spawn(move || {
///     let reason = token.wait();
///     assert_eq!(reason, Reason::Shutdown);
/// });
/// server.cancel_with(Reason::Shutdown);
/// assert!(request.is_cancelled());
/// ```
pub struct CancelSource {
    ptr: NonNull<Node>,
}

/// A cheap, clonable, observe-only handle to a heap node.
///
/// It derefs to [`NodeView`]: it can check, wait, register callbacks and create children, but
/// not cancel.
pub struct CancelToken {
    ptr: NonNull<Node>,
}

// SAFETY: the node is Sync and the reference count is atomic.
unsafe impl Send for CancelSource {}
// SAFETY: as above.
unsafe impl Sync for CancelSource {}
// SAFETY: as above.
unsafe impl Send for CancelToken {}
// SAFETY: as above.
unsafe impl Sync for CancelToken {}

impl core::panic::UnwindSafe for CancelSource {}
impl core::panic::RefUnwindSafe for CancelSource {}
impl core::panic::UnwindSafe for CancelToken {}
impl core::panic::RefUnwindSafe for CancelToken {}

fn new_heap() -> NonNull<Node> {
    let node = Box::new(Node::new());
    node.init_refs(REF_ONE);
    NonNull::from(Box::leak(node))
}

/// Drop one reference; free the node (and climb its chain) if it was the last.
///
/// # Safety
/// `ptr` is a live heap node and the caller owns one reference.
unsafe fn release(ptr: NonNull<Node>) {
    // SAFETY: the caller owns a reference.
    if unsafe { ptr.as_ref() }.ref_dec() {
        // SAFETY: that was the last reference.
        unsafe { free_chain(ptr) };
    }
}

/// Free a heap node with no references left, then release its parent(s), iteratively.
///
/// Single-parent chains are climbed in a loop without allocating; the extra parents of
/// multi-parent nodes go on a local work list, so no shape of graph makes this recurse.
///
/// # Safety
/// `ptr` is a heap node whose count reached zero.
unsafe fn free_chain(ptr: NonNull<Node>) {
    let mut pending: Vec<NonNull<Node>> = Vec::new();
    let mut next = Some(ptr);
    loop {
        let Some(ptr) = next.take() else {
            match pending.pop() {
                // SAFETY: we owned a reference on `p` (taken from a freed link).
                Some(p) if unsafe { p.as_ref() }.ref_dec() => next = Some(p),
                Some(_) => {}
                None => return,
            }
            continue;
        };
        // SAFETY: no references remain, so we own the node.
        let node = unsafe { ptr.as_ref() };
        // SAFETY: we own it; parents are alive (we still hold their references). The
        // reference on a single heap parent is dropped with the parent's unlock.
        let parent_last = unsafe { node.unlink_from_parents(true) };
        let mut parent = None;
        if node.is_multi() {
            let first = node.parent_ptr().cast::<LinkEntry>();
            // SAFETY: a heap multi node owns a boxed slice of its links.
            let links = unsafe { take_links(first) };
            for l in links.iter().filter(|l| l.is_counted()) {
                // SAFETY: links of a heap node point at live heap parents.
                pending.push(unsafe { NonNull::new_unchecked(l.parent().cast_mut()) });
            }
        } else if parent_last {
            parent = NonNull::new(node.parent_ptr().cast::<Node>().cast_mut());
        }
        // SAFETY: allocated by `new_heap` (or by an extension, freed through its vtable), no
        // references remain, unlinked.
        unsafe { free_node(ptr.as_ptr()) };
        // The child's reference on its parent was the last one: free the parent next.
        next = parent;
    }
}

/// Free the memory of a heap node with no references left, already unlinked.
///
/// # Safety
/// `ptr` came from `new_heap` or `ExtHeader::into_source`, and nothing refers to it any more.
unsafe fn free_node(ptr: *mut Node) {
    // SAFETY: forwarded.
    unsafe {
        if (*ptr).ext_header().is_some() {
            Node::free_ext(ptr);
        } else {
            drop(Box::from_raw(ptr));
        }
    }
}

/// Take back the boxed link slice of a heap multi-parent node.
///
/// # Safety
/// `first` is the first link of a heap multi-parent node, allocated in `any_of`, whose links
/// are all detached.
unsafe fn take_links(first: *const LinkEntry) -> Box<[LinkEntry]> {
    // SAFETY: the caller's contract; `count` walks to the link flagged last.
    unsafe {
        let n = any_of::count(first);
        Box::from_raw(core::ptr::slice_from_raw_parts_mut(first.cast_mut(), n))
    }
}

/// Free a heap node whose last reference the walker holds, after the walker released the
/// entry `from` through which it entered the node. Returns `true` if the node's reference on
/// the parent above `from` was transferred to the caller instead of being released.
///
/// # Safety
/// `ptr` is a heap node with exactly one reference (the caller's), an empty list, and `from`
/// released by the caller.
pub(crate) unsafe fn free_walked(ptr: *const Node, from: *const crate::list::Entry) -> bool {
    // SAFETY: the caller owns the last reference.
    let node = unsafe { &*ptr };
    // SAFETY: we own it; parents are alive; `from` is RELEASED so detaching does not wait.
    // The reference on the parent is kept: it is handed to the walker.
    unsafe { node.unlink_from_parents(false) };
    let mut took = false;
    if node.is_multi() {
        let first = node.parent_ptr().cast::<LinkEntry>();
        // SAFETY: a heap multi node owns a boxed slice of its links, all detached above.
        let links = unsafe { take_links(first) };
        for l in links.iter() {
            if l.is_counted() {
                if core::ptr::eq((l as *const LinkEntry).cast(), from) {
                    took = true;
                } else {
                    // SAFETY: the link owned this reference; that parent is not on the
                    // walker's path through `from`.
                    unsafe { release(NonNull::new_unchecked(l.parent().cast_mut())) };
                }
            }
        }
    } else {
        took = node.has_counted_parent();
    }
    // SAFETY: allocated by `new_heap` or an extension; no references remain; unlinked.
    unsafe { free_node(ptr.cast_mut()) };
    took
}

impl CancelSource {
    /// A new root.
    #[must_use]
    pub fn new() -> Self {
        Self { ptr: new_heap() }
    }

    /// Adopt a node with one reference.
    ///
    /// # Safety
    /// `ptr` is a live heap node (from `new_heap` or an extension) whose one reference the
    /// caller transfers to the source.
    pub(crate) unsafe fn from_raw(ptr: NonNull<Node>) -> Self {
        Self { ptr }
    }

    /// A new child of a `'static` node (for example a `static` root).
    #[must_use]
    pub fn child_of(parent: &'static NodeView) -> Self {
        let ptr = new_heap();
        // SAFETY: fresh, exclusive, at its final address; the parent is 'static.
        unsafe { parent.node().adopt(ptr.as_ptr(), false) };
        Self { ptr }
    }

    /// A node cancelled when any of `parents` is, with that parent's reason (the first wins).
    #[must_use]
    pub fn any_of<'t>(parents: impl IntoIterator<Item = &'t CancelToken>) -> Self {
        let parents: Vec<NonNull<Node>> = parents.into_iter().map(|t| t.ptr).collect();
        let src = Self::new();
        if parents.is_empty() {
            return src;
        }
        let links: Box<[LinkEntry]> = parents.iter().map(|_| LinkEntry::new()).collect();
        // From here on the node owns the slice through this raw pointer (freed in
        // `free_chain`); all accesses derive from it.
        let links: *mut [LinkEntry] = Box::into_raw(links);
        for p in &parents {
            // SAFETY: the caller's token keeps it alive.
            unsafe { p.as_ref() }.ref_inc();
        }
        // SAFETY: fresh node, links boxed (stable address) and owned by the node from now on;
        // each link holds a reference on its parent.
        unsafe {
            any_of::link_all(
                src.ptr.as_ref(),
                &mut *links,
                parents.iter().map(|p| (p.as_ptr().cast_const(), true)),
            );
        }
        src
    }

    /// A child of this node.
    #[must_use]
    pub fn child(&self) -> CancelSource {
        child_of_heap(self.ptr)
    }

    /// An observe-only handle to the same node.
    #[must_use]
    pub fn token(&self) -> CancelToken {
        self.ref_inc();
        CancelToken { ptr: self.ptr }
    }

    /// A guard that cancels the node when dropped, unless [disarmed](DropGuard::disarm).
    pub fn drop_guard(self) -> DropGuard {
        DropGuard { source: Some(self) }
    }

    /// Register `f` to run once when the node is cancelled (at once, on this thread, if it
    /// already is). The registration is owned and `'static`; dropping it unregisters.
    pub fn on_cancel<F>(&self, f: F) -> OnCancel<F>
    where
        F: FnOnce(&Reason) + Send + 'static,
    {
        self.token().on_cancel(f)
    }

    /// Whether two handles refer to the same node.
    pub fn same_node(&self, other: &CancelToken) -> bool {
        self.ptr == other.ptr
    }

    /// The node's allocation pointer (with the allocation's provenance).
    pub(crate) fn raw(&self) -> NonNull<Node> {
        self.ptr
    }

    /// Another owning handle to the same node (crate-internal: sources are not `Clone`, so
    /// that "who may cancel" stays visible in the types).
    pub(crate) fn clone_handle(&self) -> CancelSource {
        self.ref_inc();
        CancelSource { ptr: self.ptr }
    }
}

impl Default for CancelSource {
    fn default() -> Self {
        Self::new()
    }
}

fn child_of_heap(parent: NonNull<Node>) -> CancelSource {
    let ptr = new_heap();
    // SAFETY: the caller's handle keeps the parent alive; the child is fresh and exclusive;
    // if it links, it takes a reference on the parent (atomically with the parent's lock).
    unsafe { Node::adopt_raw(parent.as_ptr(), ptr.as_ptr(), true) };
    CancelSource { ptr }
}

impl Deref for CancelSource {
    type Target = Node;
    fn deref(&self) -> &Node {
        // SAFETY: we hold a reference.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for CancelSource {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { release(self.ptr) };
        crate::unwind::resume();
    }
}

impl fmt::Debug for CancelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelSource").field(&**self).finish()
    }
}

impl CancelToken {
    fn node(&self) -> &Node {
        // SAFETY: we hold a reference.
        unsafe { self.ptr.as_ref() }
    }

    /// A child of this node.
    #[must_use]
    pub fn child(&self) -> CancelSource {
        child_of_heap(self.ptr)
    }

    /// Adopt one reference.
    ///
    /// # Safety
    /// `ptr` is a live heap node whose reference the caller transfers to the token.
    pub(crate) unsafe fn from_raw(ptr: NonNull<Node>) -> Self {
        Self { ptr }
    }

    /// A `'static` future that completes with the reason once the node is cancelled.
    pub fn cancelled_owned(&self) -> OwnedCancellation {
        OwnedCancellation {
            token: self.clone(),
            waiter: Waiter::new(Kind::Waiter),
        }
    }

    /// Register `f` to run once when the node is cancelled (at once, on this thread, if it
    /// already is). The registration is owned and `'static`; dropping it unregisters, waiting
    /// for a run in progress on another thread.
    pub fn on_cancel<F>(&self, f: F) -> OnCancel<F>
    where
        F: FnOnce(&Reason) + Send + 'static,
    {
        let token = self.clone();
        // SAFETY: the registration borrows the node for 'static, which is sound because the
        // `OnCancel` holds `token` and drops the registration first (field order).
        let view: &'static NodeView =
            unsafe { &*(NodeView::from_node(token.node()) as *const NodeView) };
        let mut reg = Box::pin(Callback::new(view, f));
        reg.as_mut().register();
        OnCancel { reg, _token: token }
    }

    /// Whether two tokens refer to the same node.
    pub fn same_node(&self, other: &CancelToken) -> bool {
        self.ptr == other.ptr
    }

    /// The node's allocation pointer (with the allocation's provenance).
    pub(crate) fn raw(&self) -> NonNull<Node> {
        self.ptr
    }
}

impl Clone for CancelToken {
    fn clone(&self) -> Self {
        self.node().ref_inc();
        Self { ptr: self.ptr }
    }
}

impl Deref for CancelToken {
    type Target = NodeView;
    fn deref(&self) -> &NodeView {
        self.node()
    }
}

impl Drop for CancelToken {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { release(self.ptr) };
        crate::unwind::resume();
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelToken").field(self.node()).finish()
    }
}

impl PartialEq for CancelToken {
    /// Tokens are equal when they refer to the same node.
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }
}

impl Eq for CancelToken {}

impl core::hash::Hash for CancelToken {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.ptr.hash(state);
    }
}

impl From<&CancelSource> for CancelToken {
    fn from(s: &CancelSource) -> Self {
        s.token()
    }
}

/// Cancels its node when dropped, unless disarmed. Made by [`CancelSource::drop_guard`].
#[derive(Debug)]
#[must_use = "dropping the guard cancels the node at once"]
pub struct DropGuard {
    source: Option<CancelSource>,
}

impl DropGuard {
    /// Give the source back without cancelling.
    pub fn disarm(mut self) -> CancelSource {
        self.source
            .take()
            .expect("a DropGuard holds its source until dropped")
    }

    /// The guarded source.
    pub fn source(&self) -> &CancelSource {
        self.source
            .as_ref()
            .expect("a DropGuard holds its source until dropped")
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(s) = self.source.take() {
            s.cancel();
        }
    }
}

pin_project_lite::pin_project! {
    /// The `'static` version of [`Cancellation`](crate::Cancellation), from
    /// [`CancelToken::cancelled_owned`].
    #[must_use = "futures do nothing unless polled"]
    pub struct OwnedCancellation {
        token: CancelToken,
        #[pin]
        waiter: Waiter,
    }

    impl PinnedDrop for OwnedCancellation {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.waiter.detach(this.token.node());
        }
    }
}

impl core::future::Future for OwnedCancellation {
    type Output = Reason;
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> core::task::Poll<Reason> {
        let this = self.project();
        this.waiter.poll_cancelled(this.token.node(), cx)
    }
}

impl fmt::Debug for OwnedCancellation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedCancellation")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// An owned callback registration, from [`CancelToken::on_cancel`]. Dropping it unregisters.
pub struct OnCancel<F: FnOnce(&Reason) + Send + 'static> {
    // Field order matters: the registration drops before the token that keeps the node alive.
    reg: Pin<Box<Callback<'static, F>>>,
    _token: CancelToken,
}

impl<F: FnOnce(&Reason) + Send + 'static> OnCancel<F> {
    /// Unregister and give back the closure if it has not run.
    pub fn disarm(mut self) -> Option<F> {
        self.reg.as_mut().disarm()
    }

    /// Whether the callback is still registered and has not run.
    pub fn is_registered(&self) -> bool {
        self.reg.is_registered()
    }
}

impl<F: FnOnce(&Reason) + Send + 'static> fmt::Debug for OnCancel<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnCancel").field("reg", &self.reg).finish()
    }
}
