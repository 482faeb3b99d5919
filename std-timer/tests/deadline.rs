//! Black-box tests of deadline nodes, mostly on a manual clock (deterministic, no sleeps).
#![allow(clippy::std_instead_of_core)]

use core::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cutoff::{CancelSource, Node, Reason};
use cutoff_timer::clock::{Clock, ManualClock};
use cutoff_timer::{Deadline, DeadlineExt, Parent, Timer};

fn manual() -> (Arc<ManualClock>, Timer) {
    let clock = Arc::new(ManualClock::new());
    let timer = Timer::manual(clock.clone());
    (clock, timer)
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn fires_at_the_deadline_never_before() {
    let (clock, timer) = manual();
    let at = timer.now() + 10 * MS;
    let d = timer.deadline_source(Parent::Root, at);
    assert_eq!(d.deadline(), Some(at));
    clock.advance(10 * MS - Duration::from_nanos(1));
    assert_eq!(timer.turn(), 0);
    assert!(!d.is_cancelled());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(timer.turn(), 1);
    assert_eq!(d.reason(), Some(Reason::DeadlineExceeded));
}

#[test]
fn children_and_callbacks_see_the_deadline() {
    let (clock, timer) = manual();
    let parent = CancelSource::new();
    let d = timer.timeout_source(&parent, 5 * MS);
    let child = d.child();
    let mut pinned = pin!(cutoff::ChildNode::new(&child));
    let pinned = pinned.as_mut().link();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let _cb = d.on_cancel(move |r| {
        assert_eq!(*r, Reason::DeadlineExceeded);
        h.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(pinned.deadline(), d.deadline());
    clock.advance(5 * MS);
    timer.turn();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(pinned.reason(), Some(Reason::DeadlineExceeded));
    assert!(!parent.is_cancelled());
}

#[test]
fn an_earlier_parent_deadline_means_no_timer_entry() {
    let (clock, timer) = manual();
    let outer = timer.timeout_source(Parent::Root, 5 * MS);
    let inner = timer.timeout_source(&outer, 50 * MS);
    assert_eq!(inner.deadline(), outer.deadline());
    // Only the outer deadline is pending: after it fires nothing is left.
    clock.advance(5 * MS);
    assert_eq!(timer.turn(), 1);
    assert!(inner.is_cancelled());
    assert_eq!(timer.next_deadline(), None);
}

#[test]
fn a_later_parent_deadline_does_not_delay_the_child() {
    let (clock, timer) = manual();
    let outer = timer.timeout_source(Parent::Root, 50 * MS);
    let inner = timer.timeout_source(&outer, 5 * MS);
    assert!(inner.deadline() < outer.deadline());
    clock.advance(5 * MS);
    assert_eq!(timer.turn(), 1);
    assert!(inner.is_cancelled());
    assert!(!outer.is_cancelled());
}

#[test]
fn past_and_zero_deadlines_are_born_cancelled() {
    let (_clock, timer) = manual();
    let d = timer.timeout_source(Parent::Root, Duration::ZERO);
    assert_eq!(d.reason(), Some(Reason::DeadlineExceeded));
    let past = timer.deadline_source(Parent::Root, timer.now() - MS);
    assert_eq!(past.reason(), Some(Reason::DeadlineExceeded));
    assert_eq!(timer.next_deadline(), None);
}

#[test]
fn duration_max_never_fires_and_does_not_overflow() {
    let (clock, timer) = manual();
    let d = timer.timeout_source(Parent::Root, Duration::MAX);
    clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    timer.turn();
    assert!(!d.is_cancelled());
}

#[test]
fn dropping_before_the_deadline_removes_the_entry() {
    let (clock, timer) = manual();
    let parent = CancelSource::new();
    for _ in 0..1000 {
        drop(timer.timeout_source(&parent, 3 * MS));
    }
    assert!(!parent.has_children());
    clock.advance(3 * MS);
    assert_eq!(timer.turn(), 0);
    assert_eq!(timer.next_deadline(), None);
}

#[test]
fn clock_jumping_years_fires_everything_due_exactly_once() {
    let (clock, timer) = manual();
    let ds: Vec<_> = (1..=100u64)
        .map(|i| timer.timeout_source(Parent::Root, Duration::from_secs(i * 3600 * 24)))
        .collect();
    clock.advance(Duration::from_secs(5 * 365 * 24 * 3600));
    let mut fired = 0;
    loop {
        let n = timer.turn();
        if n == 0 {
            break;
        }
        fired += n;
    }
    assert_eq!(fired, 100);
    assert!(
        ds.iter()
            .all(|d| d.reason() == Some(Reason::DeadlineExceeded))
    );
}

#[test]
fn dropping_the_timer_cancels_pending_deadlines_with_parent_gone() {
    let (_clock, timer) = manual();
    let d = timer.timeout_source(Parent::Root, Duration::from_secs(60));
    let token = d.token();
    drop(timer);
    assert_eq!(token.reason(), Some(Reason::ParentGone));
    drop(d);
}

#[test]
fn pinned_deadline_on_a_manual_timer() {
    let (clock, timer) = manual();
    let root = Node::new();
    let at = timer.now() + 2 * MS;
    {
        let mut d = pin!(Deadline::with_timer(&timer, Some(&root), at));
        let node = d.as_mut().link();
        assert_eq!(node.deadline(), Some(at));
        clock.advance(2 * MS);
        assert_eq!(timer.turn(), 1);
        assert_eq!(node.reason(), Some(Reason::DeadlineExceeded));
    }
    {
        // Dropped before firing: nothing fires later.
        let mut d = pin!(Deadline::with_timer(
            &timer,
            Some(&root),
            timer.now() + 2 * MS
        ));
        let _ = d.as_mut().link();
    }
    clock.advance(2 * MS);
    assert_eq!(timer.turn(), 0);
    assert!(!root.is_cancelled());
}

#[test]
fn static_parent_and_parent_cancelled_first() {
    static ROOT: Node = Node::new();
    let (_clock, timer) = manual();
    let d = timer.timeout_source(&ROOT, 5 * MS);
    let parent = CancelSource::new();
    parent.cancel_with(Reason::Code(9));
    let born = timer.timeout_source(&parent, 5 * MS);
    assert_eq!(born.reason(), Some(Reason::Code(9)));
    drop(d);
}

#[test]
fn real_timer_fires_on_its_own_and_never_early() {
    let start = Instant::now();
    let parent = CancelSource::new();
    let d = cutoff_timer::with_timeout(&parent, 5 * MS);
    let deadline = d.deadline().expect("has a deadline");
    assert!(deadline >= start + 5 * MS);
    assert_eq!(d.wait(), Reason::DeadlineExceeded);
    assert!(Instant::now() >= deadline);
}

/// "Never early" over 100k real deadlines: each records, in its callback, the time at which
/// it was cancelled; none may be before its deadline.
#[test]
fn never_early_over_100k_real_deadlines() {
    const N: usize = 100_000;
    let timer = Timer::new();
    let early = Arc::new(AtomicUsize::new(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let mut keep = Vec::with_capacity(N);
    for i in 0..N {
        let d = timer.timeout_source(
            Parent::Root,
            Duration::from_micros(10 + (i as u64 % 20_000)),
        );
        let at = d.deadline().expect("deadline");
        let (e, f) = (early.clone(), fired.clone());
        let reg = d.on_cancel(move |_| {
            if Instant::now() < at {
                e.fetch_add(1, Ordering::Relaxed);
            }
            f.fetch_add(1, Ordering::Relaxed);
        });
        keep.push((d, reg));
    }
    let limit = Instant::now() + Duration::from_secs(30);
    while fired.load(Ordering::Relaxed) < N && Instant::now() < limit {
        std::thread::sleep(5 * MS);
    }
    assert_eq!(fired.load(Ordering::Relaxed), N);
    assert_eq!(early.load(Ordering::Relaxed), 0);
}

#[test]
fn timeout_helper() {
    futures::executor::block_on(async {
        let ok = cutoff_timer::timeout(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(ok, Ok(7));
        let late = cutoff_timer::timeout(MS, std::future::pending::<()>()).await;
        assert_eq!(late, Err(cutoff_timer::Elapsed));
    });
}

#[test]
fn manual_clock_is_monotonic_for_the_timer() {
    let (clock, timer) = manual();
    let t0 = timer.now();
    clock.advance(MS);
    assert!(timer.now() > t0);
    let _ = clock.now();
}
