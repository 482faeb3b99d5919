//! ADV-6 (adversarial review, low severity / doc gap): a deadline made on one timer under a
//! parent whose (earlier) deadline belongs to *another* timer gets no wheel entry at all
//! (deadline.rs `plan` -> `Plan::Inherit`: `deadline_raw` is timer-agnostic), so it is only
//! ever cancelled by the parent's timer. With a manual parent timer that is not turned, a
//! 50 ms timeout on the global timer never fires; `deadline()` still reports the parent's
//! instant. DESIGN.md section 11 ("it is cancelled through that ancestor") assumes the
//! ancestor's timer fires on time; nothing documents that timers must not be mixed.
//!
//! Regression test (the defect is fixed; see docs/DESIGN.md section 11). Run:
//!   cargo test -p cutoff-tests --release --test adv6

use std::sync::Arc;
use std::time::Duration;

use cutoff_timer::clock::ManualClock;
use cutoff_timer::{Parent, Timer};

#[test]
fn a_global_timeout_under_a_manual_timers_earlier_deadline_still_fires() {
    let clock = Arc::new(ManualClock::new());
    let manual = Timer::manual(clock.clone());
    let p = manual.deadline_source(Parent::Root, manual.now() + Duration::from_millis(10));
    let c = cutoff_timer::with_timeout(&p, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        c.is_cancelled(),
        "a 50 ms timeout on the global timer did not fire after 300 ms: it inherited the \
         (earlier, never turned) deadline of a manual timer and registered no entry"
    );
}

// ---- added with the fix: the decision, deterministically, on manual timers --------------

use cutoff::Reason;

/// Across timers the child registers its own entry, at the parent's (earlier) deadline, on
/// its own timer; within one timer it still inherits and registers nothing.
#[test]
fn a_deadline_inherits_only_from_its_own_timer() {
    let clock = Arc::new(ManualClock::new());
    let t1 = Timer::manual(clock.clone());
    let t2 = Timer::manual(clock.clone());
    let parent = t1.deadline_source(Parent::Root, t1.now() + Duration::from_millis(10));
    let same = t1.deadline_source(&parent, t1.now() + Duration::from_millis(50));
    let other = t2.deadline_source(&parent, t2.now() + Duration::from_millis(50));
    // Both report the parent's deadline.
    assert_eq!(same.deadline_raw(), parent.deadline_raw());
    assert_eq!(other.deadline_raw(), parent.deadline_raw());
    clock.advance(Duration::from_millis(9));
    assert_eq!(t2.turn(), 0, "fired before the inherited deadline");
    clock.advance(Duration::from_millis(1));
    // T2 alone fires the T2 child, at the parent's deadline.
    assert_eq!(t2.turn(), 1);
    assert_eq!(other.reason(), Some(Reason::DeadlineExceeded));
    assert!(!parent.is_cancelled() && !same.is_cancelled());
    // T1 fires one entry (the parent's); the T1 child goes with it.
    assert_eq!(t1.turn(), 1);
    assert_eq!(same.reason(), Some(Reason::DeadlineExceeded));
}
