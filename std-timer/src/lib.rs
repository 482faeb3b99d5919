//! # cutoff-timer
//!
//! Deadline contexts for the [`cutoff`] cancellation tree. A deadline node is an ordinary
//! `cutoff` node (children, callbacks, waiters and reasons all work) that cancels itself with
//! [`Reason::DeadlineExceeded`](cutoff::Reason::DeadlineExceeded) once its deadline has
//! passed: never earlier, and soon after, whether or not anyone is waiting on it (Go's
//! `ctx.Err()` semantics).
//!
//! ```
//! use std::time::Duration;
//! use cutoff::{CancelSource, Reason};
//! use cutoff_timer::{DeadlineExt, with_timeout};
//!
//! let request = CancelSource::new();
//! let db_call = with_timeout(&request, Duration::from_millis(5));
//! assert!(db_call.deadline().is_some());
//! assert_eq!(db_call.wait(), Reason::DeadlineExceeded);
//! assert!(!request.is_cancelled()); // the parent is not affected
//! ```
//!
//! * [`with_deadline`] / [`with_timeout`]: heap deadline nodes ([`cutoff::CancelSource`]);
//!   [`Deadline`]: the pinned, allocation-free form.
//! * [`DeadlineExt::deadline`]: the earliest deadline on any node's path. When a parent's
//!   deadline is already earlier and belongs to the same timer, a new deadline node gets no
//!   timer entry at all (under another timer's earlier deadline it registers one, at that
//!   deadline, on its own timer: every deadline fires on its own timer); a deadline already
//!   in the past gives a node that is cancelled at once.
//! * [`timeout`] / [`deadline`]: run a future with a time limit ([`Elapsed`] on expiry); a
//!   future that is ready at once never touches the timer.
//! * [`Timer`]: the driver (the process-wide one starts on first use; make your own for
//!   control, or a manual one with a [`ManualClock`](clock::ManualClock) for tests).
//! * [`wheel`]: the hierarchical timer wheel itself (64 slots per level, 1 ms level 0), a pure
//!   `&mut self` data structure with intrusive entries, public so it can be reused.
//!
//! Blocking waits with a time limit are [`cutoff::NodeView::wait_timeout`].
//!
//! See `docs/DESIGN.md` in the repository (section "Deadlines") for the design.
#![deny(unsafe_code)]

pub mod clock;
mod deadline;
pub mod grpc;
mod loom;
mod timer;
pub mod wheel;

/// Where a heap deadline node hangs (re-exported from `cutoff`).
pub use cutoff::Parent;
pub use deadline::{
    Deadline, DeadlineExt, Elapsed, Timeout, deadline, timeout, with_deadline, with_timeout,
};
pub use grpc::{GrpcTimeout, GrpcTimeoutError, grpc_timeout, with_grpc_timeout};
pub use timer::{Timer, global_origin};

const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<wheel::Wheel>();
    send::<wheel::Entry>();
    send_sync::<clock::SystemClock>();
    send_sync::<clock::ManualClock>();
};

#[cfg(test)]
mod tests {
    mod loom;
}
