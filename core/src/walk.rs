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
//!   when the walker leaves the node for good, **after everything below it is cancelled**
//!   (invariant W1 below). A `cancel()` that loses the race, or a walker that meets a child
//!   someone else is walking, waits for it to clear, so that "once `cancel()` returns, every
//!   descendant reports cancelled" holds. Waits only ever point down the tree (a DAG, since
//!   parents are older than children), so walkers cannot wait on each other in a cycle.
//!
//! # Deferred entries and abandoned nodes
//!
//! A walk started from inside a callback or waker (a *nested* walk: this thread is already
//! inside another walk) must not wait for a concurrent walk, since that walk could be the one
//! running its callback, or could be waiting for the outer walk. Without `std` there is no
//! thread identity, so no walk waits. Such a walker, meeting a child that another thread is
//! walking, does not release the child's entry: it pushes it back at the tail of the list as
//! `DEFERRED` (list.rs) and goes on with the other entries. A node whose live entries are done
//! but which still has deferred ones is *abandoned*: its walker sets `ABANDONED`, keeps
//! `WALKING` set, and climbs up, deferring the node's own entry in its parent the same way (so
//! every ancestor on the walker's path stays `WALKING` too). The next walker that reaches an
//! abandoned node, or a `cancel()` of it that may wait, *adopts* it (clears `ABANDONED` under
//! the lock, becomes its walker) and finishes the walk, waiting where it may.
//!
//! Invariants:
//!
//! * **W1.** `WALKING` is clear on a cancelled node only when every descendant is cancelled.
//!   (A walker clears it only when the node's list is empty; an entry leaves the list either
//!   released after its target was cancelled and its own `WALKING` was seen clear, or removed by
//!   its owner, which takes the target out of the subtree.) ADV-5 was a nested walk that
//!   released a child it had not waited for and cleared `WALKING` above it.
//! * **W2.** A node has at most one walker: the thread that set `CANCELLED`, or the adopter
//!   that cleared `ABANDONED` (under the lock). A walker abandons a node only when it is done
//!   with it, and reads what it needs to climb (`incoming`) before publishing `ABANDONED`.
//! * **W3.** Every thread that waits for a walk (`WALKING` clear or `ABANDONED` set) is woken:
//!   it announces itself with `WALK_PARKED` before parking, and whoever clears `WALKING` or sets
//!   `ABANDONED` clears `WALK_PARKED` in the same operation and wakes the parked threads.
//! * `WALKER_REF` records that the walker holds one reference on a heap node (taken before the
//!   first callback or wake-up runs on it), so user code that drops the node's last handle does
//!   not free it under the walker. If that reference turns out to be the last one when the walker
//!   climbs out, the walker frees the node itself and takes over its reference on the parent.
#![allow(unsafe_code)]

use core::ptr;
use core::task::Waker;

use crate::list::{Entry, Kind};
use crate::lock::Guard;
use crate::node::Node;
use crate::park::{self, Backoff};
use crate::state::{ABANDONED, CANCELLED, DRAINED, WALK_PARKED, WALKER_REF, WALKING};

pub(crate) struct Walk<'a> {
    root: &'a Node,
    cur: *const Node,
    /// `cur` is locked by us (its guard was kept: `Guard::keep`).
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
    /// Start a walk at the node `g` locks, which the caller has just cancelled (or adopted).
    pub(crate) fn new(g: Guard<'a>) -> Self {
        let root = g.node();
        g.keep();
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
        // A join waker's panic parked while the walker freed a node (unwind.rs) is resumed
        // like a callback's, after the walk: the first one wins.
        #[cfg(feature = "std")]
        {
            let parked = crate::unwind::take();
            if let Some(payload) = self.panic.take().or(parked) {
                std::panic::resume_unwind(payload);
            }
        }
    }

    fn call_user(&mut self, f: impl FnOnce()) {
        crate::lock::debug_assert_no_lock_held();
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

    /// Leave `cur`, whose list holds no entry for us (nothing, or join waiters only; or which
    /// we left `DRAINED`): clear the walker bits
    /// (unlocking it if `g` is its guard), drop the walker's reference, release the entry we
    /// came through and move up. Returns `true` when the walk is over.
    ///
    /// `cur_ptr` is a raw pointer, not a reference: we may free the node here, and a reference
    /// argument would have to stay valid for the whole call.
    #[inline(always)]
    fn leave(&mut self, cur_ptr: *const Node, g: Option<Guard<'_>>) -> bool {
        // SAFETY: alive until we release its entry / free it below; not used after that.
        let cur = unsafe { &*cur_ptr };
        const MINE: usize = WALKING | WALKER_REF | DRAINED | WALK_PARKED;
        let is_root = ptr::eq(cur, self.root);
        // Read before clearing WALKING (for a multi-parent node, `scratch` is ours until then).
        let incoming = (!is_root).then(|| incoming(cur));
        if let Some((from, _)) = incoming {
            // Before the clear below, which wakes an owner waiting for this walk (list.rs
            // invariant 6); `cur` stays alive until that clear, since its owner waits for it.
            Entry::release_walked(from);
        }
        // After the clear below an owner waiting for this walk may free `cur` (a pinned node
        // has no reference of ours to keep it): from then on only its key is used, and `cur`
        // only where our own reference (`WALKER_REF`) keeps it alive (Miri found a wake-up
        // that still made a reference to a freed pinned node).
        let key = walk_key(cur);
        let old = match g {
            Some(g) => g.unlock_clearing(MINE),
            None => cur.clear_flags_release(MINE),
        };
        walk_ended(key, old);
        #[cfg_attr(not(feature = "alloc"), allow(unused_variables))]
        let st = old;
        let Some((from, up)) = incoming else {
            // The root is borrowed by our caller, who holds a reference if it is on the heap,
            // so ours is never the last one.
            #[cfg(feature = "alloc")]
            if st & WALKER_REF != 0 {
                cur.ref_dec_unless_last();
            }
            self.done = true;
            return true;
        };
        #[cfg(feature = "alloc")]
        if st & WALKER_REF != 0 && cur.ref_dec_unless_last() {
            // Nobody else can reach `cur`: free it (our entry is released), and take over its
            // reference on `up` (a drop of `up` here would wait on our own TAKEN entry).
            let dead = self.cur;
            // Freeing an extension node runs its crate's code.
            crate::lock::debug_assert_no_lock_held();
            // Move on first, so that if anything below unwinds, `Finish` resumes from `up`
            // and never touches the freed node.
            self.cur = up;
            // SAFETY: we own the last reference; its list is empty (every entry, a join
            // waiter's too, implies a reference); the entry we came through is released.
            let took = unsafe { crate::token::free_walked(dead, from) };
            if took {
                // SAFETY: `up` is alive: we hold its TAKEN entry, or it is the root.
                unsafe { (*up).adopt_walker_ref() };
            }
            return false;
        }
        // `cur` may be freed now (its entry is released and its walk is over); we never touch
        // it again.
        let _ = from;
        self.cur = up;
        false
    }

    /// Leave `cur` (locked by `g`), whose only entries left are `DEFERRED`, to a later walker
    /// (module docs, "Deferred entries and abandoned nodes"): keep `WALKING`, set `ABANDONED`,
    /// and defer our own entry in the parent. Returns `true` when the walk is over.
    #[cold]
    fn abandon(&mut self, cur_ptr: *const Node, g: Guard<'_>) -> bool {
        // SAFETY: alive: we hold its entry TAKEN, or it is the root.
        let cur = unsafe { &*cur_ptr };
        let is_root = ptr::eq(cur, self.root);
        // W2: read the way up before an adopter can take the node over.
        let incoming = (!is_root).then(|| incoming(cur));
        // The walker's reference goes before we let go of the node (an adopter may finish and
        // free it). If it were the last one (impossible while entries are listed: each implies
        // a reference), keep it and leave `WALKER_REF` for the adopter.
        #[cfg(feature = "alloc")]
        let keep_ref = g.seen() & WALKER_REF != 0 && cur.ref_dec_unless_last();
        #[cfg(not(feature = "alloc"))]
        let keep_ref = false;
        let drop_flags = DRAINED | WALK_PARKED | if keep_ref { 0 } else { WALKER_REF };
        let key = walk_key(cur);
        let old = g.unlock_update(|v| (v & !drop_flags) | ABANDONED);
        walk_ended(key, old);
        let Some((from, up)) = incoming else {
            self.done = true;
            return true;
        };
        // SAFETY: `up` is alive: we hold its TAKEN entry, or it is the root.
        let upn = unsafe { &*up };
        let ug = upn.lock();
        // SAFETY: the guard holds `up`'s lock; `from` is TAKEN by us, popped from `up`'s list.
        unsafe { ug.list().push_back_deferred(from) };
        // `up`'s list is not empty any more: we must lock it to leave it.
        if ug.seen() & DRAINED != 0 {
            ug.clear_flags(DRAINED);
        }
        ug.keep();
        self.cur = up;
        self.held = true;
        false
    }

    fn steps(&mut self) {
        loop {
            // SAFETY: `cur` is the root (borrowed by the caller) or a node we hold TAKEN
            // (invariant 4), so it is alive.
            let cur = unsafe { &*self.cur };
            // With `critical-section` every node lock masks interrupts (lock.rs), so never
            // carry one into the next step: each stretch with interrupts masked is then one
            // step (a few list edits, or one batch of wakers taken), whatever the shape of the
            // tree. The relock below is like the one after a callback.
            #[cfg(all(feature = "critical-section", not(loom)))]
            if self.held {
                // SAFETY: we kept this lock at the end of the previous step.
                drop(unsafe { Guard::assume_held(cur) });
                self.held = false;
            }
            let g = if self.held {
                self.held = false;
                // SAFETY: we kept this lock at the end of the previous step.
                unsafe { Guard::assume_held(cur) }
            } else {
                // We left this node with an empty list when we descended from it, and it is
                // cancelled, so nothing the walker acts on can have been linked since (only
                // join waiters may link into a cancelled node, and only its walker defers).
                if cur.state_relaxed() & DRAINED != 0 {
                    if self.leave(self.cur, None) {
                        return;
                    }
                    continue;
                }
                cur.lock()
            };
            // SAFETY: the guard holds `cur`'s lock.
            let popped = unsafe { g.list().pop_front_live() };
            let Some(e) = popped else {
                // Only join waiters (they wait for the last child, not for us) and deferred
                // entries can be left (list.rs invariant 5).
                // SAFETY: as above.
                let done = if unsafe { g.list().has_deferred() } {
                    self.abandon(self.cur, g)
                } else {
                    self.leave(self.cur, Some(g))
                };
                if done {
                    return;
                }
                continue;
            };
            // SAFETY: `e` is TAKEN by us, so it stays valid until we release it.
            let kind = unsafe { (*e).kind() };
            match kind {
                Kind::Child | Kind::Link => self.child(g, e, kind),
                Kind::Callback => {
                    // SAFETY: lock held and `e` is a TAKEN callback entry.
                    unsafe { crate::callback::prepare(e, &g) };
                    // SAFETY: `cur` is cancelled and locked.
                    let reason = unsafe { cur.reason_unchecked() };
                    #[cfg(feature = "alloc")]
                    cur.hold_for_walker();
                    drop(g);
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
                        // SAFETY: `e` is a TAKEN waiter entry; the guard holds the lock.
                        wakers[n] = unsafe { crate::wait::take_waker(e, &g) };
                        n += 1;
                        Entry::release_locked(e, &g);
                        // SAFETY: the guard holds `cur`'s lock.
                        match unsafe { g.list().front_kind() } {
                            Some(Kind::Waiter) if n < BATCH => {
                                // SAFETY: lock held; the front entry exists.
                                e = unsafe { g.list().pop_front() }.expect("front entry");
                            }
                            _ => break,
                        }
                    }
                    drop(g);
                    for w in wakers.iter_mut().take(n) {
                        if let Some(w) = w.take() {
                            self.call_user(|| w.wake());
                        }
                    }
                }
            }
        }
    }

    /// Act on a popped child or link entry `e` of `cur` (locked by `g`): cancel its target
    /// and descend, adopt it if abandoned, release it if its walk is over, or wait for /
    /// defer it if another thread walks it. Leaves with `held` set on the node to go on with.
    #[inline(always)]
    fn child(&mut self, mut g: Guard<'_>, e: *const Entry, kind: Kind) {
        // A raw pointer with the provenance the entry was pushed with: if the walker ends up
        // freeing this node, it must do so through it.
        let target_ptr = target_of(e, kind);
        // SAFETY: the target is kept alive by its TAKEN entry.
        let target = unsafe { &*target_ptr };
        // SAFETY: `cur` is cancelled (we are walking it) and we hold its lock.
        let reason = unsafe { g.node().reason_unchecked() };
        loop {
            // Hand over hand: lock the child while still holding the parent. This is the only
            // place two node locks are held; the order is always parent -> child (lock.rs).
            let tg = target.lock();
            let st = tg.seen();
            if st & CANCELLED == 0 {
                // SAFETY: the guard holds the target's lock.
                if unsafe { tg.list().is_empty() } {
                    // A leaf: cancel it and unlock it in one step; it has nothing to walk,
                    // so we stay on `cur` (still locked) and never climb back.
                    tg.publish_cancel_leaf(reason);
                    Entry::release_locked(e, &g);
                    self.stay(g);
                    return;
                }
                tg.publish_cancel(reason);
                self.descend(g, tg, e, kind, target_ptr);
                return;
            }
            if st & ABANDONED != 0 {
                // W2: adopt it; its `WALKING` is still set, and stays set until we leave it.
                adopt(&tg);
                self.descend(g, tg, e, kind, target_ptr);
                return;
            }
            if st & WALKING == 0 {
                // Cancelled and walked to the end by someone else (W1 holds below it).
                drop(tg);
                Entry::release_locked(e, &g);
                self.stay(g);
                return;
            }
            // Another thread walks the target (invariant 5).
            drop(tg);
            if !nesting::may_wait(1) {
                // SAFETY: the guard holds `cur`'s lock; `e` is TAKEN by us, popped from it.
                unsafe { g.list().push_back_deferred(e) };
                self.stay(g);
                return;
            }
            // Wait for it while our TAKEN entry keeps the target alive, then look again.
            let cur = g.node();
            drop(g);
            wait_walk_end(target);
            g = cur.lock();
        }
    }

    /// Stay on the current node, keeping its lock for the next step.
    #[inline(always)]
    fn stay(&mut self, g: Guard<'_>) {
        g.keep();
        self.held = true;
    }

    /// Move into `target` (locked by `tg`, cancelled or adopted by us) through `e`, popped
    /// from `cur` (locked by `g`).
    #[inline(always)]
    fn descend(
        &mut self,
        g: Guard<'_>,
        tg: Guard<'_>,
        e: *const Entry,
        kind: Kind,
        target_ptr: *const Node,
    ) {
        // An owner parked for `e`'s release must now wait for the walk (list.rs invariant 6).
        Entry::entered(e, &g);
        // SAFETY: `e` is TAKEN by us, so its `prev` word is ours.
        unsafe { (*e).set_popped_from(self.cur) };
        if kind == Kind::Link {
            tg.node().entry.set_scratch(e);
        }
        // SAFETY: the guard holds `cur`'s lock.
        if unsafe { g.list().is_empty() } {
            g.unlock_setting(DRAINED);
        } else {
            drop(g);
        }
        tg.keep();
        self.cur = target_ptr;
        self.held = true;
    }
}

/// How many wakers the walker takes per lock hold.
const BATCH: usize = 32;

/// The parking key of a node's walk: inside its state word, one past the lock's key.
fn walk_key(node: &Node) -> usize {
    core::ptr::from_ref(node.state_word()) as usize + 1
}

/// After an operation that cleared `WALKING` or set `ABANDONED` (and cleared `WALK_PARKED`),
/// with old word `old`: wake the threads waiting for the walk (W3). Takes only the node's key
/// (computed before that operation): the node may be gone.
fn walk_ended(key: usize, old: usize) {
    if old & WALK_PARKED != 0 {
        park::wake_all(key);
    }
}

/// Wait until `node`'s walk is over (`WALKING` clear) or abandoned (`ABANDONED` set).
#[cold]
#[inline(never)]
pub(crate) fn wait_walk_end(node: &Node) {
    let mut b = Backoff::new();
    loop {
        let st = node.state_acquire();
        if st & WALKING == 0 || st & ABANDONED != 0 {
            return;
        }
        if b.spin() {
            continue;
        }
        if st & WALK_PARKED == 0 && !node.try_set_flags(st, WALK_PARKED) {
            continue;
        }
        park::park(walk_key(node), || {
            node.state_relaxed() & (WALKING | ABANDONED | WALK_PARKED) == WALKING | WALK_PARKED
        });
    }
}

/// Become the walker of the abandoned node `g` locks (W2): its deferred entries are ours now.
fn adopt(g: &Guard<'_>) {
    g.clear_flags(ABANDONED);
    // SAFETY: the guard holds the lock.
    unsafe { g.list().undefer_all() };
}

/// For a `cancel()` that found `node` already cancelled: unless this thread is inside a walk,
/// wait until the walk of `node`'s subtree is over, finishing it ourselves if it was abandoned.
pub(crate) fn finish_walk(node: &Node) {
    if !nesting::may_wait(0) {
        return;
    }
    loop {
        wait_walk_end(node);
        if node.state_acquire() & WALKING == 0 {
            return;
        }
        let g = node.lock();
        if g.seen() & ABANDONED == 0 {
            // Adopted by someone else meanwhile (or its walk ended): wait for them.
            continue;
        }
        adopt(&g);
        Walk::new(g).run();
        return;
    }
}

/// Per-thread count of walks in progress, so a walk started from inside a callback never waits
/// for another walk (which could be the one running that callback).
mod nesting {
    #[cfg(all(not(loom), not(shuttle), feature = "std"))]
    std::thread_local! {
        static DEPTH: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    }

    #[cfg(loom)]
    loom::thread_local! {
        static DEPTH: core::cell::Cell<u32> = core::cell::Cell::new(0);
    }

    // Shuttle's threads share one OS thread: a `std` thread-local would be shared by all.
    #[cfg(shuttle)]
    shuttle::thread_local! {
        static DEPTH: core::cell::Cell<u32> = core::cell::Cell::new(0);
    }

    #[cfg(any(loom, shuttle, feature = "std"))]
    pub(super) fn enter() {
        DEPTH.with(|d| d.set(d.get() + 1));
    }

    #[cfg(any(loom, shuttle, feature = "std"))]
    pub(super) fn leave() {
        DEPTH.with(|d| d.set(d.get() - 1));
    }

    #[cfg(any(loom, shuttle, feature = "std"))]
    pub(super) fn may_wait(own: u32) -> bool {
        DEPTH.with(|d| d.get() <= own)
    }

    #[cfg(not(any(loom, shuttle, feature = "std")))]
    pub(super) fn enter() {}

    #[cfg(not(any(loom, shuttle, feature = "std")))]
    pub(super) fn leave() {}

    /// Without thread identity we cannot tell a nested walk from an independent one.
    #[cfg(not(any(loom, shuttle, feature = "std")))]
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
