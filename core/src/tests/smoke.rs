use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    let order = Arc::new(AtomicUsize::new(0));
    let o1 = order.clone();
    let mut c1 = pin!(Callback::new(&root, move |_: &Reason| {
        assert_eq!(o1.fetch_add(1, Ordering::SeqCst), 1);
    }));
    let o2 = order.clone();
    let mut c2 = pin!(Callback::new(&root, move |_: &Reason| {
        assert_eq!(o2.fetch_add(1, Ordering::SeqCst), 0);
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

/// A callback that drops its own owned registration, which holds the last handle of a heap
/// child: the walker must neither deadlock nor touch freed memory.
#[test]
fn callback_drops_last_handle_of_its_node() {
    use std::sync::{Arc, Mutex};
    type Slot = Arc<Mutex<Option<crate::OnCancel<std::boxed::Box<dyn FnOnce(&Reason) + Send>>>>>;
    let root = CancelSource::new();
    let mid = root.child();
    let leaf = mid.child();
    let slot: Slot = Arc::new(Mutex::new(None));
    let slot2 = slot.clone();
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    let reg = leaf
        .token()
        .on_cancel(std::boxed::Box::new(move |_: &Reason| {
            ran2.fetch_add(1, Ordering::SeqCst);
            drop(slot2.lock().unwrap().take());
        }) as std::boxed::Box<dyn FnOnce(&Reason) + Send>);
    *slot.lock().unwrap() = Some(reg);
    drop(leaf);
    drop(mid);
    assert!(root.has_children());
    root.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(!root.has_children());
}

mod ext {
    use core::pin::pin;
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::boxed::Box;

    use crate::{CancelSource, ChildNode, ExtHeader, ExtVtable, Node, Reason};

    /// A toy extension: a header plus a deadline.
    #[repr(C)]
    struct Dl {
        header: ExtHeader,
        deadline: u64,
    }

    static FREED: AtomicUsize = AtomicUsize::new(0);

    unsafe fn deadline(h: *const ExtHeader) -> u64 {
        // SAFETY: `h` heads a `Dl` (test).
        unsafe { (*h.cast::<Dl>()).deadline }
    }

    unsafe fn free(h: *mut ExtHeader) {
        FREED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: allocated as a `Box<Dl>` below.
        drop(unsafe { Box::from_raw(h.cast::<Dl>()) });
    }

    static VT: ExtVtable = ExtVtable { deadline, free };

    #[test]
    fn deadline_walks_to_the_nearest_extension_and_heap_ext_is_freed_through_its_vtable() {
        let root = CancelSource::new();
        assert_eq!(root.deadline_raw(), None);
        let dl = Box::new(Dl {
            header: ExtHeader::new(&VT),
            deadline: 500,
        });
        // SAFETY: fresh heap allocation headed by the header; parent is a heap node.
        let src =
            unsafe { ExtHeader::into_source(NonNull::from(Box::leak(dl)).cast(), (&root).into()) };
        assert_eq!(src.deadline_raw(), Some(500));
        let child = src.child();
        {
            let mut pinned = pin!(ChildNode::new(&child));
            let pinned = pinned.as_mut().link();
            assert_eq!(pinned.deadline_raw(), Some(500));

            // A pinned extension under the pinned child.
            let mut p = pin!(Dl {
                header: ExtHeader::new(&VT),
                deadline: 300
            });
            // SAFETY: pinned in this frame, exclusive, parent outlives it; unlinked below.
            let linked = unsafe {
                p.as_mut()
                    .map_unchecked_mut(|d| &mut d.header)
                    .into_ref()
                    .link(Some(pinned))
            };
            assert!(linked);
            assert_eq!(p.header.node().deadline_raw(), Some(300));
            root.cancel_with(Reason::DeadlineExceeded);
            assert!(p.header.node().is_cancelled());
            // SAFETY: linked above, about to go away.
            unsafe { p.header.unlink() };
        }

        let before = FREED.load(Ordering::SeqCst);
        drop(child);
        drop(src);
        assert_eq!(FREED.load(Ordering::SeqCst), before + 1);
        let _ = Node::new();
    }
}

#[test]
fn to_token_only_for_live_heap_nodes() {
    let src = CancelSource::new();
    let tok = src.to_token().expect("heap node with a handle");
    assert!(tok.same_node(&src.token()));
    drop(src);
    assert!(!tok.is_cancelled());
    let root = Node::new();
    assert!(root.to_token().is_none());
}
