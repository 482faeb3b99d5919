//! # cutoff
//!
//! A cancellation tree for Rust that runs without an allocator. Each node has one packed
//! atomic state word, so [`is_cancelled`](NodeView::is_cancelled) is a single `Acquire`
//! load; children, callbacks and waiters are intrusive, so linking allocates nothing and
//! unlinking is O(1); cancelling walks the subtree iteratively, never holding a lock while user
//! code runs, and carries a first-wins [`Reason`] to every descendant.
//!
//! Two ownership modes, one tree:
//!
//! * **pinned** (no allocator): [`Node`] (a root, `const`-constructible so it can be a
//!   `static`), [`ChildNode`], [`AnyOf`], [`Callback`], [`Cancellation`];
//! * **heap** (`alloc` feature): [`CancelSource`] (can cancel) and [`CancelToken`] (cheap
//!   `Clone`, observe only), [`DropGuard`], [`OnCancel`], [`OwnedCancellation`].
//!
//! A pinned child can hang off a heap node and a heap child off a `static` node.
//!
//! ```
//! use core::pin::pin;
//! use cutoff::{CancelSource, ChildNode, Reason};
//!
//! let server = CancelSource::new();
//! let conn = server.child();                          // heap child
//! let mut req = pin!(ChildNode::new(&conn));          // pinned grandchild, no allocation
//! let req = req.as_mut().link();
//! server.cancel_with(Reason::Shutdown);
//! assert_eq!(req.reason(), Some(Reason::Shutdown));
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `alloc` | yes | heap handles, [`Reason::Error`] |
//! | `std` | yes | blocking [`wait`](NodeView::wait)/[`wait_timeout`](NodeView::wait_timeout), panic isolation in callbacks, same-thread detection when a callback drops its own registration |
//!
//! See `docs/DESIGN.md` in the repository for the state machine, invariants, lock order and
//! memory orderings.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", loom))]
extern crate std;

/// `const fn` normally, plain `fn` under loom (whose atomics are not `const`) and shuttle
/// (whose atomics belong to one execution: a `static` node would carry its state and vector
/// clocks into the next one).
macro_rules! loom_const_fn {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $T:ty),*) -> $Ret:ty $body:block
    ) => {
        $(#[$meta])*
        #[cfg(not(any(loom, shuttle)))]
        $vis const fn $name($($arg: $T),*) -> $Ret $body

        $(#[$meta])*
        #[cfg(any(loom, shuttle))]
        $vis fn $name($($arg: $T),*) -> $Ret $body
    };
}
pub(crate) use loom_const_fn;

mod any_of;
mod callback;
mod child;
mod ext;
mod foreign;
mod list;
mod lock;
mod loom;
mod node;
mod park;
mod reason;
mod state;
mod unwind;
mod view;
mod wait;
mod walk;

#[cfg(feature = "alloc")]
mod token;

pub mod bare_metal;
pub mod future_ext;
#[cfg(feature = "std")]
pub mod thread;
#[cfg(feature = "tokio-util")]
pub mod tokio_bridge;

#[cfg(test)]
mod tests;

pub use any_of::AnyOf;
pub use callback::Callback;
pub use child::ChildNode;
pub use ext::{ExtHeader, ExtVtable};
#[cfg(feature = "alloc")]
pub use ext::{HeapRef, Parent};
pub use foreign::{Feed, ForeignSource, Trigger, feed};
pub use future_ext::{FutureCancelExt, WithCancel};
#[cfg(feature = "futures-core")]
pub use future_ext::{StreamCancelExt, TakeUntilCancelled};
pub use node::Node;
pub use reason::{AlreadyCancelled, Cancelled, Reason};
pub use view::NodeView;
pub use wait::{Cancellation, Join, RunUntilCancelled};

#[cfg(feature = "alloc")]
pub use reason::ErrorReason;
#[cfg(feature = "alloc")]
pub use token::{CancelSource, CancelToken, DropGuard, OnCancel, OwnedCancellation};

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Node>();
    send_sync::<NodeView>();
    #[cfg(feature = "alloc")]
    send_sync::<CancelSource>();
    #[cfg(feature = "alloc")]
    send_sync::<CancelToken>();
};

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
