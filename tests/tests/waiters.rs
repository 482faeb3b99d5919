//! Rule 6: waiting. `cancelled()` (intrusive, any number of waiters, each woken exactly once,
//! unlink on drop, cancel-safe), `cancelled_owned()`, `run_until_cancelled`, blocking `wait()`
//! and `wait_timeout()`.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use cutoff::{CancelSource, Cancelled, ChildNode, Node, OwnedCancellation, Reason};
use cutoff_tests::{CountingWaker, must_finish, poll_once};
use futures::executor::block_on;

#[test]
fn cancelled_future_completes_with_the_reason() {
    let node = Node::new();
    let w = CountingWaker::new();
    let mut f = pin!(node.cancelled());
    assert_eq!(poll_once(f.as_mut(), &w.waker()), Poll::Pending);
    assert_eq!(poll_once(f.as_mut(), &w.waker()), Poll::Pending);
    assert_eq!(w.count(), 0);
    node.cancel_with(Reason::Code(12));
    assert_eq!(w.count(), 1);
    assert_eq!(
        poll_once(f.as_mut(), &w.waker()),
        Poll::Ready(Reason::Code(12))
    );
    // Polling again after completion is harmless and does not wake.
    assert_eq!(
        poll_once(f.as_mut(), &w.waker()),
        Poll::Ready(Reason::Code(12))
    );
    assert_eq!(w.count(), 1);
}

#[test]
fn cancelled_future_of_cancelled_node_is_ready_at_once() {
    let node = Node::new();
    node.cancel_with(Reason::Shutdown);
    let w = CountingWaker::new();
    let mut f = pin!(node.cancelled());
    assert_eq!(
        poll_once(f.as_mut(), &w.waker()),
        Poll::Ready(Reason::Shutdown)
    );
    assert_eq!(w.count(), 0);
    assert_eq!(block_on(node.cancelled()), Reason::Shutdown);
}

#[test]
fn cancelled_future_of_a_descendant_inherits_the_reason() {
    static ROOT: Node = Node::new();
    let heap = CancelSource::child_of(&ROOT);
    let mut pinned = pin!(ChildNode::new(&heap));
    let pinned = pinned.as_mut().link();
    let w = CountingWaker::new();
    let mut f1 = pin!(heap.cancelled());
    let mut f2 = pin!(pinned.cancelled());
    assert!(poll_once(f1.as_mut(), &w.waker()).is_pending());
    assert!(poll_once(f2.as_mut(), &w.waker()).is_pending());
    ROOT.cancel_with(Reason::Code(3));
    assert_eq!(w.count(), 2);
    assert_eq!(
        poll_once(f1.as_mut(), &w.waker()),
        Poll::Ready(Reason::Code(3))
    );
    assert_eq!(
        poll_once(f2.as_mut(), &w.waker()),
        Poll::Ready(Reason::Code(3))
    );
}

#[test]
fn many_waiters_each_woken_exactly_once() {
    const N: usize = if cfg!(miri) { 32 } else { 1_000 }; // fewer under Miri
    let node = CancelSource::new();
    let wakers: Vec<Arc<CountingWaker>> = (0..N).map(|_| CountingWaker::new()).collect();
    let shared = CountingWaker::new();
    let mut futs: Vec<Pin<Box<_>>> = (0..N).map(|_| Box::pin(node.cancelled())).collect();
    for (f, w) in futs.iter_mut().zip(&wakers) {
        assert!(poll_once(f.as_mut(), &w.waker()).is_pending());
        // Polling again (same or other waker) does not add a second wake-up.
        assert!(poll_once(f.as_mut(), &w.waker()).is_pending());
    }
    let mut shared_futs: Vec<Pin<Box<_>>> = (0..N).map(|_| Box::pin(node.cancelled())).collect();
    for f in &mut shared_futs {
        assert!(poll_once(f.as_mut(), &shared.waker()).is_pending());
    }
    assert!(node.cancel());
    assert!(!node.cancel());
    assert!(
        wakers.iter().all(|w| w.count() == 1),
        "each woken exactly once"
    );
    assert_eq!(shared.count(), N);
    for (f, w) in futs.iter_mut().zip(&wakers) {
        assert_eq!(
            poll_once(f.as_mut(), &w.waker()),
            Poll::Ready(Reason::Requested)
        );
    }
    drop(futs);
    assert!(wakers.iter().all(|w| w.count() == 1));
}

#[test]
fn only_the_latest_waker_is_woken() {
    let node = Node::new();
    let old = CountingWaker::new();
    let new = CountingWaker::new();
    let mut f = pin!(node.cancelled());
    assert!(poll_once(f.as_mut(), &old.waker()).is_pending());
    assert!(poll_once(f.as_mut(), &new.waker()).is_pending());
    node.cancel();
    assert_eq!(old.count(), 0);
    assert_eq!(new.count(), 1);
}

#[test]
fn dropping_a_pending_future_unlinks_it() {
    let node = CancelSource::new();
    let dropped = CountingWaker::new();
    let kept = CountingWaker::new();
    let mut k = Box::pin(node.cancelled());
    assert!(poll_once(k.as_mut(), &kept.waker()).is_pending());
    let rounds = if cfg!(miri) { 20 } else { 1_000 }; // fewer under Miri
    for _ in 0..rounds {
        let mut f = Box::pin(node.cancelled());
        assert!(poll_once(f.as_mut(), &dropped.waker()).is_pending());
        drop(f);
        let mut o = Box::pin(node.token().cancelled_owned());
        assert!(poll_once(o.as_mut(), &dropped.waker()).is_pending());
        drop(o);
    }
    node.cancel();
    assert_eq!(dropped.count(), 0, "dropped futures are never woken");
    assert_eq!(kept.count(), 1);
    // Never-polled futures are fine to drop too.
    drop(node.cancelled());
}

/// Cancel safety: a `cancelled()` that loses a race is dropped; nothing is lost, and a new one
/// sees the cancellation.
#[test]
fn cancelled_is_cancel_safe_in_select() {
    use futures::future::{Either, ready, select};
    let node = Node::new();
    let rounds = if cfg!(miri) { 20 } else { 100 }; // fewer under Miri
    for i in 0..rounds {
        match block_on(select(Box::pin(node.cancelled()), ready(i))) {
            Either::Right((v, _lost)) => assert_eq!(v, i),
            Either::Left(_) => panic!("not cancelled yet"),
        }
    }
    node.cancel_with(Reason::Code(1));
    assert_eq!(block_on(node.cancelled()), Reason::Code(1));
    match block_on(select(
        Box::pin(node.cancelled()),
        futures::future::pending::<()>(),
    )) {
        Either::Left((r, _)) => assert_eq!(r, Reason::Code(1)),
        Either::Right(_) => unreachable!(),
    }
}

#[test]
fn cancelled_owned_is_static_and_works_on_another_thread() {
    fn assert_static_send<F: Future + Send + 'static>(f: F) -> F {
        f
    }
    let root = CancelSource::new();
    let child = root.child();
    let futs: Vec<OwnedCancellation> = (0..8)
        .map(|_| assert_static_send(child.token().cancelled_owned()))
        .collect();
    drop(child); // the owned futures keep the node alive
    let started = Arc::new(Barrier::new(futs.len() + 1));
    let threads: Vec<_> = futs
        .into_iter()
        .map(|f| {
            let started = started.clone();
            thread::spawn(move || {
                started.wait();
                block_on(f)
            })
        })
        .collect();
    started.wait();
    root.cancel_with(Reason::Code(99));
    for t in threads {
        assert_eq!(t.join().unwrap(), Reason::Code(99));
    }
    assert!(
        !root.has_children(),
        "the child node went away with its last future"
    );
}

#[test]
fn run_until_cancelled_ready_future_wins_even_if_cancelled() {
    let node = Node::new();
    node.cancel_with(Reason::Code(2));
    assert_eq!(block_on(node.run_until_cancelled(async { 5 })), Ok(5));
    // A future that needs a couple of polls still loses to an already-cancelled node.
    let r = block_on(node.run_until_cancelled(futures::future::pending::<()>()));
    assert_eq!(r, Err(Cancelled::new(Reason::Code(2))));
}

#[test]
fn run_until_cancelled_not_cancelled_returns_ok() {
    let node = CancelSource::new();
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let t = thread::spawn(move || tx.send(7).unwrap());
    assert_eq!(block_on(node.run_until_cancelled(rx)), Ok(Ok(7)));
    t.join().unwrap();
    assert!(!node.is_cancelled());
}

#[test]
fn run_until_cancelled_pending_future_gets_cancelled() {
    let node = Arc::new(CancelSource::new());
    let n2 = node.clone();
    let t =
        thread::spawn(move || block_on(n2.run_until_cancelled(futures::future::pending::<u8>())));
    node.cancel_with(Reason::DeadlineExceeded);
    let res = t.join().unwrap();
    let err = res.unwrap_err();
    assert_eq!(err.reason(), &Reason::DeadlineExceeded);
}

#[test]
fn run_until_cancelled_polls_inner_first_and_wakes_on_cancel() {
    let node = Node::new();
    let w = CountingWaker::new();
    let polls = Mutex::new(0);
    let inner = futures::future::poll_fn(|_| {
        *polls.lock().unwrap() += 1;
        Poll::<()>::Pending
    });
    let mut f = pin!(node.run_until_cancelled(inner));
    assert!(poll_once(f.as_mut(), &w.waker()).is_pending());
    node.cancel();
    assert_eq!(w.count(), 1);
    assert!(matches!(
        poll_once(f.as_mut(), &w.waker()),
        Poll::Ready(Err(_))
    ));
    assert_eq!(*polls.lock().unwrap(), 2);
}

#[test]
fn blocking_wait_from_another_thread() {
    let root = CancelSource::new();
    let tok = root.child().token();
    let started = Arc::new(Barrier::new(2));
    let s2 = started.clone();
    let t = thread::spawn(move || {
        s2.wait();
        tok.wait()
    });
    started.wait();
    root.cancel_with(Reason::Code(8));
    assert_eq!(t.join().unwrap(), Reason::Code(8));
    // Already cancelled: returns at once.
    assert_eq!(root.wait(), Reason::Code(8));
}

#[test]
fn wait_timeout_times_out_or_returns_reason() {
    let node = Arc::new(CancelSource::new());
    assert_eq!(node.wait_timeout(Duration::from_millis(10)), None);
    assert_eq!(node.wait_timeout(Duration::ZERO), None);
    assert!(!node.is_cancelled());
    let n2 = node.clone();
    let t = thread::spawn(move || n2.wait_timeout(Duration::from_secs(600)));
    thread::sleep(Duration::from_millis(10));
    node.cancel_with(Reason::Shutdown);
    assert_eq!(t.join().unwrap(), Some(Reason::Shutdown));
    let n3 = node.clone();
    let huge = thread::spawn(move || n3.wait_timeout(Duration::MAX));
    assert_eq!(huge.join().unwrap(), Some(Reason::Shutdown));
    assert_eq!(node.wait_timeout(Duration::ZERO), Some(Reason::Shutdown));
}

/// Many threads block (async and sync) on one node and its children; one cancel releases all.
#[test]
fn many_blocked_threads_all_released() {
    const ROUNDS: usize = if cfg!(miri) { 2 } else { 20 }; // fewer under Miri
    must_finish("all waiters released", || {
        for _ in 0..ROUNDS {
            let root = CancelSource::new();
            let go = Arc::new(Barrier::new(9));
            let mut ts = Vec::new();
            for i in 0..8u32 {
                let tok = if i.is_multiple_of(2) {
                    root.token()
                } else {
                    root.child().token()
                };
                let go = go.clone();
                ts.push(thread::spawn(move || {
                    go.wait();
                    if i % 4 < 2 {
                        tok.wait()
                    } else {
                        block_on(tok.cancelled())
                    }
                }));
            }
            go.wait();
            root.cancel_with(Reason::Code(1));
            for t in ts {
                assert_eq!(t.join().unwrap(), Reason::Code(1));
            }
        }
    });
}

/// Racing cancellers (the node itself, twice, and its parent): still exactly one wake each.
#[test]
fn concurrent_cancels_wake_each_waiter_once() {
    let rounds = if cfg!(miri) { 6 } else { 300 }; // fewer under Miri
    for _ in 0..rounds {
        let root = Arc::new(CancelSource::new());
        let child = Arc::new(root.child());
        let ws: Vec<_> = (0..16).map(|_| CountingWaker::new()).collect();
        let mut fs: Vec<_> = (0..16).map(|_| Box::pin(child.cancelled())).collect();
        for (f, w) in fs.iter_mut().zip(&ws) {
            assert!(poll_once(f.as_mut(), &w.waker()).is_pending());
        }
        let go = Arc::new(Barrier::new(3));
        let a = {
            let (c, go) = (child.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                c.cancel()
            })
        };
        let b = {
            let (c, go) = (child.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                c.cancel()
            })
        };
        go.wait();
        let r = root.cancel();
        let wins = [a.join().unwrap(), b.join().unwrap()];
        assert!(r);
        assert!(wins.iter().filter(|w| **w).count() <= 1);
        assert!(ws.iter().all(|w| w.count() == 1));
    }
}

/// A waker whose `wake` drops the last handle of the node being walked: the wake-up owns the
/// task, the task owns an `OwnedCancellation`, and that future's token is the node's last
/// handle (a task whose executor already let go of it, woken one last time).
#[test]
fn waker_that_drops_the_last_handle_of_its_node() {
    struct Task {
        fut: Mutex<Option<Pin<Box<OwnedCancellation>>>>,
        woken: Arc<Mutex<bool>>,
    }
    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            *self.woken.lock().unwrap() = true;
            // `self` may be the last reference: dropping it drops the future and its token.
        }
    }
    must_finish("waker dropping its node's last handle", || {
        let root = CancelSource::new();
        let child = root.child();
        let woken = Arc::new(Mutex::new(false));
        let task = Arc::new(Task {
            fut: Mutex::new(None),
            woken: woken.clone(),
        });
        let mut fut = Box::pin(child.token().cancelled_owned());
        drop(child);
        assert!(poll_once(fut.as_mut(), &Waker::from(task.clone())).is_pending());
        *task.fut.lock().unwrap() = Some(fut);
        drop(task); // only the registered waker keeps the task (and so the node) alive
        assert!(root.cancel());
        assert!(*woken.lock().unwrap());
        assert!(
            !root.has_children(),
            "the child node was freed and unlinked"
        );
    });
}

/// The same through a plain borrowed future whose waker drops the last *source* handle.
#[test]
fn waker_that_drops_the_last_source_of_its_node() {
    struct Holder(Mutex<Option<CancelSource>>);
    impl Wake for Holder {
        fn wake(self: Arc<Self>) {
            drop(self.0.lock().unwrap().take());
        }
    }
    must_finish("waker dropping the last source", || {
        let root = CancelSource::new();
        let holder = Arc::new(Holder(Mutex::new(Some(root.child()))));
        let tok = holder.0.lock().unwrap().as_ref().unwrap().token();
        let mut f = Box::pin(tok.cancelled_owned());
        drop(tok);
        assert!(poll_once(f.as_mut(), &Waker::from(holder.clone())).is_pending());
        drop(holder);
        // Now: the child is owned by the future's token and the holder (owned by the waker).
        assert!(root.cancel());
        assert_eq!(
            poll_once(f.as_mut(), Waker::noop()),
            Poll::Ready(Reason::Requested)
        );
        drop(f);
        assert!(!root.has_children());
    });
}
