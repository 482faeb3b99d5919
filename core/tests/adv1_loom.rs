//! ADV-1, loom model (black-box: public API only). Belongs in `core/tests/` of the `cutoff`
//! crate (loom is a `cfg(loom)` dependency of that crate, so integration tests see it).
//!
//! The last handle of a heap child is the token inside an `OwnedCancellation`; the future is
//! dropped on another thread while the parent's walker is inside the child. The walker
//! releases the waiter entry before `hold_for_walker` (walk.rs), the drop sees `RELEASED` and
//! skips the node lock (wait.rs `Waiter::detach`), drops the count to 0 and starts freeing the
//! node; `hold_for_walker`'s `fetch_add` brings it back to 1, and the walker frees the node a
//! second time in `leave` -> `free_walked`.
//!
//! Observed before the fix: `free(): double free detected in tcache 2` (SIGABRT) with
//!   RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p cutoff --profile loom --test adv1_loom
#![cfg(loom)]

use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use cutoff::CancelSource;

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

#[test]
fn owned_waiter_drop_on_other_thread_vs_walker_hold() {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(|| {
        let parent = CancelSource::new();
        let child = parent.child();
        let mut fut = Box::pin(child.token().cancelled_owned());
        drop(child); // the future's token is now the last handle to the child
        let waker = Waker::from(Arc::new(Noop));
        assert!(
            fut.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        let t = loom::thread::spawn(move || drop(fut));
        assert!(parent.cancel());
        t.join().unwrap();
        assert!(!parent.has_children());
    });
}
