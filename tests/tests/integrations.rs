//! Issue 7, items 1, 2 and 4: the tokio-util bridge (both ways), the `Future`/`Stream`
//! combinators and the `jthread`-like thread helper, through the public API only.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use cutoff::future_ext::{FutureCancelExt, StreamCancelExt};
use cutoff::tokio_bridge::{link_from_tokio, link_from_tokio_with, link_to_tokio};
use cutoff::{CancelSource, CancelToken, ChildNode, Node, Reason, Trigger, feed};
use cutoff_tests::{CountingWaker, ThreadAllocCounter, allocs_in, must_finish, poll_once};
use futures::executor::block_on;
use futures::stream::{FusedStream, StreamExt};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: ThreadAllocCounter = ThreadAllocCounter;

// ---- tokio-util -> cutoff ---------------------------------------------------------------

#[test]
fn from_tokio_cancels_the_node_with_requested() {
    let tokio = CancellationToken::new();
    let node = CancelSource::new();
    let child = node.child();
    let link = link_from_tokio(&tokio, &node);
    assert!(link.is_linked());
    assert!(!node.is_cancelled());
    tokio.cancel();
    assert_eq!(node.reason(), Some(Reason::Requested));
    assert_eq!(
        child.reason(),
        Some(Reason::Requested),
        "the subtree follows"
    );
    assert!(!link.is_linked());
}

#[test]
fn from_tokio_with_a_chosen_reason() {
    let tokio = CancellationToken::new();
    let node = CancelSource::new();
    let _link = link_from_tokio_with(&tokio, &node, Reason::Shutdown);
    tokio.cancel();
    assert_eq!(node.reason(), Some(Reason::Shutdown));
}

#[test]
fn from_tokio_follows_a_tokio_child_token() {
    let parent = CancellationToken::new();
    let tokio = parent.child_token();
    let node = CancelSource::new();
    let _link = link_from_tokio(&tokio, &node);
    parent.cancel();
    assert!(node.is_cancelled());
}

#[test]
fn from_tokio_already_cancelled_token_cancels_at_link_time() {
    let tokio = CancellationToken::new();
    tokio.cancel();
    let node = CancelSource::new();
    let link = link_from_tokio_with(&tokio, &node, Reason::Code(9));
    assert_eq!(
        node.reason(),
        Some(Reason::Code(9)),
        "cancelled before the call returned"
    );
    assert!(!link.is_linked());
    drop(link); // no-op
    assert_eq!(node.reason(), Some(Reason::Code(9)));
}

#[test]
fn from_tokio_already_cancelled_node_registers_nothing() {
    let tokio = CancellationToken::new();
    let node = CancelSource::new();
    node.cancel_with(Reason::Code(1));
    let link = link_from_tokio(&tokio, &node);
    assert!(!link.is_linked());
    assert!(!tokio.is_cancelled(), "the tokio side is not touched");
    tokio.cancel();
    assert_eq!(node.reason(), Some(Reason::Code(1)), "first reason stays");
}

#[test]
fn from_tokio_dropping_the_guard_unlinks_and_releases_the_node() {
    let tokio = CancellationToken::new();
    let parent = CancelSource::new();
    let node = parent.child();
    let link = link_from_tokio(&tokio, &node);
    drop(link);
    tokio.cancel();
    assert!(!node.is_cancelled(), "an unlinked link must not fire");
    drop(node);
    assert!(
        !parent.has_children(),
        "the link kept no handle on the node"
    );
}

#[test]
fn from_tokio_fired_link_releases_the_node_before_its_guard_drops() {
    let tokio = CancellationToken::new();
    let parent = CancelSource::new();
    let node = parent.child();
    let link = link_from_tokio(&tokio, &node);
    tokio.cancel();
    drop(node);
    assert!(!parent.has_children());
    drop(link);
}

#[test]
fn from_tokio_many_links_on_one_token() {
    let tokio = CancellationToken::new();
    let nodes: Vec<CancelSource> = (0..100).map(|_| CancelSource::new()).collect();
    let links: Vec<_> = nodes.iter().map(|n| link_from_tokio(&tokio, n)).collect();
    // Unlink every other one.
    let kept: Vec<_> = links
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| (i % 2 == 0).then_some(l))
        .collect();
    tokio.cancel();
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n.is_cancelled(), i % 2 == 0, "node {i}");
    }
    drop(kept);
}

#[test]
fn from_tokio_cancel_from_another_thread_wakes_a_blocked_waiter() {
    must_finish("tokio cancel wakes a cutoff waiter", || {
        let tokio = CancellationToken::new();
        let node = CancelSource::new();
        let _link = link_from_tokio_with(&tokio, &node, Reason::Shutdown);
        let t = tokio.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            t.cancel();
        });
        assert_eq!(node.wait(), Reason::Shutdown);
        canceller.join().unwrap();
    });
}

#[test]
fn from_tokio_wakes_an_async_waiter_in_a_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tokio = CancellationToken::new();
        let node = CancelSource::new();
        let _link = link_from_tokio(&tokio, &node);
        let token = node.token();
        let waiter = tokio::spawn(async move { token.cancelled().await });
        tokio::task::yield_now().await;
        tokio.cancel();
        assert_eq!(waiter.await.unwrap(), Reason::Requested);
    });
}

#[test]
fn tokio_token_is_a_foreign_source_for_static_nodes() {
    static ROOT: Node = Node::new();
    let tokio = CancellationToken::new();
    let fed = feed(&tokio, Trigger::from_static(&ROOT));
    assert!(!fed.was_cancelled_at_link());
    tokio.cancel();
    assert_eq!(ROOT.reason(), Some(Reason::Requested));

    // Already cancelled: `feed` fires at once and registers nothing.
    let node = CancelSource::new();
    let fed = feed(&tokio, Trigger::from_source(&node));
    assert!(fed.was_cancelled_at_link());
    assert!(node.is_cancelled());
}

// ---- cutoff -> tokio-util ---------------------------------------------------------------

#[test]
fn to_tokio_cancels_the_token() {
    let root = CancelSource::new();
    let node = root.child();
    let tokio = CancellationToken::new();
    let tokio_child = tokio.child_token();
    let link = link_to_tokio(&node.token(), tokio.clone());
    assert!(link.is_linked());
    root.cancel_with(Reason::Code(4));
    assert!(tokio.is_cancelled());
    assert!(tokio_child.is_cancelled());
    assert!(!link.is_linked());
    assert_eq!(
        node.reason(),
        Some(Reason::Code(4)),
        "the reason stays on the cutoff side"
    );
}

#[test]
fn to_tokio_already_cancelled_node_cancels_at_link_time() {
    let node = CancelSource::new();
    node.cancel();
    let tokio = CancellationToken::new();
    let link = link_to_tokio(&node.token(), tokio.clone());
    assert!(tokio.is_cancelled(), "cancelled before the call returned");
    assert!(!link.is_linked());
}

#[test]
fn to_tokio_already_cancelled_token_registers_nothing() {
    let node = CancelSource::new();
    let tokio = CancellationToken::new();
    tokio.cancel();
    let link = link_to_tokio(&node.token(), tokio);
    assert!(!link.is_linked());
    assert!(!node.is_cancelled(), "the cutoff side is not touched");
}

#[test]
fn to_tokio_dropping_the_guard_unlinks() {
    let node = CancelSource::new();
    let tokio = CancellationToken::new();
    let link = link_to_tokio(&node.token(), tokio.clone());
    drop(link);
    node.cancel();
    assert!(!tokio.is_cancelled());
}

#[test]
fn to_tokio_wakes_a_tokio_waiter_in_a_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = CancelSource::new();
        let tokio = CancellationToken::new();
        let _link = link_to_tokio(&node.token(), tokio.clone());
        let waiter = tokio::spawn(async move { tokio.cancelled().await });
        tokio::task::yield_now().await;
        let canceller = std::thread::spawn(move || node.cancel());
        waiter.await.unwrap();
        canceller.join().unwrap();
    });
}

#[test]
fn both_ways_between_one_pair_do_not_loop_or_deadlock() {
    must_finish("a two-way bridge cancelled from either side", || {
        // From the tokio side.
        let tokio = CancellationToken::new();
        let node = CancelSource::new();
        let _from = link_from_tokio_with(&tokio, &node, Reason::Shutdown);
        let _to = link_to_tokio(&node.token(), tokio.clone());
        tokio.cancel();
        assert_eq!(node.reason(), Some(Reason::Shutdown));

        // From the cutoff side.
        let tokio = CancellationToken::new();
        let node = CancelSource::new();
        let _from = link_from_tokio(&tokio, &node);
        let _to = link_to_tokio(&node.token(), tokio.clone());
        node.cancel_with(Reason::Code(5));
        assert!(tokio.is_cancelled());
        assert_eq!(
            node.reason(),
            Some(Reason::Code(5)),
            "the cutoff reason wins"
        );

        // Both at once, from two threads.
        for _ in 0..200 {
            let tokio = CancellationToken::new();
            let node = CancelSource::new();
            let _from = link_from_tokio(&tokio, &node);
            let _to = link_to_tokio(&node.token(), tokio.clone());
            let t = tokio.clone();
            let a = std::thread::spawn(move || t.cancel());
            node.cancel_with(Reason::Code(6));
            a.join().unwrap();
            assert!(tokio.is_cancelled());
            assert!(node.is_cancelled());
        }
    });
}

// ---- with_cancel ------------------------------------------------------------------------

#[test]
fn with_cancel_passes_a_ready_output() {
    let node = CancelSource::new();
    assert_eq!(block_on(async { 3 }.with_cancel(&node)), Ok(3));
    // Any node face works: token, `Node`, linked `ChildNode`.
    assert_eq!(block_on(async { 4 }.with_cancel(&node.token())), Ok(4));
    let root = Node::new();
    assert_eq!(block_on(async { 5 }.with_cancel(&root)), Ok(5));
    let mut child = pin!(ChildNode::new(&root));
    let child = child.as_mut().link();
    assert_eq!(block_on(async { 6 }.with_cancel(child)), Ok(6));
}

#[test]
fn with_cancel_on_a_cancelled_node_never_polls_the_future() {
    let node = CancelSource::new();
    node.cancel_with(Reason::Code(2));
    let polled = AtomicBool::new(false);
    let out = block_on(async { polled.store(true, Ordering::Relaxed) }.with_cancel(&node));
    assert_eq!(out.unwrap_err().reason(), &Reason::Code(2));
    assert!(!polled.load(Ordering::Relaxed));
}

#[test]
fn with_cancel_resolves_when_cancelled_while_pending() {
    let node = CancelSource::new();
    let counter = CountingWaker::new();
    let waker = counter.waker();
    let mut fut = pin!(std::future::pending::<u8>().with_cancel(&node));
    assert!(poll_once(fut.as_mut(), &waker).is_pending());
    node.cancel_with(Reason::DeadlineExceeded);
    assert_eq!(counter.count(), 1, "woken once");
    match poll_once(fut.as_mut(), &waker) {
        Poll::Ready(Err(c)) => assert_eq!(c.into_reason(), Reason::DeadlineExceeded),
        other => panic!("expected Err(Cancelled), got {other:?}"),
    }
}

#[test]
fn with_cancel_is_cancel_safe_the_inner_future_survives() {
    let node = CancelSource::new();
    let (tx, mut rx) = futures::channel::oneshot::channel::<u32>();
    let waker = Waker::noop();
    {
        let mut fut = pin!((&mut rx).with_cancel(&node));
        assert!(poll_once(fut.as_mut(), waker).is_pending());
        node.cancel();
        assert!(matches!(
            poll_once(fut.as_mut(), waker),
            Poll::Ready(Err(_))
        ));
    }
    // The receiver was only borrowed: the value sent later is not lost.
    tx.send(77).unwrap();
    assert_eq!(block_on(rx), Ok(77));
}

#[test]
fn with_cancel_dropped_while_pending_unlinks_its_waiter() {
    let node = CancelSource::new();
    let counter = CountingWaker::new();
    let waker = counter.waker();
    {
        let mut fut = pin!(std::future::pending::<()>().with_cancel(&node));
        assert!(poll_once(fut.as_mut(), &waker).is_pending());
    }
    node.cancel();
    assert_eq!(counter.count(), 0, "a dropped combinator is never woken");
}

#[test]
fn with_cancel_stops_a_loop_over_always_ready_futures() {
    let node = CancelSource::new();
    let mut rounds = 0u32;
    let end = block_on(async {
        loop {
            match async {}.with_cancel(&node).await {
                Ok(()) => {
                    rounds += 1;
                    if rounds == 10 {
                        node.cancel_with(Reason::Code(10));
                    }
                }
                Err(c) => break c,
            }
        }
    });
    assert_eq!(rounds, 10);
    assert_eq!(end.into_reason(), Reason::Code(10));
}

#[test]
fn with_cancel_allocates_nothing() {
    let n = allocs_in(|| {
        let root = Node::new();
        let mut child = pin!(ChildNode::new(&root));
        let child = child.as_mut().link();
        let waker = Waker::noop();
        // Ready at once.
        let mut ready = pin!(async { 1 }.with_cancel(child));
        assert_eq!(poll_once(ready.as_mut(), waker), Poll::Ready(Ok(1)));
        // Pending, then cancelled.
        let mut pending = pin!(std::future::pending::<()>().with_cancel(child));
        assert!(poll_once(pending.as_mut(), waker).is_pending());
        root.cancel_with(Reason::Code(1));
        assert!(matches!(
            poll_once(pending.as_mut(), waker),
            Poll::Ready(Err(_))
        ));
    });
    assert_eq!(n, 0);
}

#[test]
fn take_until_cancelled_allocates_nothing() {
    let n = allocs_in(|| {
        let root = Node::new();
        let waker = Waker::noop();
        let mut s = pin!(futures::stream::iter(0..3).take_until_cancelled(&root));
        let mut next = s.next();
        assert_eq!(
            poll_once(std::pin::Pin::new(&mut next), waker),
            Poll::Ready(Some(0))
        );
        let mut s = pin!(futures::stream::pending::<u8>().take_until_cancelled(&root));
        let mut next = s.next();
        assert!(poll_once(std::pin::Pin::new(&mut next), waker).is_pending());
        root.cancel();
        assert_eq!(
            poll_once(std::pin::Pin::new(&mut next), waker),
            Poll::Ready(None)
        );
    });
    assert_eq!(n, 0);
}

#[test]
fn with_cancel_in_tokio_with_a_cutoff_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let request = CancelSource::new();
        let step = cutoff_timer::with_timeout(&request, Duration::from_millis(10));
        let out = tokio::time::sleep(Duration::from_secs(30))
            .with_cancel(&step)
            .await;
        assert_eq!(out.unwrap_err().into_reason(), Reason::DeadlineExceeded);
        assert!(!request.is_cancelled());
    });
}

// ---- take_until_cancelled ---------------------------------------------------------------

#[test]
fn stream_ends_at_cancellation_mid_stream() {
    let node = CancelSource::new();
    let (tx, rx) = futures::channel::mpsc::unbounded::<u32>();
    for i in 0..5 {
        tx.unbounded_send(i).unwrap();
    }
    let mut s = pin!(rx.take_until_cancelled(&node));
    block_on(async {
        assert_eq!(s.next().await, Some(0));
        assert_eq!(s.next().await, Some(1));
        node.cancel_with(Reason::Shutdown);
        assert_eq!(s.next().await, None);
        assert_eq!(s.next().await, None, "stays ended");
    });
    assert!(s.is_terminated());
    assert_eq!(s.cancelled_with(), Some(&Reason::Shutdown));
    // The items not taken are still in the inner stream.
    let rest: Vec<u32> = block_on(async {
        drop(tx);
        s.as_mut().get_pin_mut().collect().await
    });
    assert_eq!(rest, [2, 3, 4]);
}

#[test]
fn stream_on_a_cancelled_node_yields_nothing() {
    let node = CancelSource::new();
    node.cancel();
    let mut s = pin!(futures::stream::iter(0..).take_until_cancelled(&node));
    assert_eq!(block_on(s.next()), None);
    assert_eq!(s.cancelled_with(), Some(&Reason::Requested));
}

#[test]
fn stream_that_ends_by_itself_is_not_cancelled() {
    let node = CancelSource::new();
    let s = futures::stream::iter(0..3).take_until_cancelled(&node);
    let mut s = pin!(s);
    let all: Vec<i32> = block_on(s.as_mut().collect());
    assert_eq!(all, [0, 1, 2]);
    assert!(s.is_terminated());
    assert_eq!(s.cancelled_with(), None);
}

#[test]
fn pending_stream_is_woken_by_cancellation() {
    let node = CancelSource::new();
    let counter = CountingWaker::new();
    let waker = counter.waker();
    let mut s = pin!(futures::stream::pending::<u8>().take_until_cancelled(&node));
    let mut next = s.next();
    assert!(poll_once(std::pin::Pin::new(&mut next), &waker).is_pending());
    node.cancel_with(Reason::Code(8));
    assert_eq!(counter.count(), 1);
    assert_eq!(
        poll_once(std::pin::Pin::new(&mut next), &waker),
        Poll::Ready(None)
    );
    drop(next);
    assert_eq!(s.cancelled_with(), Some(&Reason::Code(8)));
}

#[test]
fn stream_in_tokio_ends_when_a_tokio_token_cancels() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tokio = CancellationToken::new();
        let node = CancelSource::new();
        let _link = link_from_tokio_with(&tokio, &node, Reason::Shutdown);
        let ticks = futures::stream::unfold(0u32, |i| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Some((i, i + 1))
        });
        let t = tokio.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            t.cancel();
        });
        let mut s = pin!(ticks.take_until_cancelled(&node));
        let mut n = 0;
        while s.next().await.is_some() {
            n += 1;
        }
        assert!(n > 0);
        assert_eq!(s.cancelled_with(), Some(&Reason::Shutdown));
    });
}

// ---- thread helper ----------------------------------------------------------------------

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn thread_drop_cancels_and_joins() {
    must_finish("jthread drop", || {
        let exited = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(None));
        let (e, s) = (Arc::clone(&exited), Arc::clone(&seen));
        let h = cutoff::thread::spawn(move |token: CancelToken| {
            let r = token.wait();
            *s.lock().unwrap() = Some(r);
            e.store(true, Ordering::SeqCst);
        });
        let token = h.token();
        drop(h);
        assert!(
            exited.load(Ordering::SeqCst),
            "joined: the thread has exited"
        );
        assert_eq!(token.reason(), Some(Reason::Requested));
        assert_eq!(*seen.lock().unwrap(), Some(Reason::Requested));
    });
}

#[test]
fn thread_join_does_not_cancel() {
    let h = cutoff::thread::spawn(|token: CancelToken| {
        std::thread::sleep(Duration::from_millis(2));
        token
    });
    let token = h.join();
    assert!(
        !token.is_cancelled(),
        "join alone never cancels (jthread::join)"
    );
}

#[test]
fn thread_cancel_and_join_returns_the_result() {
    must_finish("cancel_and_join", || {
        let h = cutoff::thread::spawn(|token: CancelToken| {
            let mut steps = 0u64;
            while !token.is_cancelled() {
                steps += 1;
                std::thread::yield_now();
            }
            (steps, token.reason())
        });
        h.cancel_with(Reason::Code(3)); // first reason wins over cancel_and_join's
        let (_, reason) = h.cancel_and_join();
        assert_eq!(reason, Some(Reason::Code(3)));
    });
}

#[test]
fn thread_panic_propagates_on_join() {
    let h = cutoff::thread::spawn(|_token| -> u32 { panic!("boom in worker") });
    let err = catch_unwind(AssertUnwindSafe(|| h.join())).unwrap_err();
    assert_eq!(payload_text(&*err), "boom in worker");

    let h = cutoff::thread::spawn(|_token| -> u32 { panic!("boom again") });
    let err = h.try_join().unwrap_err();
    assert_eq!(payload_text(&*err), "boom again");
}

#[test]
fn thread_panic_is_resumed_by_drop() {
    let h = cutoff::thread::spawn(|token: CancelToken| {
        token.wait();
        panic!("boom on cancel");
    });
    let err = catch_unwind(AssertUnwindSafe(move || drop(h))).unwrap_err();
    assert_eq!(payload_text(&*err), "boom on cancel");
}

#[test]
fn thread_drop_while_panicking_drops_the_payload_instead_of_aborting() {
    let err = catch_unwind(|| {
        let _h = cutoff::thread::spawn(|token: CancelToken| {
            token.wait();
            panic!("inner");
        });
        panic!("outer");
    })
    .unwrap_err();
    assert_eq!(payload_text(&*err), "outer");
}

#[test]
fn thread_spawn_under_follows_the_parent() {
    must_finish("spawn_under", || {
        let pool = CancelSource::new();
        let a = cutoff::thread::spawn_under(&pool, |t: CancelToken| t.wait());
        let pool_token = pool.token();
        let b = cutoff::thread::spawn_under(&pool_token, |t: CancelToken| t.wait());
        assert!(pool.has_children());
        pool.cancel_with(Reason::Shutdown);
        assert_eq!(a.join(), Reason::Shutdown);
        assert_eq!(b.join(), Reason::Shutdown);

        static ROOT: Node = Node::new();
        let c = cutoff::thread::spawn_under(&ROOT, |t: CancelToken| t.wait());
        ROOT.cancel_with(Reason::Code(12));
        assert_eq!(c.join(), Reason::Code(12));
    });
}

#[test]
fn thread_cancelling_the_thread_leaves_the_parent_alone() {
    let pool = CancelSource::new();
    let h = cutoff::thread::spawn_under(&pool, |t: CancelToken| t.wait());
    drop(h);
    assert!(!pool.is_cancelled());
    assert!(
        !pool.has_children(),
        "the thread's node is gone after the join"
    );
}

#[test]
fn thread_into_parts_detaches_from_auto_cancel() {
    let h = cutoff::thread::spawn(|t: CancelToken| t.wait());
    let (std_handle, source) = h.into_parts();
    assert!(!source.is_cancelled(), "taking it apart does not cancel");
    source.cancel_with(Reason::Code(2));
    assert_eq!(std_handle.join().unwrap(), Reason::Code(2));
}

#[test]
fn thread_spawn_with_a_builder() {
    let h = cutoff::thread::spawn_with(
        std::thread::Builder::new().name("cutoff-worker".into()),
        cutoff::Parent::Root,
        |_t| std::thread::current().name().map(str::to_owned),
    )
    .unwrap();
    assert_eq!(h.thread().name(), Some("cutoff-worker"));
    assert_eq!(h.join().as_deref(), Some("cutoff-worker"));
}

#[test]
fn thread_workers_cooperate_through_callbacks() {
    // A worker blocked on a condition variable is interrupted by a cancel callback.
    must_finish("callback-interrupted worker", || {
        let pair = Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
        let woke = Arc::new(AtomicUsize::new(0));
        let (p, w) = (Arc::clone(&pair), Arc::clone(&woke));
        let h = cutoff::thread::spawn(move |token: CancelToken| {
            let (lock, cv) = &*p;
            let interrupt = || {
                drop(lock.lock().unwrap());
                cv.notify_all();
            };
            token.with_callback(
                |_: &Reason| interrupt(),
                || {
                    let mut g = lock.lock().unwrap();
                    while !token.is_cancelled() {
                        g = cv.wait(g).unwrap();
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                    *g
                },
            )
        });
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(h.cancel_and_join(), 0);
        assert!(woke.load(Ordering::Relaxed) >= 1);
    });
}
