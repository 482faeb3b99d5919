//! Rule 4: cancel and drop are iterative. A 1,000,000-deep chain must cancel and drop on a
//! thread with a 2 MiB stack, in every order.
//!
//! Each test runs in its own child process (`run_isolated`), so a stack overflow fails that
//! test instead of aborting the whole binary.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Instant;

use cutoff::{CancelSource, CancelToken, ChildNode, Node, Reason};
use cutoff_tests::run_isolated;

const DEPTH: usize = 1_000_000;
const STACK: usize = 2 << 20;

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name("2MiB".into())
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the 2 MiB thread panicked");
}

/// A heap chain `root -> 1 -> 2 -> ... -> DEPTH-1`, every handle kept (index 0 is the root).
fn heap_chain(root: CancelSource, depth: usize) -> Vec<CancelSource> {
    let mut v = Vec::with_capacity(depth);
    v.push(root);
    for i in 1..depth {
        let c = v[i - 1].child();
        v.push(c);
    }
    v
}

macro_rules! deep_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            run_isolated(stringify!($name), || {
                on_small_stack(|| {
                    let t = Instant::now();
                    $body
                    eprintln!("{}: {:?}", stringify!($name), t.elapsed());
                })
            });
        }
    };
}

deep_test! {
    /// (a) cancel the root, then drop the root handle first and the rest root to leaf.
    fn cancel_root_then_drop_root_first() {
        let v = heap_chain(CancelSource::new(), DEPTH);
        let leaf = v[DEPTH - 1].token();
        assert!(v[0].cancel_with(Reason::Code(1)));
        assert_eq!(leaf.reason(), Some(Reason::Code(1)));
        assert!(v.iter().all(|n| n.is_cancelled()));
        drop(v); // drops in index order: root first
        assert_eq!(leaf.reason(), Some(Reason::Code(1)));
        drop(leaf); // the last handle of the leaf; the chain above is already gone
    }
}

deep_test! {
    /// (b) cancel the root, then drop leaf first.
    fn cancel_root_then_drop_leaf_first() {
        let mut v = heap_chain(CancelSource::new(), DEPTH);
        assert!(v[0].cancel());
        assert!(v[DEPTH - 1].is_cancelled());
        while let Some(h) = v.pop() {
            drop(h);
        }
    }
}

deep_test! {
    /// (c) no cancel; drop the root handle first, then the rest root to leaf: the whole chain
    /// is freed by the very last drop, in one go.
    fn no_cancel_drop_root_first() {
        let v = heap_chain(CancelSource::new(), DEPTH);
        let root_tok = v[0].token();
        let leaf_tok = v[DEPTH - 1].token();
        drop(v);
        assert!(!leaf_tok.is_cancelled());
        assert!(root_tok.has_children(), "the chain is alive behind the leaf token");
        drop(leaf_tok); // frees a million nodes
        assert!(!root_tok.has_children());
    }
}

deep_test! {
    /// (d) no cancel; drop leaf first.
    fn no_cancel_drop_leaf_first() {
        let mut v = heap_chain(CancelSource::new(), DEPTH);
        while let Some(h) = v.pop() {
            drop(h);
        }
    }
}

deep_test! {
    /// Cancel from the middle: the upper half is untouched.
    fn cancel_middle_of_chain() {
        let v = heap_chain(CancelSource::new(), DEPTH);
        assert!(v[DEPTH / 2].cancel_with(Reason::Code(2)));
        assert!(!v[DEPTH / 2 - 1].is_cancelled());
        assert_eq!(v[DEPTH - 1].reason(), Some(Reason::Code(2)));
        assert!(v[0].cancel_with(Reason::Code(3)));
        assert_eq!(v[DEPTH / 2 - 1].reason(), Some(Reason::Code(3)));
        assert_eq!(v[DEPTH - 1].reason(), Some(Reason::Code(2)));
    }
}

deep_test! {
    /// A chain hanging off a `static` root, with callbacks and waiters along the way.
    fn static_root_chain_with_callbacks() {
        static ROOT: Node = Node::new();
        let mut v = Vec::with_capacity(DEPTH);
        v.push(CancelSource::child_of(&ROOT));
        for i in 1..DEPTH {
            let c = v[i - 1].child();
            v.push(c);
        }
        let hits = Arc::new(AtomicUsize::new(0));
        let regs: Vec<_> = v
            .iter()
            .step_by(1000)
            .map(|n| {
                let hits = hits.clone();
                n.on_cancel(move |_: &Reason| {
                    hits.fetch_add(1, SeqCst);
                })
            })
            .collect();
        let futs: Vec<_> = v.iter().step_by(997).map(|n| n.token().cancelled_owned()).collect();
        ROOT.cancel_with(Reason::Shutdown);
        assert_eq!(hits.load(SeqCst), DEPTH / 1000);
        for f in futs {
            assert_eq!(futures::executor::block_on(f), Reason::Shutdown);
        }
        drop(regs);
        drop(v);
        assert!(!ROOT.has_children());
    }
}

fn any_of_chain(depth: usize) -> Vec<CancelSource> {
    let mut v: Vec<CancelSource> = Vec::with_capacity(depth);
    v.push(CancelSource::new());
    for i in 1..depth {
        let c = CancelSource::any_of([&v[i - 1].token()]);
        v.push(c);
    }
    v
}

deep_test! {
    /// Chain of single-parent `any_of` nodes: the walk goes through links iteratively.
    fn any_of_chain_cancel() {
        let mut v = any_of_chain(DEPTH);
        let leaf: CancelToken = v[DEPTH - 1].token();
        assert!(v[0].cancel_with(Reason::Code(9)));
        assert_eq!(leaf.reason(), Some(Reason::Code(9)));
        // Drop leaf first (each drop frees one node), so only the cancel is under test here.
        drop(leaf);
        while let Some(h) = v.pop() {
            drop(h);
        }
    }
}

deep_test! {
    /// Chain of single-parent `any_of` nodes, root handles dropped first: the last handle's
    /// drop frees the whole chain and must not recurse.
    fn any_of_chain_drop_root_first() {
        let v = any_of_chain(DEPTH);
        let leaf: CancelToken = v[DEPTH - 1].token();
        drop(v); // root first: every node stays alive behind its child's link
        drop(leaf); // frees the whole chain
    }
}

deep_test! {
    /// The pinned mode on a long chain built without recursion: 100k pinned children
    /// hanging off one heap node each (pinned nodes need a borrow of their parent, so a
    /// million-deep *pinned* chain would need a million nested frames).
    fn pinned_children_along_a_heap_chain() {
        let v = heap_chain(CancelSource::new(), 100_000);
        let mut count = 0;
        for n in v.iter().step_by(10_000) {
            let mut p = pin!(ChildNode::new(n));
            let p = p.as_mut().link();
            assert!(!p.is_cancelled());
            count += 1;
        }
        assert_eq!(count, 10);
        let mut p = pin!(ChildNode::new(&v[99_999]));
        let p = p.as_mut().link();
        v[0].cancel();
        assert!(p.is_cancelled());
    }
}
