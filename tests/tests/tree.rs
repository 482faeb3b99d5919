//! Rules 1-4: the two ownership modes and mixing them, unlink on drop, born-cancelled children,
//! idempotent first-wins cancel, whole-subtree cancel and the documented visit order.

use std::pin::pin;
use std::sync::Mutex;

use cutoff::{
    AnyOf, Callback, CancelSource, CancelToken, Cancellation, Cancelled, ChildNode, DropGuard,
    ErrorReason, Join, Node, NodeView, OnCancel, OwnedCancellation, Reason, Trigger,
};

// ---- rule 1: handles are Send + Sync + 'static (compile-time) ------------------------------

const _: () = {
    const fn send_sync_static<T: Send + Sync + 'static>() {}
    const fn send<T: Send>() {}
    send_sync_static::<CancelSource>();
    send_sync_static::<CancelToken>();
    send_sync_static::<DropGuard>();
    send_sync_static::<Node>();
    send_sync_static::<NodeView>();
    send_sync_static::<Reason>();
    send_sync_static::<ErrorReason>();
    send_sync_static::<Cancelled>();
    send_sync_static::<Trigger>();
    send_sync_static::<OnCancel<fn(&Reason)>>();
    send_sync_static::<ChildNode<'static>>();
    // Futures must be Send so they can be spawned on multi-threaded executors.
    send::<OwnedCancellation>();
    send::<Cancellation<'static>>();
    send::<Join<'static>>();
    send::<Callback<'static, fn(&Reason)>>();
};

fn assert_clone<T: Clone>(_: &T) {}

// ---- rule 1: ownership modes -------------------------------------------------------------

static ROOT_FOR_PINNED: Node = Node::new();

#[test]
fn static_root_with_pinned_children() {
    // A `static` root built by a const fn, pinned children linked under it.
    let mut a = pin!(ChildNode::new(&ROOT_FOR_PINNED));
    assert!(a.as_ref().get().is_none(), "not linked before link()");
    let a = a.as_mut().link();
    let mut b = pin!(ChildNode::new(a));
    let b = b.as_mut().link();
    assert!(ROOT_FOR_PINNED.has_children());
    assert!(a.has_children());
    assert!(!b.has_children());
    assert!(!ROOT_FOR_PINNED.is_cancelled() && !a.is_cancelled() && !b.is_cancelled());
    // Cancel the middle: the leaf follows, the static root does not.
    assert!(a.cancel_with(Reason::Code(11)));
    assert_eq!(b.reason(), Some(Reason::Code(11)));
    assert!(!ROOT_FOR_PINNED.is_cancelled());
}

#[test]
fn pinned_child_link_is_idempotent_and_get_returns_node() {
    let root = Node::new();
    let mut c = pin!(ChildNode::new(&root));
    let p1: *const Node = c.as_mut().link();
    let p2: *const Node = c.as_mut().link();
    assert_eq!(p1, p2);
    let got: *const Node = c.as_ref().get().expect("linked");
    assert_eq!(p1, got);
    root.cancel();
    assert!(c.as_ref().get().unwrap().is_cancelled());
}

#[test]
fn pinned_child_under_heap_source_and_token() {
    let src = CancelSource::new();
    let tok = src.token();
    assert_clone(&tok);
    let tok2 = tok.clone();
    assert!(tok2.same_node(&tok));
    assert!(src.same_node(&tok));
    let mut under_src = pin!(ChildNode::new(&src));
    let under_src = under_src.as_mut().link();
    let mut under_tok = pin!(ChildNode::new(&tok2));
    let under_tok = under_tok.as_mut().link();
    assert!(src.has_children());
    assert!(tok.has_children());
    src.cancel_with(Reason::Shutdown);
    assert_eq!(under_src.reason(), Some(Reason::Shutdown));
    assert_eq!(under_tok.reason(), Some(Reason::Shutdown));
    assert_eq!(tok.reason(), Some(Reason::Shutdown));
}

static ROOT_FOR_HEAP: Node = Node::new();

#[test]
fn heap_child_of_static_root() {
    let child = CancelSource::child_of(&ROOT_FOR_HEAP);
    let grandchild = child.child();
    assert!(ROOT_FOR_HEAP.has_children());
    grandchild.cancel();
    assert!(grandchild.is_cancelled());
    assert!(!child.is_cancelled(), "cancel never goes up");
    drop(grandchild);
    drop(child);
    assert!(
        !ROOT_FOR_HEAP.has_children(),
        "heap child unlinked from the static root"
    );
}

#[test]
fn heap_chain_and_token_child() {
    let root = CancelSource::new();
    let a = root.child();
    let tok = a.token();
    let b = tok.child(); // a child made from an observe-only handle
    let c = b.child();
    assert!(root.cancel_with(Reason::Code(1)));
    for n in [&*a, &*b, &*c] {
        assert_eq!(n.reason(), Some(Reason::Code(1)));
    }
    assert_eq!(tok.reason(), Some(Reason::Code(1)));
}

#[test]
fn mixed_chain_static_heap_pinned_heap() {
    static TOP: Node = Node::new();
    let heap = CancelSource::child_of(&TOP);
    let mut pinned = pin!(ChildNode::new(&heap));
    let pinned = pinned.as_mut().link();
    // A pinned child under a pinned child under a heap node ...
    let mut pinned2 = pin!(ChildNode::new(pinned));
    let pinned2 = pinned2.as_mut().link();
    // ... and a pinned multi-parent node hanging off both modes.
    let mut any = pin!(AnyOf::new([&**pinned2, &**heap]));
    let any = any.as_mut().link();
    assert!(heap.has_children());
    TOP.cancel_with(Reason::Code(77));
    for n in [&*heap, pinned, pinned2, any] {
        assert_eq!(n.reason(), Some(Reason::Code(77)));
    }
}

#[test]
fn heap_handles_move_across_threads() {
    let root = CancelSource::new();
    let child = root.child();
    let tok = child.token();
    let t = std::thread::spawn(move || {
        // 'static + Send: the token (and a child of it) live on another thread.
        let grandchild = tok.child();
        let r = grandchild.wait();
        (r, tok.reason())
    });
    root.cancel_with(Reason::Code(5));
    let (r, tr) = t.join().unwrap();
    assert_eq!(r, Reason::Code(5));
    assert_eq!(tr, Some(Reason::Code(5)));
    drop(child);
}

#[test]
fn dropping_a_source_does_not_cancel() {
    let root = CancelSource::new();
    let child = root.child();
    let tok = child.token();
    drop(child);
    assert!(!tok.is_cancelled());
    root.cancel();
    assert!(
        tok.is_cancelled(),
        "the node lives on behind the token and is still linked"
    );
}

// ---- rule 2: dropping a child unlinks it; born cancelled ----------------------------------

#[test]
fn dropping_children_unlinks_them_cancelled_or_not() {
    let root = CancelSource::new();
    for cancel_it in [false, true] {
        {
            let mut p = pin!(ChildNode::new(&root));
            let p = p.as_mut().link();
            let h = root.child();
            assert!(root.has_children());
            if cancel_it {
                p.cancel();
                h.cancel();
            }
        }
        assert!(
            !root.has_children(),
            "children unlinked (cancel_it = {cancel_it})"
        );
        assert!(!root.is_cancelled());
    }
    // Many create/drop cycles never accumulate anything under the parent (fewer under Miri).
    let cycles = if cfg!(miri) { 50 } else { 10_000 };
    for _ in 0..cycles {
        let c = root.child();
        let mut p = pin!(ChildNode::new(&c));
        p.as_mut().link();
    }
    assert!(!root.has_children());
    futures::executor::block_on(root.join());
}

#[test]
fn dropping_a_child_out_of_order_keeps_siblings_linked() {
    let root = CancelSource::new();
    let a = root.child();
    let b = root.child();
    let c = root.child();
    drop(b); // middle of the list
    let mut d = pin!(ChildNode::new(&root));
    let d = d.as_mut().link();
    drop(c); // head side
    assert!(root.has_children());
    root.cancel();
    assert!(a.is_cancelled() && d.is_cancelled());
    drop(a);
    assert!(root.has_children(), "the pinned child is still alive");
}

#[test]
fn child_of_cancelled_parent_is_born_cancelled_and_never_links() {
    let root = CancelSource::new();
    let err = Reason::error(std::io::Error::other("boom"));
    root.cancel_with(err.clone());

    let heap = root.child();
    assert_eq!(heap.reason(), Some(err.clone()));
    let mut pinned = pin!(ChildNode::new(&root));
    let pinned = pinned.as_mut().link();
    assert_eq!(pinned.reason(), Some(err.clone()));
    assert!(!root.has_children(), "born-cancelled children do not link");
    // Their own subtrees are born cancelled too.
    let gc = heap.child();
    assert_eq!(gc.reason(), Some(err.clone()));
    // And cancelling them again changes nothing.
    assert!(!heap.cancel_with(Reason::Code(2)));
    assert_eq!(heap.reason(), Some(err));

    static CANCELLED_ROOT: Node = Node::new();
    CANCELLED_ROOT.cancel_with(Reason::DeadlineExceeded);
    let s = CancelSource::child_of(&CANCELLED_ROOT);
    assert_eq!(s.reason(), Some(Reason::DeadlineExceeded));
    assert!(!CANCELLED_ROOT.has_children());
}

// ---- rule 4: cancel is idempotent, first wins, whole subtree --------------------------------

#[test]
fn cancel_first_call_wins() {
    let n = Node::new();
    assert!(!n.is_cancelled());
    assert_eq!(n.reason(), None);
    assert!(n.cancel());
    assert!(!n.cancel());
    assert!(!n.cancel_with(Reason::Code(9)));
    assert_eq!(n.reason(), Some(Reason::Requested));

    let s = CancelSource::new();
    assert!(s.cancel_with(Reason::Code(9)));
    assert!(!s.cancel());
    assert_eq!(s.reason(), Some(Reason::Code(9)));
}

#[test]
fn cancel_reaches_whole_subtree_but_not_siblings_or_ancestors() {
    let root = CancelSource::new();
    let left = root.child();
    let right = root.child();
    let mut l1 = pin!(ChildNode::new(&left));
    let l1 = l1.as_mut().link();
    let l2 = left.child();
    let mut l21 = pin!(ChildNode::new(&l2));
    let l21 = l21.as_mut().link();
    let r1 = right.child();

    assert!(left.cancel_with(Reason::Code(3)));
    assert!(left.is_cancelled() && l1.is_cancelled() && l2.is_cancelled() && l21.is_cancelled());
    assert!(!root.is_cancelled() && !right.is_cancelled() && !r1.is_cancelled());
    // Cancelling the root later reaches the rest; the already-cancelled part keeps its reason.
    assert!(root.cancel_with(Reason::Code(4)));
    assert_eq!(right.reason(), Some(Reason::Code(4)));
    assert_eq!(r1.reason(), Some(Reason::Code(4)));
    assert_eq!(l21.reason(), Some(Reason::Code(3)));
}

#[test]
fn wide_tree_cancel() {
    let root = CancelSource::new();
    // Under Miri a narrower tree: 100 children, 10 of them with a grandchild.
    let width = if cfg!(miri) { 100 } else { 10_000 };
    let kids: Vec<CancelSource> = (0..width).map(|_| root.child()).collect();
    let grandkids: Vec<CancelSource> = kids.iter().step_by(10).map(|k| k.child()).collect();
    root.cancel_with(Reason::Code(8));
    assert!(kids.iter().all(|k| k.reason() == Some(Reason::Code(8))));
    assert!(
        grandkids
            .iter()
            .all(|k| k.reason() == Some(Reason::Code(8)))
    );
    drop(kids);
    assert!(
        root.has_children(),
        "grandchildren keep their parents linked"
    );
    drop(grandkids);
    assert!(!root.has_children());
}

/// Depth first, pre-order (a node is cancelled before anything under it), newest entry first.
#[test]
fn cancel_order_is_depth_first_preorder_newest_first() {
    use std::sync::Arc;

    let log: Arc<Mutex<Vec<&'static str>>> = Arc::new(Mutex::new(Vec::new()));
    // A `'static` callback that records `s` in the log.
    let push = |s: &'static str| {
        let log = log.clone();
        move |_: &Reason| log.lock().unwrap().push(s)
    };

    let root = CancelSource::new();
    let mut r1 = pin!(Callback::new(&root, push("r1")));
    assert!(r1.as_mut().register());

    let a = root.child(); // heap child
    let mut a1 = pin!(Callback::new(&a, push("a1")));
    assert!(a1.as_mut().register());
    let mut aa = pin!(ChildNode::new(&a)); // pinned grandchild
    let aa = aa.as_mut().link();
    let aa_tok: &Node = aa;
    let a_tok = a.token();
    // `aa1` borrows the pinned grandchild, so it is a scoped registration: registered here and
    // for the rest of the test (the cancel and the check of the order happen inside the scope).
    // Had it run inline at registration (it must not: nothing is cancelled yet), "aa1" would
    // be out of place in the log checked below.
    assert!(!aa.is_cancelled());
    aa.with_callback(
        |_: &Reason| {
            // pre-order: the node and its ancestors are already cancelled
            assert!(aa_tok.is_cancelled() && a_tok.is_cancelled());
            log.lock().unwrap().push("aa1")
        },
        || {
            let mut aa2 = pin!(Callback::new(aa, push("aa2")));
            assert!(aa2.as_mut().register());
            let mut a2 = pin!(Callback::new(&a, push("a2")));
            assert!(a2.as_mut().register());

            let a_view = a.token();
            let b_slot: Arc<Mutex<Option<CancelToken>>> = Arc::new(Mutex::new(None));
            let mut r2 = pin!(Callback::new(&root, {
                let (b_slot, log) = (b_slot.clone(), log.clone());
                move |_: &Reason| {
                    // B (newer) was visited before us, A (older) not yet.
                    assert!(b_slot.lock().unwrap().as_ref().unwrap().is_cancelled());
                    assert!(
                        !a_view.is_cancelled(),
                        "older sibling subtree visited later"
                    );
                    log.lock().unwrap().push("r2")
                }
            }));
            assert!(r2.as_mut().register());

            let b = root.child();
            *b_slot.lock().unwrap() = Some(b.token());
            let mut b1 = pin!(Callback::new(&b, push("b1")));
            assert!(b1.as_mut().register());

            // Entries, newest first:
            //   root: [b, r2, a, r1]; b: [b1]; a: [a2, aa, a1]; aa: [aa2, aa1]
            assert!(root.cancel());
            assert_eq!(
                *log.lock().unwrap(),
                ["b1", "r2", "a2", "aa2", "aa1", "a1", "r1"]
            );
        },
    );
}

/// Waiters are entries like any other: they are woken in the same order.
#[test]
fn waiters_and_callbacks_share_the_order() {
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Rec(&'static str, Arc<Mutex<Vec<&'static str>>>);
    impl Wake for Rec {
        fn wake(self: Arc<Self>) {
            self.1.lock().unwrap().push(self.0);
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let w = |s| Waker::from(Arc::new(Rec(s, log.clone())));

    let root = Node::new();
    let mut f1 = pin!(root.cancelled());
    assert!(cutoff_tests::poll_once(f1.as_mut(), &w("w1")).is_pending());
    let mut child = pin!(ChildNode::new(&root));
    let child = child.as_mut().link();
    let mut fc = pin!(child.cancelled());
    assert!(cutoff_tests::poll_once(fc.as_mut(), &w("wc")).is_pending());
    let log2 = log.clone();
    let mut cb = pin!(Callback::new(&root, move |_: &Reason| log2
        .lock()
        .unwrap()
        .push("cb")));
    assert!(cb.as_mut().register());
    let mut f2 = pin!(root.cancelled());
    assert!(cutoff_tests::poll_once(f2.as_mut(), &w("w2")).is_pending());

    root.cancel();
    assert_eq!(*log.lock().unwrap(), ["w2", "cb", "wc", "w1"]);
}

// ---- races: child drop vs walker, link vs cancel -------------------------------------------

/// Heap children (with subtrees and callbacks) dropped on other threads while the parent's
/// cancel walks them: no hang, no crash, nothing left linked.
#[test]
fn dropping_children_while_the_parent_cancels() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Barrier};
    // Under Miri: fewer and smaller rounds (each seed of the Miri step explores other
    // interleavings).
    const ROUNDS: usize = if cfg!(miri) { 4 } else { 300 };
    const BATCH: usize = if cfg!(miri) { 8 } else { 20 };
    cutoff_tests::must_finish("drop vs cancel", || {
        for _ in 0..ROUNDS {
            let root = Arc::new(CancelSource::new());
            let hits = Arc::new(AtomicUsize::new(0));
            let mut batches = Vec::new();
            for _ in 0..2 {
                let mut batch = Vec::new();
                for _ in 0..BATCH {
                    let c = root.child();
                    let g = c.child();
                    let h = hits.clone();
                    let reg = g.on_cancel(move |_: &Reason| {
                        h.fetch_add(1, SeqCst);
                    });
                    batch.push((c, g, reg));
                }
                batches.push(batch);
            }
            let go = Arc::new(Barrier::new(3));
            let droppers: Vec<_> = batches
                .into_iter()
                .map(|b| {
                    let go = go.clone();
                    std::thread::spawn(move || {
                        go.wait();
                        for (c, g, reg) in b {
                            drop(c);
                            drop(reg);
                            drop(g);
                        }
                    })
                })
                .collect();
            go.wait();
            root.cancel();
            for d in droppers {
                d.join().unwrap();
            }
            assert!(hits.load(SeqCst) <= 2 * BATCH, "no callback runs twice");
            assert!(!root.has_children());
        }
    });
}

/// Pinned children on their own threads, linking and unlinking in a loop while the parent
/// is cancelled: each child is either cancelled by the walk or born cancelled.
#[test]
fn pinned_children_churn_while_the_parent_cancels() {
    use std::sync::Barrier;
    const ROUNDS: usize = if cfg!(miri) { 4 } else { 100 }; // fewer under Miri
    cutoff_tests::must_finish("pinned churn vs cancel", || {
        for _ in 0..ROUNDS {
            let root = CancelSource::new();
            let go = Barrier::new(3);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        go.wait();
                        loop {
                            let mut c = pin!(ChildNode::new(&root));
                            let c = c.as_mut().link();
                            let mut g = pin!(ChildNode::new(c));
                            let g = g.as_mut().link();
                            let mut cb = pin!(Callback::new(g, |_: &Reason| {}));
                            cb.as_mut().register();
                            if c.is_cancelled() {
                                // Cancelled through the tree: the grandchild follows once
                                // the walk is done with it; it is at least cancelled now
                                // or born cancelled.
                                assert!(root.is_cancelled());
                                break;
                            }
                        }
                    });
                }
                go.wait();
                root.cancel();
            });
            assert!(!root.has_children());
        }
    });
}

/// A multi-parent node whose only owner is a registration on it, dropped from inside the
/// callback, reached through one parent while another parent sits on the walk's path.
#[test]
fn multi_parent_node_freed_from_inside_its_callback() {
    use std::sync::{Arc, Mutex};
    type Boxed = Box<dyn FnOnce(&Reason) + Send>;
    cutoff_tests::must_finish("multi-parent self drop", || {
        let root = CancelSource::new();
        let a = root.child();
        let p1 = a.child();
        let x = CancelSource::any_of([&p1.token(), &a.token()]);
        let slot: Arc<Mutex<Option<cutoff::OnCancel<Boxed>>>> = Arc::new(Mutex::new(None));
        let s2 = slot.clone();
        let f: Boxed = Box::new(move |_: &Reason| drop(s2.lock().unwrap().take()));
        *slot.lock().unwrap() = Some(x.on_cancel(f));
        let xt = x.token();
        drop(x);
        drop(xt);
        assert!(root.cancel());
        assert!(slot.lock().unwrap().is_none());
        drop(p1);
        drop(a);
        assert!(!root.has_children());
    });
}
