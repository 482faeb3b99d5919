//! The cancel walker: iterative, one lock at a time, no lock held while user code runs.
//!
//! See the design notes in `node.rs`. The walker's whole state is the root, the current node
//! and whether that node is locked; the way back up is stored in the tree itself (the current
//! node's parent pointer, or for a multi-parent node the link it was entered through), and every
//! node on the path is pinned by its `TAKEN` entry (node.rs invariant 4).
//!
//! With the `critical-section` feature a held node lock means interrupts are masked (node.rs),
//! so the walker does not carry its lock from one step to the next (see `steps`): the time with
//! interrupts masked is bounded by one step, not by the number of leaves under a node or the
//! depth of a chain.
//!
//! Two state bits belong to the walker of a node:
//!
//! * `WALKING` is set together with `CANCELLED` and cleared (with `Release`, in the unlock)
//!   when the walker leaves the node for good, after everything below it is cancelled. A
//!   `cancel()` that loses the race, or a walker that meets a child someone else is walking,
//!   waits for it to clear, so that "once `cancel()` returns, every descendant reports
//!   cancelled" holds. It does not wait when its own thread is already inside a walk (a callback
//!   cancelling something): that walk could be the one it would wait for. Waits only ever point
//!   down the tree (a DAG, since parents are older than children), so walkers cannot wait on each
//!   other in a cycle. Without `std` there is no thread identity, so nobody waits.
//! * `WALKER_REF` records that the walker holds one reference on a heap node (taken before the
//!   first callback or wake-up runs on it), so user code that drops the node's last handle does
//!   not free it under the walker. If that reference turns out to be the last one when the walker
//!   climbs out, the walker frees the node itself and takes over its reference on the parent.
#![allow(unsafe_code)]

use core::ptr;
use core::task::Waker;

use crate::list::{Entry, Kind};
use crate::node::Node;
use crate::state::{CANCELLED, DRAINED, WALKER_REF, WALKING};

pub(crate) struct Walk<'a> {
    root: &'a Node,
    cur: *const Node,
    /// `cur` is locked by us.
    held: bool,
    done: bool,
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
        nesting::leave();
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
            #[cfg(feature = "std")]
            panic: None,
        }
    }

    pub(crate) fn run(mut self) {
        nesting::enter();
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
        crate::node::debug_assert_no_lock_held();
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

    /// Leave `cur`, whose list is empty (or which we left `DRAINED`): clear the walker bits
    /// (and unlock it if `locked`), drop the walker's reference, release the entry we came
    /// through and move up. Returns `true` when the walk is over.
    ///
    /// `cur_ptr` is a raw pointer, not a reference: we may free the node here, and a reference
    /// argument would have to stay valid for the whole call.
    fn leave(&mut self, cur_ptr: *const Node, locked: bool) -> bool {
        // SAFETY: alive until we release its entry / free it below; not used after that.
        let cur = unsafe { &*cur_ptr };
        const MINE: usize = WALKING | WALKER_REF | DRAINED;
        #[cfg_attr(not(feature = "alloc"), allow(unused_variables))]
        let st = cur.state_relaxed();
        if ptr::eq(cur, self.root) {
            if locked {
                cur.unlock_clearing(MINE);
            } else {
                cur.clear_flags_release(MINE);
            }
            // The root is borrowed by our caller, who holds a reference if it is on the heap,
            // so ours is never the last one.
            #[cfg(feature = "alloc")]
            if st & WALKER_REF != 0 {
                cur.ref_dec_unless_last();
            }
            self.done = true;
            return true;
        }
        let (from, up) = incoming(cur);
        if locked {
            cur.unlock_clearing(MINE);
        } else {
            cur.clear_flags_release(MINE);
        }
        #[cfg(feature = "alloc")]
        if st & WALKER_REF != 0 && cur.ref_dec_unless_last() {
            // Nobody else can reach `cur`: release our entry, free it, and take over its
            // reference on `up` (a drop of `up` here would wait on our own TAKEN entry).
            Node::release_entry(from);
            let dead = self.cur;
            // Freeing an extension node runs its crate's code.
            crate::node::debug_assert_no_lock_held();
            // Move on first, so that if anything below unwinds, `Finish` resumes from `up`
            // and never touches the freed node.
            self.cur = up;
            // SAFETY: we own the last reference; its list is empty (every entry implies a
            // reference); the entry we came through is released.
            let took = unsafe { crate::token::free_walked(dead, from) };
            if took {
                // SAFETY: `up` is alive: we hold its TAKEN entry, or it is the root.
                unsafe { (*up).adopt_walker_ref() };
            }
            return false;
        }
        // After this store `cur` may be freed; we never touch it again.
        Node::release_entry(from);
        self.cur = up;
        false
    }

    fn steps(&mut self) {
        loop {
            // SAFETY: `cur` is the root (borrowed by the caller) or a node we hold TAKEN
            // (invariant 4), so it is alive.
            let cur = unsafe { &*self.cur };
            // With `critical-section` every node lock masks interrupts (node.rs), so never carry
            // one into the next step: each stretch with interrupts masked is then one step (a
            // few list edits, or one batch of wakers taken), whatever the shape of the tree.
            // The relock below is like the one after a callback.
            #[cfg(all(feature = "critical-section", not(loom)))]
            if self.held {
                cur.unlock();
                self.held = false;
            }
            if !self.held {
                // We left this node with an empty list when we descended from it, and it is
                // cancelled, so nothing the walker acts on can have been linked since (only
                // join waiters may link into a cancelled node): leave it without locking.
                if cur.state_relaxed() & DRAINED != 0 {
                    if self.leave(self.cur, false) {
                        return;
                    }
                    continue;
                }
                cur.lock();
            }
            self.held = false;
            // SAFETY: we hold `cur`'s lock.
            let popped = unsafe { cur.list().pop_front() };
            let Some(e) = popped else {
                if self.leave(self.cur, true) {
                    return;
                }
                continue;
            };
            // SAFETY: `e` is TAKEN by us, so it stays valid until we release it.
            let kind = unsafe { (*e).kind() };
            match kind {
                Kind::Child | Kind::Link => {
                    // A raw pointer with the provenance the entry was pushed with: if the
                    // walker ends up freeing this node, it must do so through it.
                    let target_ptr = target_of(e, kind);
                    // SAFETY: `cur` is cancelled (we are walking it) and we hold its lock.
                    let reason = unsafe { cur.reason_unchecked() };
                    // SAFETY: the target is kept alive by its TAKEN entry.
                    let target = unsafe { &*target_ptr };
                    // Hand over hand: lock the child while still holding the parent. This is
                    // the only place two node locks are held; the order is always parent ->
                    // child (node.rs, lock ordering).
                    let st = target.lock();
                    if st & CANCELLED != 0 {
                        // Someone else cancelled it and walks it (invariant 5). Wait for them
                        // to finish while our TAKEN entry keeps the target alive.
                        target.unlock();
                        cur.unlock();
                        wait_walk(target, 1);
                        Node::release_entry(e);
                        continue;
                    }
                    // SAFETY: we hold the target's lock.
                    if unsafe { target.list().is_empty() } {
                        // A leaf: cancel it and unlock it in one step; it has nothing to walk,
                        // so we stay on `cur` (still locked) and never climb back.
                        // SAFETY: target locked and not cancelled.
                        unsafe { target.publish_cancel_leaf(reason) };
                        Node::release_entry(e);
                        self.held = true;
                        continue;
                    }
                    // SAFETY: target locked and not cancelled.
                    unsafe { target.publish_cancel(reason) };
                    // SAFETY: `e` is TAKEN by us, so its `prev` word is ours.
                    unsafe { (*e).set_popped_from(self.cur) };
                    if kind == Kind::Link {
                        target.entry.set_scratch(e);
                    }
                    // SAFETY: we still hold `cur`'s lock.
                    if unsafe { cur.list().is_empty() } {
                        cur.unlock_setting(DRAINED);
                    } else {
                        cur.unlock();
                    }
                    self.cur = target_ptr;
                    self.held = true;
                }
                Kind::Callback => {
                    // SAFETY: lock held and `e` is a TAKEN callback entry.
                    unsafe { crate::callback::prepare(e) };
                    // SAFETY: `cur` is cancelled and locked.
                    let reason = unsafe { cur.reason_unchecked() };
                    #[cfg(feature = "alloc")]
                    cur.hold_for_walker();
                    cur.unlock();
                    // SAFETY: `e` is a TAKEN callback entry; `run` releases it.
                    self.call_user(|| unsafe { crate::callback::run(e, &reason) });
                }
                Kind::Waiter | Kind::Join => {
                    // Take up to `BATCH` wakers under one lock hold, then wake them outside
                    // it. Moving a waker out of its slot runs no user code.
                    let mut wakers: [Option<Waker>; BATCH] = [const { None }; BATCH];
                    let mut n = 0;
                    let mut e = e;
                    // Take the walker's reference before releasing the first entry: until
                    // then its owner holds a reference, so the count is not zero (ADV-1).
                    #[cfg(feature = "alloc")]
                    cur.hold_for_walker();
                    loop {
                        // SAFETY: `e` is a TAKEN waiter entry.
                        wakers[n] = unsafe { crate::wait::take_waker(e) };
                        n += 1;
                        Node::release_entry(e);
                        // SAFETY: we hold `cur`'s lock.
                        match unsafe { cur.list().front_kind() } {
                            Some(Kind::Waiter | Kind::Join) if n < BATCH => {
                                // SAFETY: lock held; the front entry exists.
                                e = unsafe { cur.list().pop_front() }.expect("front entry");
                            }
                            _ => break,
                        }
                    }
                    cur.unlock();
                    for w in wakers.iter_mut().take(n) {
                        if let Some(w) = w.take() {
                            self.call_user(|| w.wake());
                        }
                    }
                }
            }
        }
    }
}

/// How many wakers the walker takes per lock hold.
const BATCH: usize = 32;

/// Wait until nobody walks `node` any more, unless this thread is inside a walk other than
/// the caller's own (`own` is 1 when called by a walker, 0 otherwise).
pub(crate) fn wait_walk(node: &Node, own: u32) {
    if !nesting::may_wait(own) {
        return;
    }
    let mut spins = 0;
    while node.spin_state_acquire() & WALKING != 0 {
        crate::loom::relax(&mut spins);
    }
}

/// Per-thread count of walks in progress, so a walk started from inside a callback never waits
/// for another walk (which could be the one running that callback).
mod nesting {
    #[cfg(all(not(loom), feature = "std"))]
    std::thread_local! {
        static DEPTH: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    }

    #[cfg(loom)]
    loom::thread_local! {
        static DEPTH: core::cell::Cell<u32> = core::cell::Cell::new(0);
    }

    #[cfg(any(loom, feature = "std"))]
    pub(super) fn enter() {
        DEPTH.with(|d| d.set(d.get() + 1));
    }

    #[cfg(any(loom, feature = "std"))]
    pub(super) fn leave() {
        DEPTH.with(|d| d.set(d.get() - 1));
    }

    #[cfg(any(loom, feature = "std"))]
    pub(super) fn may_wait(own: u32) -> bool {
        DEPTH.with(|d| d.get() <= own)
    }

    #[cfg(not(any(loom, feature = "std")))]
    pub(super) fn enter() {}

    #[cfg(not(any(loom, feature = "std")))]
    pub(super) fn leave() {}

    /// Without thread identity we cannot tell a nested walk from an independent one.
    #[cfg(not(any(loom, feature = "std")))]
    pub(super) fn may_wait(_own: u32) -> bool {
        false
    }
}

/// The entry through which the walker entered `node`, and the node it popped that entry from.
fn incoming(node: &Node) -> (*const Entry, *const Node) {
    let from = if node.is_multi() {
        node.entry.scratch()
    } else {
        node.entry_ptr()
    };
    // SAFETY: we hold `from` TAKEN and recorded the node we popped it from when we descended.
    let up = unsafe { (*from).popped_from() };
    (from, up)
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
        _ => unsafe { (*e.cast::<crate::any_of::LinkEntry>()).target() },
    }
}
