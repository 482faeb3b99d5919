//! Rule 11: what a concurrent observer may see while a cancel is in flight.
//!
//! (a) a node is never seen cancelled before its canceller's reason is visible;
//! (b) a descendant cancelled through its parent implies the parent is seen cancelled;
//! (c) once `cancel()` returns, every descendant reports cancelled.
//!
//! Each statement is checked in a loop of a few thousand rounds, to give races a chance.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use cutoff::{CancelSource, ChildNode, Reason};

const ROUNDS: usize = 2_000;

#[derive(Debug)]
struct E(usize);
impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "round {}", self.0)
    }
}
impl std::error::Error for E {}

fn chain(root: &CancelSource, depth: usize) -> Vec<CancelSource> {
    let mut v: Vec<CancelSource> = Vec::with_capacity(depth);
    for i in 0..depth {
        let c = if i == 0 {
            root.child()
        } else {
            v[i - 1].child()
        };
        v.push(c);
    }
    v
}

/// (a) Observers spin on a node and on a deep descendant; the moment they see "cancelled",
/// the reason (an error object, so a torn or missing write would show) must be there, and so
/// must the canceller's earlier plain writes.
#[test]
fn cancelled_implies_reason_visible() {
    let go = Barrier::new(3);
    for round in 0..ROUNDS {
        let root = CancelSource::new();
        let kids = chain(&root, 8);
        let leaf = kids.last().unwrap().token();
        let reason = Reason::error(E(round));
        let data = AtomicUsize::new(0);
        let watch = |n: &cutoff::NodeView| {
            go.wait();
            while !n.is_cancelled() {
                std::hint::spin_loop();
            }
            let r = n.reason().expect("seen cancelled => reason visible");
            assert_eq!(r, reason, "the canceller's reason, not some other");
            assert_eq!(r.as_error().unwrap().to_string(), format!("round {round}"));
            assert_eq!(
                data.load(Relaxed),
                round + 1,
                "writes before cancel are visible"
            );
        };
        let (watch, r, l) = (&watch, &*root, &*leaf);
        thread::scope(|s| {
            let a = s.spawn(move || watch(r));
            let b = s.spawn(move || watch(l));
            go.wait();
            data.store(round + 1, Relaxed);
            root.cancel_with(reason.clone());
            a.join().unwrap();
            b.join().unwrap();
        });
    }
}

/// (b) An observer spinning on a descendant sees every ancestor the cancellation came through
/// cancelled as soon as it sees the descendant cancelled.
#[test]
fn descendant_cancelled_implies_ancestors_cancelled() {
    let go = Barrier::new(2);
    for round in 0..ROUNDS {
        let root = CancelSource::new();
        let mid = root.child();
        let mut pinned = pin!(ChildNode::new(&mid));
        let pinned = pinned.as_mut().link();
        let leaf = CancelSource::any_of([&mid.token()]);
        let mut deep = pin!(ChildNode::new(&leaf));
        let deep = deep.as_mut().link();
        thread::scope(|s| {
            let obs = s.spawn(|| {
                go.wait();
                loop {
                    // Read the descendants first, then their ancestors.
                    let d = deep.is_cancelled();
                    let p = pinned.is_cancelled();
                    let l = leaf.is_cancelled();
                    let m = mid.is_cancelled();
                    let r = root.is_cancelled();
                    if d {
                        assert!(l && m && r, "deep seen cancelled before its ancestors");
                    }
                    if p || l {
                        assert!(m && r, "child seen cancelled before its parent");
                    }
                    if m {
                        assert!(r, "mid seen cancelled before root");
                    }
                    if d && p {
                        break;
                    }
                }
            });
            go.wait();
            if round.is_multiple_of(2) {
                thread::yield_now();
            }
            root.cancel();
            obs.join().unwrap();
        });
    }
}

/// (c) When `cancel()` returns, every descendant reports cancelled, even while other threads
/// keep creating and dropping children under the tree.
#[test]
fn after_cancel_returns_all_descendants_cancelled() {
    let go = Barrier::new(3);
    for _ in 0..ROUNDS / 4 {
        let root = CancelSource::new();
        let mid = root.child();
        let live: Mutex<Vec<CancelSource>> = Mutex::new(Vec::new());
        let stop = AtomicBool::new(false);
        let static_kids = chain(&mid, 16);
        thread::scope(|s| {
            // Creators: children linked under various levels, kept or dropped.
            for t in 0..2 {
                let (root, mid, live, stop, go, static_kids) =
                    (&root, &mid, &live, &stop, &go, &static_kids);
                s.spawn(move || {
                    go.wait();
                    let mut i = 0usize;
                    while !stop.load(Relaxed) {
                        let parent: &CancelSource = match i % 3 {
                            0 => root,
                            1 => mid,
                            _ => &static_kids[(i + t) % 16],
                        };
                        let c = parent.child();
                        if i.is_multiple_of(2) {
                            live.lock().unwrap().push(c);
                        }
                        i += 1;
                        if i > 2_000 {
                            break;
                        }
                    }
                });
            }
            go.wait();
            assert!(root.cancel());
            // Everything linked so far (and anything linked from now on) is cancelled.
            for k in &static_kids {
                assert!(k.is_cancelled());
            }
            for c in live.lock().unwrap().iter() {
                assert!(c.is_cancelled(), "a linked descendant missed by the cancel");
            }
            stop.store(true, Relaxed);
        });
        for c in live.lock().unwrap().iter() {
            assert!(c.is_cancelled());
        }
    }
}

/// (c) with a second canceller: a part of the subtree is being cancelled by another thread
/// when the root's `cancel()` runs. When the root's `cancel()` returns `true`, the statement
/// still says every descendant reports cancelled, including the part the other call walks.
#[test]
fn after_cancel_returns_descendants_cancelled_by_a_concurrent_walk_too() {
    for _ in 0..50 {
        let root = CancelSource::new();
        let mid = Arc::new(root.child());
        let deep = chain(&mid, 20_000);
        let leaf = deep.last().unwrap().token();
        let t = {
            let mid = mid.clone();
            thread::spawn(move || mid.cancel_with(Reason::Code(1)))
        };
        while !mid.is_cancelled() {
            std::hint::spin_loop();
        }
        assert!(root.cancel_with(Reason::Code(2)));
        let seen = leaf.is_cancelled();
        t.join().unwrap();
        assert!(
            seen,
            "root.cancel() returned true while a descendant was not cancelled"
        );
    }
}

/// (c) for the losing caller: `cancel()` returns `false` because another call is cancelling
/// the same node; descendants must still all report cancelled when it returns.
#[test]
fn after_losing_cancel_returns_descendants_cancelled() {
    for _ in 0..50 {
        let root = Arc::new(CancelSource::new());
        let deep = chain(&root, 20_000);
        let leaf = deep.last().unwrap().token();
        let t = {
            let root = root.clone();
            thread::spawn(move || root.cancel())
        };
        while !root.is_cancelled() {
            std::hint::spin_loop();
        }
        let won = root.cancel();
        let seen = leaf.is_cancelled();
        assert!(t.join().unwrap() && !won);
        assert!(
            seen,
            "cancel() returned while a descendant was not cancelled"
        );
    }
}
