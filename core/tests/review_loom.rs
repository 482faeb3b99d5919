//! Adversarial review, loom models (public API only).
//!
//! Unlike `loom_matrix.rs`, this file installs a poison-on-free global allocator (the same idea
//! as `std-timer/src/tests/loom.rs`): heap nodes are plain `Box`es, not loom objects, so a late
//! access to a freed node's loom atomic would otherwise read stale memory silently. With the
//! poison, the loom atomic inside a freed node names no valid loom object and touching it makes
//! loom panic (or abort) right at the late access.
//!
//! Run one model:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target-loom \
//!     cargo test -p cutoff --profile loom --test review_loom -- <name>
//! ```
#![cfg(loom)]
#![allow(unsafe_code)]
#![allow(clippy::std_instead_of_core)]

use loom::thread;

use cutoff::CancelSource;

#[path = "support/poison.rs"]
mod poison;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// REVIEW-UAF-UNREF (finding): `Guard::unlock_unref` (node.rs) drops a reference on the parent
/// in the same RMW that unlocks it, and `released` (lock.rs) then, if `LOCK_PARKED` was set,
/// calls `wake_locker`, whose `none_left` callback does `state.fetch_and(!LOCK_PARKED)` on the
/// parent's state word. Between the unlock and that callback the parent may have been freed by
/// the thread that announced `LOCK_PARKED`: its park validation fails (the lock is free), it
/// takes and releases the lock (clearing `LOCK_PARKED` itself), drops the last handle and frees
/// the node. The late `fetch_and` then writes into freed memory.
///
/// Thread A drops the last handle of heap child `x` (so `free_chain(x)` unlinks it from `p`
/// with `unref`); main contends on `p`'s lock (`has_children`) and then drops `p`'s only handle.
#[test]
fn unref_unlock_wakes_a_freed_node() {
    model(|| {
        let p = CancelSource::new();
        let x = p.child();
        let a = thread::spawn(move || drop(x));
        let _ = p.has_children();
        drop(p);
        a.join().unwrap();
    });
}

/// Control for `unref_unlock_wakes_a_freed_node`: the same race, but main keeps its handle of
/// `p` until A has returned, so nothing is freed early. Passes: the failure above is the late
/// access to the freed node, not the race itself.
#[test]
fn unref_unlock_control_node_kept_alive() {
    model(|| {
        let p = CancelSource::new();
        let x = p.child();
        let a = thread::spawn(move || drop(x));
        let _ = p.has_children();
        a.join().unwrap();
        drop(p);
    });
}
