//! Rule 7: callbacks (pinned `Callback` and owned `on_cancel`): exactly once, on the cancelling
//! thread, inline when already cancelled, `try_register`, drop waits for a run in progress,
//! drop from inside the callback, panics, `disarm`, no lock held while user code runs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use cutoff::{AlreadyCancelled, Callback, CancelSource, ChildNode, Node, OnCancel, Reason};
use cutoff_tests::must_finish;

type BoxedCb = Box<dyn FnOnce(&Reason) + Send>;
type Slot = Arc<Mutex<Option<OnCancel<BoxedCb>>>>;

#[test]
fn pinned_callback_runs_once_on_the_cancelling_thread() {
    let node = Node::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let ran_on: Arc<Mutex<Option<ThreadId>>> = Arc::new(Mutex::new(None));
    let seen: Arc<Mutex<Option<Reason>>> = Arc::new(Mutex::new(None));
    // Boxed so that `drop(cb)` below really drops the registration.
    let mut cb = {
        let (runs, ran_on, seen) = (runs.clone(), ran_on.clone(), seen.clone());
        Box::pin(Callback::new(&node, move |r: &Reason| {
            runs.fetch_add(1, SeqCst);
            *ran_on.lock().unwrap() = Some(thread::current().id());
            *seen.lock().unwrap() = Some(r.clone());
        }))
    };
    assert!(!cb.is_registered());
    assert!(cb.as_mut().register());
    assert!(cb.is_registered());
    assert!(cb.as_mut().register(), "registering twice is a no-op");
    assert_eq!(runs.load(SeqCst), 0);

    let canceller = thread::scope(|s| {
        s.spawn(|| {
            assert!(node.cancel_with(Reason::Code(21)));
            assert!(!node.cancel());
            thread::current().id()
        })
        .join()
        .unwrap()
    });
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(*ran_on.lock().unwrap(), Some(canceller));
    assert_ne!(canceller, thread::current().id());
    assert_eq!(*seen.lock().unwrap(), Some(Reason::Code(21)));
    assert!(!cb.is_registered());
    // Nothing runs it again: not another cancel, not re-registering, not dropping.
    node.cancel();
    cb.as_mut().register();
    drop(cb);
    assert_eq!(runs.load(SeqCst), 1);
}

#[test]
fn on_cancel_runs_once_on_the_cancelling_thread() {
    let src = CancelSource::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let ran_on = Arc::new(Mutex::new(None));
    let reg = {
        let runs = runs.clone();
        let ran_on = ran_on.clone();
        src.token().on_cancel(move |r: &Reason| {
            assert_eq!(*r, Reason::Shutdown);
            runs.fetch_add(1, SeqCst);
            *ran_on.lock().unwrap() = Some(thread::current().id());
        })
    };
    assert!(reg.is_registered());
    let src = Arc::new(src);
    let t = {
        let src = src.clone();
        thread::spawn(move || {
            src.cancel_with(Reason::Shutdown);
            src.cancel();
            thread::current().id()
        })
    };
    let canceller = t.join().unwrap();
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(*ran_on.lock().unwrap(), Some(canceller));
    assert!(!reg.is_registered());
    assert!(reg.disarm().is_none(), "already ran: nothing to give back");
    assert_eq!(runs.load(SeqCst), 1);
}

#[test]
fn register_on_cancelled_node_runs_inline() {
    let node = Node::new();
    node.cancel_with(Reason::Code(4));
    let runs = Arc::new(AtomicUsize::new(0));
    let me = thread::current().id();
    let r2 = runs.clone();
    let mut cb = Box::pin(Callback::new(&node, move |r: &Reason| {
        assert_eq!(*r, Reason::Code(4));
        assert_eq!(thread::current().id(), me);
        r2.fetch_add(1, SeqCst);
    }));
    assert!(!cb.as_mut().register(), "already cancelled: false");
    assert_eq!(runs.load(SeqCst), 1, "ran inline, before register returned");
    assert!(!cb.is_registered());
    assert!(!cb.as_mut().register());
    drop(cb);
    assert_eq!(runs.load(SeqCst), 1);

    // Owned variant on a source and on a token.
    let src = CancelSource::new();
    src.cancel_with(Reason::Code(5));
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let reg = src.on_cancel(move |r: &Reason| {
        assert_eq!(*r, Reason::Code(5));
        h.fetch_add(1, SeqCst);
    });
    assert_eq!(hits.load(SeqCst), 1);
    assert!(!reg.is_registered());
    drop(reg);
    let h = hits.clone();
    let _reg = src.token().on_cancel(move |_: &Reason| {
        h.fetch_add(1, SeqCst);
    });
    assert_eq!(hits.load(SeqCst), 2);
}

#[test]
fn try_register_reports_already_cancelled_without_running() {
    let node = Node::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let cb = pin!(Callback::new(&node, move |_: &Reason| {
        r2.fetch_add(1, SeqCst);
    }));
    assert_eq!(cb.as_ref().try_register(), Ok(()));
    assert!(cb.is_registered());
    assert_eq!(cb.as_ref().try_register(), Ok(()), "twice is a no-op");
    node.cancel();
    assert_eq!(runs.load(SeqCst), 1);

    let node = Node::new();
    node.cancel();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let mut cb = pin!(Callback::new(&node, move |_: &Reason| {
        r2.fetch_add(1, SeqCst);
    }));
    assert_eq!(cb.as_ref().try_register(), Err(AlreadyCancelled));
    assert_eq!(runs.load(SeqCst), 0, "try_register never runs the callback");
    assert!(!cb.is_registered());
    // The closure is still there to be taken back and run by the caller.
    let f = cb.as_mut().disarm().expect("closure not run");
    assert_eq!(runs.load(SeqCst), 0);
    f(&Reason::Requested);
    assert_eq!(runs.load(SeqCst), 1);
}

#[test]
fn disarm_returns_the_closure_and_prevents_the_run() {
    let node = Node::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let mut cb = pin!(Callback::new(&node, move |_: &Reason| {
        r2.fetch_add(1, SeqCst);
    }));
    // Disarm before registering.
    assert!(cb.as_mut().disarm().is_some());
    let r2 = runs.clone();
    let mut cb2 = pin!(Callback::new(&node, move |_: &Reason| {
        r2.fetch_add(1, SeqCst);
    }));
    assert!(cb2.as_mut().register());
    assert!(cb2.as_mut().disarm().is_some());
    assert!(!cb2.is_registered());
    assert!(cb2.as_mut().disarm().is_none(), "only once");
    node.cancel();
    assert_eq!(runs.load(SeqCst), 0);

    let src = CancelSource::new();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let reg = src.on_cancel(move |_: &Reason| {
        h.fetch_add(1, SeqCst);
    });
    let f = reg.disarm().expect("not run");
    src.cancel();
    assert_eq!(hits.load(SeqCst), 0);
    f(&Reason::Requested);
    assert_eq!(hits.load(SeqCst), 1);
}

#[test]
fn dropped_registration_never_runs() {
    let src = CancelSource::new();
    let hits = Arc::new(AtomicUsize::new(0));
    let rounds = if cfg!(miri) { 20 } else { 100 }; // fewer under Miri
    for _ in 0..rounds {
        let h = hits.clone();
        drop(src.on_cancel(move |_: &Reason| {
            h.fetch_add(1, SeqCst);
        }));
        let h = hits.clone();
        let mut cb = pin!(Callback::new(&src, move |_: &Reason| {
            h.fetch_add(1, SeqCst);
        }));
        cb.as_mut().register();
    }
    src.cancel();
    assert_eq!(hits.load(SeqCst), 0);
}

/// Dropping an owned registration on thread D while its callback runs on thread C: the drop
/// returns only after the callback returned.
#[test]
fn dropping_on_cancel_waits_for_a_run_in_progress() {
    let rounds = if cfg!(miri) { 3 } else { 20 }; // fewer under Miri
    for _ in 0..rounds {
        let src = Arc::new(CancelSource::new());
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let dropped_seen_in_cb = Arc::new(AtomicBool::new(false));
        let reg = {
            let finished = finished.clone();
            let dropped = dropped.clone();
            let seen = dropped_seen_in_cb.clone();
            src.on_cancel(move |_: &Reason| {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                seen.store(dropped.load(SeqCst), SeqCst);
                finished.store(true, SeqCst);
            })
        };
        let canceller = {
            let src = src.clone();
            thread::spawn(move || src.cancel())
        };
        started_rx.recv().unwrap();
        let (about_tx, about_rx) = mpsc::channel::<()>();
        let dropper = {
            let finished = finished.clone();
            let dropped = dropped.clone();
            thread::spawn(move || {
                about_tx.send(()).unwrap();
                drop(reg);
                // The callback must have returned before drop did.
                let ok = finished.load(SeqCst);
                dropped.store(true, SeqCst);
                ok
            })
        };
        about_rx.recv().unwrap();
        // Give a drop that does not wait every chance to return early (no timing assertion:
        // a correct drop passes however long or short this is).
        thread::sleep(Duration::from_millis(20));
        release_tx.send(()).unwrap();
        assert!(canceller.join().unwrap());
        assert!(
            dropper.join().unwrap(),
            "drop returned before the callback finished"
        );
        assert!(
            !dropped_seen_in_cb.load(SeqCst),
            "drop returned while the callback was still blocked"
        );
    }
}

/// Same with a pinned `Callback` living on the dropping thread's stack.
#[test]
fn dropping_pinned_callback_waits_for_a_run_in_progress() {
    let node = Node::new();
    let finished = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let dropped_seen_in_cb = Arc::new(AtomicBool::new(false));
    let (registered_tx, registered_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (about_tx, about_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let node = &node;
        // D: owns the registration and drops it while C runs it.
        let d = {
            let (finished, dropped, seen) = (
                finished.clone(),
                dropped.clone(),
                dropped_seen_in_cb.clone(),
            );
            s.spawn(move || {
                {
                    // The closure owns what it uses (channel ends, `Arc`s); the registration
                    // itself is pinned on D's stack.
                    let (fin, drp) = (finished.clone(), dropped.clone());
                    let mut cb = pin!(Callback::new(node, move |_: &Reason| {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        seen.store(drp.load(SeqCst), SeqCst);
                        fin.store(true, SeqCst);
                    }));
                    assert!(cb.as_mut().register());
                    registered_tx.send(()).unwrap();
                    started_rx.recv().unwrap();
                    about_tx.send(()).unwrap();
                } // drop here
                let ok = finished.load(SeqCst);
                dropped.store(true, SeqCst);
                ok
            })
        };
        registered_rx.recv().unwrap();
        // C: cancels, running the callback.
        let c = s.spawn(|| node.cancel());
        about_rx.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        release_tx.send(()).unwrap();
        assert!(c.join().unwrap());
        assert!(
            d.join().unwrap(),
            "drop returned before the callback finished"
        );
    });
    assert!(!dropped_seen_in_cb.load(SeqCst));
}

fn self_dropping_registration(on: &cutoff::CancelToken, ran: Arc<AtomicUsize>) -> Slot {
    let slot: Slot = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    let f: BoxedCb = Box::new(move |_: &Reason| {
        let reg = s2.lock().unwrap().take();
        assert!(reg.is_some(), "the registration is still in the slot");
        drop(reg); // drop our own registration from inside the callback
        ran.fetch_add(1, SeqCst);
    });
    *slot.lock().unwrap() = Some(on.on_cancel(f));
    slot
}

/// Dropping the registration from inside its own callback must not deadlock.
#[test]
fn on_cancel_dropped_from_inside_its_callback() {
    must_finish("self-drop of a registration", || {
        let src = CancelSource::new();
        let others = Arc::new(AtomicUsize::new(0));
        let o = others.clone();
        // Neighbours on both sides still run (the older one after the self-drop).
        let _older = src.on_cancel(move |_: &Reason| {
            o.fetch_add(1, SeqCst);
        });
        let ran = Arc::new(AtomicUsize::new(0));
        let slot = self_dropping_registration(&src.token(), ran.clone());
        let o = others.clone();
        let _newer = src.on_cancel(move |_: &Reason| {
            o.fetch_add(1, SeqCst);
        });
        assert!(src.cancel());
        assert_eq!(ran.load(SeqCst), 1);
        assert_eq!(others.load(SeqCst), 2);
        assert!(slot.lock().unwrap().is_none());
    });
}

/// Same, but the registration's token is the last owner of the node, which is reached through
/// its parent: dropping the registration inside the callback frees the node the walker is in.
#[test]
fn on_cancel_holding_last_reference_dropped_from_inside_its_callback() {
    must_finish(
        "self-drop of a registration owning the last node handle",
        || {
            let root = CancelSource::new();
            let child = root.child();
            let ran = Arc::new(AtomicUsize::new(0));
            let slot = self_dropping_registration(&child.token(), ran.clone());
            drop(child); // the registration's token now owns the child node
            assert!(root.cancel());
            assert_eq!(ran.load(SeqCst), 1);
            assert!(slot.lock().unwrap().is_none());
            assert!(!root.has_children(), "the freed child unlinked itself");
        },
    );
}

/// Dropping from inside the callback while another thread is the one that cancels.
#[test]
fn on_cancel_dropped_from_inside_its_callback_cancelled_elsewhere() {
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 200 }; // fewer under Miri
    must_finish("self-drop, other thread cancels", || {
        for _ in 0..ROUNDS {
            let src = Arc::new(CancelSource::new());
            let ran = Arc::new(AtomicUsize::new(0));
            let slot = self_dropping_registration(&src.token(), ran.clone());
            let s = src.clone();
            thread::spawn(move || s.cancel()).join().unwrap();
            assert_eq!(ran.load(SeqCst), 1);
            assert!(slot.lock().unwrap().is_none());
        }
    });
}

/// User code runs with no lock held: a callback may use the very node being cancelled.
#[test]
fn callback_may_use_the_tree_while_it_runs() {
    must_finish("re-entrant callback", || {
        let root = Arc::new(CancelSource::new());
        let older_child = root.child();
        let older_tok = older_child.token();
        let holder = Arc::new(Mutex::new(Some(older_child)));
        let other = Arc::new(CancelSource::new());
        let inner_runs = Arc::new(AtomicUsize::new(0));
        let (root2, holder2, other2, inner2) = (
            root.clone(),
            holder.clone(),
            other.clone(),
            inner_runs.clone(),
        );
        let mut cb = pin!(Callback::new(&root, move |_: &Reason| {
            let (root, holder, other) = (root2, holder2, other2);
            // The node's lock must not be held here.
            assert!(root.has_children());
            let born = root.child();
            assert!(
                born.is_cancelled(),
                "children of a cancelled node are born cancelled"
            );
            let mut pinned = pin!(ChildNode::new(&root));
            assert!(pinned.as_mut().link().is_cancelled());
            // Registering another callback on the cancelled node runs it inline.
            let mut inner = pin!(Callback::new(&root, move |_: &Reason| {
                inner2.fetch_add(1, SeqCst);
            }));
            assert!(!inner.as_mut().register());
            // Drop a child the walker has not reached yet (older than us).
            drop(holder.lock().unwrap().take());
            // Cancel an unrelated tree from inside.
            assert!(other.cancel());
            // The root cannot be cancelled again.
            assert!(!root.cancel());
        }));
        assert!(cb.as_mut().register());
        assert!(root.cancel());
        assert_eq!(inner_runs.load(SeqCst), 1);
        assert!(other.is_cancelled());
        // The child we dropped inside was not cancelled by this walk (or was: either is fine),
        // but it is gone, and the tree is consistent.
        drop(older_tok);
        assert!(!root.has_children());
    });
}

fn quiet_panics<R>(f: impl FnOnce() -> R) -> R {
    // Tests run in parallel, so the hook is shared: only silence our own message.
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or_default();
            if !msg.starts_with("expected test panic") {
                prev(info);
            }
        }));
    });
    f()
}

#[test]
fn panicking_callback_does_not_skip_others_or_lock_the_tree() {
    quiet_panics(|| {
        must_finish("panicking callback", || {
            let root = CancelSource::new();
            let hits = Arc::new(Mutex::new(Vec::new()));
            let rec = |s: &'static str| {
                let hits = hits.clone();
                move |_: &Reason| hits.lock().unwrap().push(s)
            };
            let _c1 = root.on_cancel(rec("c1"));
            let child = root.child();
            let _k1 = child.on_cancel(rec("k1"));
            let _kp = child.on_cancel(|_: &Reason| panic!("expected test panic 2"));
            let _k2 = child.on_cancel(rec("k2"));
            let _p = root.on_cancel(|_: &Reason| panic!("expected test panic 1"));
            let gc = child.child();
            let _g = gc.on_cancel(rec("g"));
            let _c2 = root.on_cancel(rec("c2"));

            let res = catch_unwind(AssertUnwindSafe(|| root.cancel()));
            let payload = res.expect_err("the panic resumes from cancel()");
            let msg = payload.downcast_ref::<&str>().copied().unwrap_or_default();
            assert_eq!(msg, "expected test panic 1", "the first panic is resumed");
            // Every other callback ran, in order.
            assert_eq!(*hits.lock().unwrap(), ["c2", "g", "k2", "k1", "c1"]);
            assert!(root.is_cancelled() && child.is_cancelled() && gc.is_cancelled());

            // The tree is usable: no lock stuck anywhere.
            assert!(root.has_children());
            assert!(child.child().is_cancelled());
            {
                let cb = pin!(Callback::new(&child, |_: &Reason| {}));
                assert_eq!(cb.as_ref().try_register(), Err(AlreadyCancelled));
            }
            drop((_k1, _kp, _k2, _g)); // registrations hold tokens on their nodes
            drop(gc);
            drop(child);
            assert!(!root.has_children());
            let fresh = CancelSource::new();
            let c = fresh.child();
            assert!(fresh.cancel());
            assert!(c.is_cancelled());
        });
    });
}

#[test]
fn panicking_inline_callback_propagates_from_register() {
    quiet_panics(|| {
        let node = Node::new();
        node.cancel();
        let res = catch_unwind(AssertUnwindSafe(|| {
            let mut cb = pin!(Callback::new(&node, |_: &Reason| panic!(
                "expected test panic inline"
            )));
            cb.as_mut().register();
        }));
        assert!(res.is_err());
        // Still usable.
        let mut c = pin!(ChildNode::new(&node));
        assert!(c.as_mut().link().is_cancelled());
        assert!(!node.has_children());
    });
}

#[test]
fn panicking_waker_does_not_skip_others() {
    use std::task::{Wake, Waker};
    struct Boom;
    impl Wake for Boom {
        fn wake(self: Arc<Self>) {
            panic!("expected test panic waker");
        }
    }
    quiet_panics(|| {
        let node = Node::new();
        let counter = cutoff_tests::CountingWaker::new();
        let mut f1 = pin!(node.cancelled());
        assert!(cutoff_tests::poll_once(f1.as_mut(), &counter.waker()).is_pending());
        let mut f2 = pin!(node.cancelled());
        assert!(cutoff_tests::poll_once(f2.as_mut(), &Waker::from(Arc::new(Boom))).is_pending());
        let mut f3 = pin!(node.cancelled());
        assert!(cutoff_tests::poll_once(f3.as_mut(), &counter.waker()).is_pending());
        let res = catch_unwind(AssertUnwindSafe(|| node.cancel()));
        assert!(res.is_err());
        assert_eq!(counter.count(), 2);
        assert!(node.is_cancelled());
        assert!(
            cutoff_tests::poll_once(f2.as_mut(), &counter.waker()).is_ready(),
            "the future whose waker panicked still completes"
        );
    });
}

// ---- `NodeView::with_callback`: a scoped registration whose closure may borrow ----------

/// The callback runs once, with the reason, when the node is cancelled inside `body`; it may
/// borrow from the stack (it is not `'static`), and `with_callback` returns `body`'s value.
#[test]
fn with_callback_runs_on_cancel_inside_body() {
    let node = Node::new();
    let runs = AtomicUsize::new(0);
    let seen: Mutex<Option<Reason>> = Mutex::new(None);
    let order: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let out = node.with_callback(
        |r: &Reason| {
            runs.fetch_add(1, SeqCst);
            *seen.lock().unwrap() = Some(r.clone());
            order.lock().unwrap().push("cb");
        },
        || {
            order.lock().unwrap().push("body start");
            assert_eq!(runs.load(SeqCst), 0, "not run before the cancel");
            assert!(node.cancel_with(Reason::Code(17)));
            assert_eq!(runs.load(SeqCst), 1, "ran inside cancel_with");
            assert!(!node.cancel());
            order.lock().unwrap().push("body end");
            99
        },
    );
    assert_eq!(out, 99);
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(*seen.lock().unwrap(), Some(Reason::Code(17)));
    assert_eq!(*order.lock().unwrap(), ["body start", "cb", "body end"]);
}

/// Cancelled by another thread while `body` runs: the callback runs once on that thread.
#[test]
fn with_callback_runs_on_the_cancelling_thread() {
    let node = Node::new();
    let ran_on: Mutex<Option<ThreadId>> = Mutex::new(None);
    let canceller = node.with_callback(
        |_: &Reason| {
            let mut slot = ran_on.lock().unwrap();
            assert!(slot.is_none(), "runs once");
            *slot = Some(thread::current().id());
        },
        || {
            thread::scope(|s| {
                s.spawn(|| {
                    assert!(node.cancel());
                    thread::current().id()
                })
                .join()
                .unwrap()
            })
        },
    );
    assert_ne!(canceller, thread::current().id());
    assert_eq!(*ran_on.lock().unwrap(), Some(canceller));
}

/// On an already cancelled node the callback runs at once, on this thread, before `body`.
#[test]
fn with_callback_runs_inline_if_already_cancelled() {
    let node = Node::new();
    node.cancel_with(Reason::Code(8));
    let me = thread::current().id();
    let runs = AtomicUsize::new(0);
    let order: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    node.with_callback(
        |r: &Reason| {
            assert_eq!(*r, Reason::Code(8));
            assert_eq!(thread::current().id(), me);
            runs.fetch_add(1, SeqCst);
            order.lock().unwrap().push("cb");
        },
        || {
            assert_eq!(runs.load(SeqCst), 1, "ran before body");
            order.lock().unwrap().push("body");
            node.cancel(); // no second run
        },
    );
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(*order.lock().unwrap(), ["cb", "body"]);
}

/// Once `body` returns the callback is unregistered: a later cancel does not run it, and the
/// node has nothing of it left in its list (a second scope on the same node works as usual).
#[test]
fn with_callback_unregisters_after_body_returns() {
    let root = CancelSource::new();
    let child = root.child();
    let runs = AtomicUsize::new(0);
    child.with_callback(
        |_: &Reason| {
            runs.fetch_add(1, SeqCst);
        },
        || assert!(!child.is_cancelled()),
    );
    let later = AtomicUsize::new(0);
    child.with_callback(
        |_: &Reason| {
            later.fetch_add(1, SeqCst);
        },
        || {},
    );
    assert!(root.cancel());
    assert!(child.is_cancelled());
    assert_eq!(runs.load(SeqCst), 0, "cancel after body must not run it");
    assert_eq!(later.load(SeqCst), 0);
    drop(child);
    assert!(!root.has_children());
}

/// A panic in `body` unwinds through `with_callback`, which still unregisters the callback.
#[test]
fn with_callback_unregisters_when_body_panics() {
    quiet_panics(|| {
        let node = Node::new();
        let runs = AtomicUsize::new(0);
        let res = catch_unwind(AssertUnwindSafe(|| {
            node.with_callback(
                |_: &Reason| {
                    runs.fetch_add(1, SeqCst);
                },
                || panic!("expected test panic in with_callback body"),
            )
        }));
        let payload = res.expect_err("the body's panic propagates");
        assert_eq!(
            payload.downcast_ref::<&str>().copied(),
            Some("expected test panic in with_callback body")
        );
        assert_eq!(runs.load(SeqCst), 0);
        assert!(node.cancel());
        assert_eq!(runs.load(SeqCst), 0, "unregistered during the unwind");
        // The node is still usable.
        let mut c = pin!(ChildNode::new(&node));
        assert!(c.as_mut().link().is_cancelled());
    });
}

/// Cancelled on another thread whose run of the callback is still in progress when `body`
/// returns: `with_callback` returns only after the callback did (it may borrow `body`'s
/// caller's stack, so it must not outlive the call).
#[test]
fn with_callback_waits_for_a_run_in_progress() {
    let node = Node::new();
    let finished = AtomicBool::new(false);
    let returned = AtomicBool::new(false);
    let returned_seen_in_cb = AtomicBool::new(false);
    let (registered_tx, registered_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (about_tx, about_rx) = mpsc::channel::<()>();
    thread::scope(|s| {
        let (node, finished, returned, seen) = (&node, &finished, &returned, &returned_seen_in_cb);
        // D: runs the scope and returns from it while C runs the callback.
        let d = s.spawn(move || {
            node.with_callback(
                move |_: &Reason| {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    seen.store(returned.load(SeqCst), SeqCst);
                    finished.store(true, SeqCst);
                },
                || {
                    registered_tx.send(()).unwrap();
                    started_rx.recv().unwrap();
                    about_tx.send(()).unwrap();
                },
            );
            let ok = finished.load(SeqCst);
            returned.store(true, SeqCst);
            ok
        });
        registered_rx.recv().unwrap();
        // C: cancels, running the callback.
        let c = s.spawn(|| node.cancel());
        about_rx.recv().unwrap();
        // No timing assertion: a correct `with_callback` passes however long this is.
        thread::sleep(Duration::from_millis(20));
        release_tx.send(()).unwrap();
        assert!(c.join().unwrap());
        assert!(
            d.join().unwrap(),
            "with_callback returned before the callback finished"
        );
    });
    assert!(!returned_seen_in_cb.load(SeqCst));
}
