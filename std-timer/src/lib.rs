//! # cutoff-timer
//!
//! Deadline contexts for the [`cutoff`] cancellation tree: a deadline node is an ordinary
//! `cutoff` node that cancels itself with reason "deadline exceeded" once its deadline has
//! passed, never earlier. Pending deadlines live on a hierarchical timer wheel (64 slots per
//! level, 1 ms level-0 granularity) turned by one timer thread.
//!
//! This commit holds the two pure building blocks; the driver (the timer thread and its
//! per-thread shards) and the public deadline API (`with_deadline`, `with_timeout`,
//! `timeout`, `wait_timeout`) land in later commits.
//!
//! * [`clock`]: time as `u64` nanoseconds since a clock's origin; the real monotonic
//!   [`SystemClock`](clock::SystemClock) and a [`ManualClock`](clock::ManualClock) for
//!   deterministic tests.
//! * [`wheel`]: the hierarchical timer wheel itself, a pure `&mut self` data structure (no
//!   atomics, no locks, no clock) with intrusive, allocation-free entries and O(1) removal.
//!   It is public so that it can be tested exhaustively and reused.
//!
//! See `docs/DESIGN.md` in the repository for the design of the tree; the wheel's own design
//! is described at the top of [`wheel`].
#![deny(unsafe_code)]

pub mod clock;
mod deadline;
mod loom;
mod timer;
pub mod wheel;


pub use deadline::{
    Deadline, DeadlineExt, Elapsed, Parent, Timeout, deadline, timeout, with_deadline, with_timeout,
};
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
