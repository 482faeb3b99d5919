use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::vec;

use crate::{Callback, CancelSource, ChildNode, Node, Reason};

#[test]
fn chain_cancel_and_reasons() {
    let root = Node::new();
    let mut a = pin!(ChildNode::new(&root));
    let a = a.as_mut().link();
    let mut b = pin!(ChildNode::new(a));
    let b = b.as_mut().link();
    assert!(root.has_children());
    assert!(root.cancel_with(Reason::Code(5)));
    assert!(!root.cancel());
    assert_eq!(a.reason(), Some(Reason::Code(5)));
    assert_eq!(b.reason(), Some(Reason::Code(5)));
}

#[test]
fn callbacks_order_newest_first() {
    let root = Node::new();
    let order = AtomicUsize::new(0);
    let mut c1 = pin!(Callback::new(&root, |_: &Reason| {
        assert_eq!(order.fetch_add(1, Ordering::SeqCst), 1);
    }));
    let mut c2 = pin!(Callback::new(&root, |_: &Reason| {
        assert_eq!(order.fetch_add(1, Ordering::SeqCst), 0);
    }));
    assert!(c1.as_mut().register());
    assert!(c2.as_mut().register());
    root.cancel();
    assert_eq!(order.load(Ordering::SeqCst), 2);
}

#[test]
fn heap_chain_drop_any_order() {
    let root = CancelSource::new();
    let mut v = vec![root.child()];
    for _ in 0..100 {
        let c = v.last().unwrap().child();
        v.push(c);
    }
    drop(root);
    v.reverse();
    drop(v);
}

#[test]
fn sizes() {
    std::eprintln!(
        "Node {} Reason {} Cancellation {} ChildNode {}",
        core::mem::size_of::<Node>(),
        core::mem::size_of::<Reason>(),
        core::mem::size_of::<crate::Cancellation<'_>>(),
        core::mem::size_of::<ChildNode<'_>>()
    );
}
