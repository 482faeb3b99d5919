//! ADV-1 (adversarial review): `hold_for_walker` can resurrect a heap node whose last handle
//! was just dropped on another thread -> double free / use after free.
//!
//! walk.rs, `Kind::Waiter | Kind::Join` branch: the walker releases every popped waiter entry
//! (`Node::release_entry(e)`) and only *afterwards* calls `cur.hold_for_walker()`, which is a
//! plain `load` + `fetch_add` (node.rs `hold_for_walker`), not a "never from zero" CAS like
//! `try_ref`. A `Cancellation`/`OwnedCancellation` whose entry is already `RELEASED` detaches
//! without taking the node lock (wait.rs `Waiter::detach`), so its owner can drop the node's
//! last handle between the walker's load (refs == 1) and its `fetch_add` (0 -> 1). The owner's
//! `free_chain` then waits for the child's `TAKEN` entry in the parent, the walker later sees
//! "its" reference as the last one in `leave` and frees the node in `free_walked`, and the
//! owner frees it again (and both decrement the parent's child count and the parent's
//! reference count).
//!
//! The window is a couple of instructions, so on real threads this test rarely fails; run it
//! under Miri with many seeds and a high preemption rate, or see the loom model
//! `adv1_owned_waiter_drop_vs_walker_hold` in `core/tests/loom_matrix.rs` (same scenario) which finds it deterministically.
//!
//! Fixed: the walker takes its reference while it still holds the entry `TAKEN` (so the owner's
//! own reference keeps the count above zero), and `hold_for_walker` is a never-from-zero CAS.
//! Regression test, kept as the review wrote it (only the default iteration count is lower).
//!
//! Run:
//!   cargo test -p cutoff-tests --test adv1 --release          # real threads, ADV_ITERS iterations
//!   MIRIFLAGS="-Zmiri-many-seeds=0..64 -Zmiri-preemption-rate=0.3" \
//!     cargo +nightly miri test -p cutoff-tests --test adv1

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Wake, Waker};

use cutoff::CancelSource;

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn iterations() -> usize {
    std::env::var("ADV_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(miri) { 2 } else { 20_000 })
}

#[test]
fn owned_waiter_dropped_on_other_thread_while_walker_is_inside_its_node() {
    let waker = Waker::from(Arc::new(Noop));
    for _ in 0..iterations() {
        let parent = CancelSource::new();
        let child = parent.child();
        // The future's token becomes the only handle to the child.
        let mut fut = Box::pin(child.token().cancelled_owned());
        drop(child);
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let go = Arc::new(AtomicBool::new(false));
        let g = go.clone();
        let t = std::thread::spawn(move || {
            let waker = Waker::from(Arc::new(Noop));
            while !g.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            // Poll until the child is cancelled (no lock taken once it is), then drop the
            // future at once: its entry is then usually TAKEN (lock path, fine) but sometimes
            // already RELEASED (no lock), racing the walker's `hold_for_walker`.
            loop {
                if fut
                    .as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_ready()
                {
                    break;
                }
                std::hint::spin_loop();
            }
            drop(fut);
        });
        go.store(true, Ordering::Release);
        assert!(parent.cancel());
        t.join().unwrap();
        // A double unlink of the child makes the parent's count wrap (debug: overflow panic).
        assert!(!parent.has_children());
    }
}
