//! Bit layout of a node's state word.
//!
//! | bit | name | meaning |
//! |---|---|---|
//! | 0 | `CANCELLED` | cancelled; the reason is written |
//! | 1 | `LOCKED` | list lock |
//! | 2 | `INIT` | linking decided (linked or born cancelled) |
//! | 3 | `COUNTED_PARENT` | `parent` holds a reference on a heap parent |
//! | 4 | `MULTI` | several parents (link set) |
//! | 5 | `JOINERS` | join waiters linked |
//! | 6 | `WALKING` | the subtree walk is still running |
//! | 7 | `WALKER_REF` | the walker holds a reference |
//! | 8 | `DRAINED` | the walker may leave without relocking |
//! | 9 | `EXT` | the node heads an extension node (`ext.rs`) |
//! | 10 | `LOCK_PARKED` | a thread is parked waiting for `LOCKED` (lock.rs) |
//! | 11 | `WALK_PARKED` | a thread is parked waiting for the walk to end (walk.rs) |
//! | 12 | `ABANDONED` | the walk left parts of the subtree to a later walker (walk.rs) |
//! | 13.. | refcount | handles to a heap node, in units of `REF_ONE` |
//!
//! `CANCELLED` is set once and never cleared. `LOCKED` guards the node's entry list and its
//! child count; it is never held while user code runs. The reference count (in units of
//! [`REF_ONE`]) is only meaningful for heap nodes owned by `CancelSource`/`CancelToken`.

/// The node is cancelled; its reason is written and visible to anyone who sees this bit.
pub(crate) const CANCELLED: usize = 1 << 0;
/// The node's entry list (children, callbacks, waiters) is being edited or walked.
pub(crate) const LOCKED: usize = 1 << 1;
/// The node has decided whether it is linked into its parent (or born cancelled).
pub(crate) const INIT: usize = 1 << 2;
/// The node's `parent` pointer owns one reference on a heap parent.
pub(crate) const COUNTED_PARENT: usize = 1 << 3;
/// The node hangs off several parents through a link set, not one `parent` pointer.
pub(crate) const MULTI: usize = 1 << 4;
/// At least one join waiter has been linked since the list was last scanned for them.
pub(crate) const JOINERS: usize = 1 << 5;
/// The walker that cancelled this node has not finished its subtree yet (walk.rs).
pub(crate) const WALKING: usize = 1 << 6;
/// The walker holds one reference on this heap node (walk.rs).
pub(crate) const WALKER_REF: usize = 1 << 7;

/// The walker left this node with an empty list when it descended into its last child, so it
/// can leave the node on the way back up without locking it again (walk.rs).
pub(crate) const DRAINED: usize = 1 << 8;

/// The node is the first field of an `ExtHeader` (ext.rs).
pub(crate) const EXT: usize = 1 << 9;

/// A thread is parked (or about to park) waiting for `LOCKED` to clear (lock.rs invariant 3).
pub(crate) const LOCK_PARKED: usize = 1 << 10;

/// A thread is parked (or about to park) waiting for `WALKING` to clear or `ABANDONED` to be
/// set; whoever does either clears this bit in the same operation and wakes them (walk.rs).
pub(crate) const WALK_PARKED: usize = 1 << 11;

/// The walker of this node left it with `WALKING` still set: some entries of its list are
/// `DEFERRED` (their targets were being walked by another thread it could not wait for). The
/// next walker that reaches the node, or a `cancel()` of it that may wait, adopts it (clears
/// this bit under the lock) and finishes the walk (walk.rs).
pub(crate) const ABANDONED: usize = 1 << 12;

/// One reference in the reference-count field.
#[cfg(feature = "alloc")]
pub(crate) const REF_ONE: usize = 1 << 13;
/// Mask of the reference-count field.
#[cfg(feature = "alloc")]
pub(crate) const REF_MASK: usize = !(REF_ONE - 1);
