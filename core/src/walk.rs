//! The cancel walker: iterative, one lock at a time, no lock held while user code runs.
//!
//! See the design notes in `node.rs`. The walker's whole state is the root, the current node
//! and whether that node is locked; the way back up is stored in the tree itself (the current
//! node's parent pointer, or for a multi-parent node the link it was entered through), and every
//! node on the path is pinned by its `TAKEN` entry (node.rs invariant 4).
#![allow(unsafe_code)]

use core::ptr;

use crate::any_of::LinkEntry;
use crate::list::{Entry, Kind};
use crate::node::Node;
use crate::state::CANCELLED;

pub(crate) struct Walk<'a> {
    root: &'a Node,
    cur: *const Node,
    /// `cur` is locked by us.
    held: bool,
    done: bool,
    /// We hold the last reference to `cur`, a heap node whose handles were all dropped by a
    /// callback while we walked it. Its list is then empty, so the next step climbs out of it
    /// and frees it.
    #[cfg(feature = "alloc")]
    owns_cur: bool,
    #[cfg(feature = "std")]
    panic: Option<alloc::boxed::Box<dyn core::any::Any + Send + 'static>>,
}

/// Completes the walk if a callback or waker unwinds through it (no `std` to catch it).
struct Finish<'w, 'a>(&'w mut Walk<'a>);

impl Drop for Finish<'_, '_> {
    fn drop(&mut self) {
        if !self.0.done {
            // We are unwinding out of user code: the entry was released by its own guard and
            // no lock is held (`held` is false around user code). Finish the walk so the tree
            // is left consistent; a second panic here aborts.
            self.0.held = false;
            self.0.steps();
        }
    }
}

impl<'a> Walk<'a> {
    /// Start a walk at `root`, which the caller has locked and just cancelled.
    pub(crate) fn new(root: &'a Node) -> Self {
        Self {
            root,
            cur: root,
            held: true,
            done: false,
            #[cfg(feature = "alloc")]
            owns_cur: false,
            #[cfg(feature = "std")]
            panic: None,
        }
    }

    pub(crate) fn run(mut self) {
        {
            let finish = Finish(&mut self);
            finish.0.steps();
        }
        #[cfg(feature = "std")]
        if let Some(payload) = self.panic.take() {
            std::panic::resume_unwind(payload);
        }
    }

    fn call_user(&mut self, f: impl FnOnce()) {
        #[cfg(feature = "std")]
        {
            if let Err(payload) = std::panic::catch_unwind(core::panic::AssertUnwindSafe(f))
                && self.panic.is_none()
            {
                self.panic = Some(payload);
            }
        }
        #[cfg(not(feature = "std"))]
        f();
    }

    fn steps(&mut self) {
        loop {
            // SAFETY: `cur` is the root (borrowed by the caller) or a node we hold TAKEN
            // (invariant 4), so it is alive.
            let cur = unsafe { &*self.cur };
            if !self.held {
                cur.lock();
            }
            self.held = false;
            // SAFETY: we hold `cur`'s lock.
            let popped = unsafe { cur.list().pop_front() };
            let Some(e) = popped else {
                if ptr::eq(cur, self.root) {
                    // The root is borrowed by our caller, who holds a reference if it is on the
                    // heap, so ours is never the last one.
                    #[cfg(feature = "alloc")]
                    if self.owns_cur {
                        self.owns_cur = false;
                        cur.ref_dec_unless_last();
                    }
                    cur.unlock();
                    self.done = true;
                    return;
                }
                let (from, up) = incoming(cur);
                cur.unlock();
                #[cfg(feature = "alloc")]
                if self.owns_cur {
                    // Nobody else can reach `cur`: release our entry, free it, and take over
                    // its reference on `up` (freeing `up` here would wait on our own TAKEN
                    // entry).
                    Node::release_entry(from);
                    // SAFETY: we own the last reference; the entry we came through is released.
                    let took = unsafe { crate::token::free_walked(self.cur, from) };
                    self.cur = up;
                    // SAFETY: `up` is alive: we hold its TAKEN entry or it is the root.
                    self.owns_cur = took && unsafe { (*up).ref_dec_unless_last() };
                    continue;
                }
                // After this store `cur` may be freed; we never touch it again.
                Node::release_entry(from);
                self.cur = up;
                continue;
            };
            // SAFETY: `e` is TAKEN by us, so it stays valid until we release it.
            let kind = unsafe { (*e).kind() };
            match kind {
                Kind::Child | Kind::Link => {
                    let target = target_of(e, kind);
                    // SAFETY: `cur` is cancelled (we are walking it) and we hold its lock.
                    let reason = unsafe { cur.reason_unchecked() };
                    cur.unlock();
                    // SAFETY: the target is kept alive by its TAKEN entry.
                    let target = unsafe { &*target };
                    let st = target.lock();
                    if st & CANCELLED != 0 {
                        // Someone else cancelled it and walks it (invariant 5).
                        target.unlock();
                        Node::release_entry(e);
                        continue;
                    }
                    // SAFETY: target locked and not cancelled.
                    unsafe { target.publish_cancel(reason) };
                    if kind == Kind::Link {
                        target.entry.set_scratch(e);
                    }
                    self.cur = target;
                    self.held = true;
                }
                Kind::Callback => {
                    // SAFETY: lock held and `e` is a TAKEN callback entry.
                    unsafe { crate::callback::prepare(e) };
                    // SAFETY: `cur` is cancelled and locked.
                    let reason = unsafe { cur.reason_unchecked() };
                    // A callback may drop the last handle of a heap `cur` (for example by
                    // dropping its own `OnCancel`). Hold a reference across the call so the
                    // node is not freed under us; if ours turns out to be the last, we free it
                    // when we climb out.
                    #[cfg(feature = "alloc")]
                    let guard = cur.ref_inc_if_heap();
                    cur.unlock();
                    // SAFETY: `e` is a TAKEN callback entry; `run` releases it.
                    self.call_user(|| unsafe { crate::callback::run(e, &reason) });
                    #[cfg(feature = "alloc")]
                    if guard && cur.ref_dec_unless_last() {
                        self.owns_cur = true;
                    }
                }
                Kind::Waiter | Kind::Join => {
                    cur.unlock();
                    // SAFETY: `e` is a TAKEN waiter entry.
                    let waker = unsafe { crate::wait::take_waker(e) };
                    Node::release_entry(e);
                    if let Some(w) = waker {
                        self.call_user(|| w.wake());
                    }
                }
            }
        }
    }
}

/// The entry through which the walker entered `node`, and the node above it.
fn incoming(node: &Node) -> (*const Entry, *const Node) {
    if node.is_multi() {
        let link = node.entry.scratch();
        // SAFETY: set when we entered through this link, which we still hold TAKEN.
        let up = unsafe { (*link.cast::<LinkEntry>()).parent() };
        (link, up)
    } else {
        (&node.entry, node.parent_ptr().cast())
    }
}

fn target_of(e: *const Entry, kind: Kind) -> *const Node {
    match kind {
        Kind::Child => {
            // SAFETY: a Child entry is the `entry` field of a Node.
            unsafe {
                e.byte_sub(core::mem::offset_of!(Node, entry))
                    .cast::<Node>()
            }
        }
        // SAFETY: a Link entry is the first field of a `#[repr(C)]` LinkEntry.
        _ => unsafe { (*e.cast::<LinkEntry>()).target() },
    }
}
