//! Adversarial checks (review): an `OnCancel` disarmed or dropped while its callback runs,
//! from the callback itself and from another thread, and a `Cancellation` dropped from its own
//! waker. Small and deterministic enough for Miri (Stacked and Tree Borrows): they look for
//! aliasing violations between the walker's raw pointers into the registration and the
//! `Pin<&mut Callback>` / `Box` the owner uses meanwhile.
//!
//! A clean control from the review: it must stay green.
//!
//! Run: cargo +nightly miri test -p cutoff-tests --test adv4   (also plain cargo test)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use cutoff::{CancelSource, OnCancel, Reason};

type BoxedCb = Box<dyn FnOnce(&Reason) + Send>;
type Slot = Arc<Mutex<Option<OnCancel<BoxedCb>>>>;

#[test]
fn disarm_own_registration_from_inside_the_callback_then_drop_it() {
    let src = CancelSource::new();
    let slot: Slot = Arc::new(Mutex::new(None));
    let ran = Arc::new(AtomicUsize::new(0));
    let (s2, r2) = (slot.clone(), ran.clone());
    let f: BoxedCb = Box::new(move |_| {
        r2.fetch_add(1, SeqCst);
        let reg = s2.lock().unwrap().take().expect("registered");
        // Same thread as the walker: must not wait; the closure already moved out.
        assert!(reg.disarm().is_none());
    });
    *slot.lock().unwrap() = Some(src.token().on_cancel(f));
    assert!(src.cancel());
    assert_eq!(ran.load(SeqCst), 1);
    assert!(slot.lock().unwrap().is_none());
}

#[test]
fn drop_and_disarm_from_another_thread_while_the_callback_runs() {
    for disarm in [false, true] {
        let src = CancelSource::new();
        let child = src.child();
        let started = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let (st, rl) = (started.clone(), release.clone());
        let reg = child.on_cancel(move |_: &Reason| {
            st.store(true, SeqCst);
            while !rl.load(SeqCst) {
                std::thread::yield_now();
            }
        });
        drop(child); // the registration's token is the child's last handle
        let canceller = std::thread::spawn(move || {
            assert!(src.cancel());
            src
        });
        while !started.load(SeqCst) {
            std::thread::yield_now();
        }
        let dropper = std::thread::spawn(move || {
            if disarm {
                assert!(reg.disarm().is_none());
            } else {
                drop(reg);
            }
        });
        for _ in 0..10 {
            std::thread::yield_now();
        }
        release.store(true, SeqCst);
        dropper.join().unwrap();
        let src = canceller.join().unwrap();
        assert!(!src.has_children());
    }
}

/// A waker that drops the future it wakes (executor that frees a task inline on wake).
struct DropOnWake(Mutex<Option<std::pin::Pin<Box<cutoff::OwnedCancellation>>>>);
impl Wake for DropOnWake {
    fn wake(self: Arc<Self>) {
        drop(self.0.lock().unwrap().take());
    }
}

#[test]
fn waker_drops_the_last_handle_of_a_grandchild_being_walked() {
    let root = CancelSource::new();
    let mid = root.child();
    let leaf = mid.child();
    let slot = Arc::new(DropOnWake(Mutex::new(None)));
    let waker = Waker::from(slot.clone());
    let mut fut = Box::pin(leaf.token().cancelled_owned());
    assert!(
        fut.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    *slot.0.lock().unwrap() = Some(fut);
    drop(waker);
    drop(leaf);
    drop(mid); // mid is kept alive only by leaf's reference, leaf only by the future's token
    assert!(root.cancel());
    assert!(!root.has_children());
}
