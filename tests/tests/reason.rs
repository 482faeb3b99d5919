//! Rule 5: the reason. Write-once, first cause wins (also across threads), inherited by
//! descendants, a directly cancelled child keeps its own; `Reason` / `ErrorReason` /
//! `Cancelled` API.

use std::error::Error;
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Barrier};

use cutoff::{AlreadyCancelled, CancelSource, Cancelled, ChildNode, Node, Reason};

#[derive(Debug)]
struct MyErr(&'static str);
impl fmt::Display for MyErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "my error: {}", self.0)
    }
}
impl Error for MyErr {}

#[test]
fn reason_is_inherited_by_every_descendant() {
    let root = CancelSource::new();
    let a = root.child();
    let mut b = pin!(ChildNode::new(&a));
    let b = b.as_mut().link();
    let c = CancelSource::any_of([&a.token()]);
    let d = c.child();
    let r = Reason::error(MyErr("inherit"));
    root.cancel_with(r.clone());
    for n in [&*a, b, &*c, &*d] {
        assert_eq!(n.reason(), Some(r.clone()));
        // It is the very same error object, not a copy.
        let got = n.reason().unwrap();
        assert!(std::ptr::addr_eq(
            got.as_error().unwrap() as *const _,
            r.as_error().unwrap() as *const _
        ));
    }
}

#[test]
fn directly_cancelled_child_keeps_its_own_reason() {
    let root = CancelSource::new();
    let a = root.child();
    let a1 = a.child();
    let b = root.child();
    a.cancel_with(Reason::Code(1));
    root.cancel_with(Reason::Code(2));
    assert_eq!(root.reason(), Some(Reason::Code(2)));
    assert_eq!(a.reason(), Some(Reason::Code(1)));
    assert_eq!(a1.reason(), Some(Reason::Code(1)));
    assert_eq!(b.reason(), Some(Reason::Code(2)));
}

#[test]
fn reason_is_none_until_cancelled_and_never_changes() {
    let n = Node::new();
    assert_eq!(n.reason(), None);
    n.cancel_with(Reason::DeadlineExceeded);
    for r in [
        Reason::Requested,
        Reason::Shutdown,
        Reason::ParentGone,
        Reason::Code(0),
        Reason::error(MyErr("late")),
    ] {
        assert!(!n.cancel_with(r));
        assert_eq!(n.reason(), Some(Reason::DeadlineExceeded));
    }
}

/// Two threads cancel the same root with different reasons: exactly one wins, and every node
/// agrees with the winner.
#[test]
fn concurrent_cancels_first_cause_wins() {
    let rounds = if cfg!(miri) { 10 } else { 2_000 }; // fewer under Miri
    for i in 0..rounds {
        let root = CancelSource::new();
        let child = root.child();
        let grandchild = child.child();
        let b2 = Arc::new(Barrier::new(2));
        let root = Arc::new(root);
        let other = {
            let root = root.clone();
            let b2 = b2.clone();
            std::thread::spawn(move || {
                b2.wait();
                root.cancel_with(Reason::Code(i))
            })
        };
        b2.wait();
        let mine = root.cancel_with(Reason::Shutdown);
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one cancel wins");
        let want = if mine {
            Reason::Shutdown
        } else {
            Reason::Code(i)
        };
        assert_eq!(root.reason(), Some(want.clone()));
        assert_eq!(child.reason(), Some(want.clone()));
        assert_eq!(grandchild.reason(), Some(want));
    }
}

/// A parent and its child cancelled at the same time with different reasons: the child gets
/// one of them, and its own descendants agree with the child.
#[test]
fn concurrent_parent_and_child_cancel_descendants_agree() {
    let rounds = if cfg!(miri) { 10 } else { 2_000 }; // fewer under Miri
    for _ in 0..rounds {
        let root = Arc::new(CancelSource::new());
        let child = Arc::new(root.child());
        let gc = child.child();
        let ggc = gc.child();
        let barrier = Arc::new(Barrier::new(2));
        let t = {
            let child = child.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                child.cancel_with(Reason::Code(1))
            })
        };
        barrier.wait();
        assert!(root.cancel_with(Reason::Code(2)));
        let child_won = t.join().unwrap();
        let r = child.reason().unwrap();
        assert_eq!(r, Reason::Code(if child_won { 1 } else { 2 }));
        assert_eq!(gc.reason(), Some(r.clone()));
        assert_eq!(ggc.reason(), Some(r));
        assert_eq!(root.reason(), Some(Reason::Code(2)));
    }
}

#[test]
fn error_reasons_compare_by_pointer() {
    let a = Reason::error(MyErr("x"));
    let a2 = a.clone();
    let b = Reason::error(MyErr("x"));
    assert_eq!(a, a2, "clones share the error");
    assert_ne!(
        a, b,
        "equal-looking but different errors are different reasons"
    );

    let shared: Arc<dyn Error + Send + Sync> = Arc::new(MyErr("shared"));
    let c = Reason::from_arc(shared.clone());
    assert_eq!(c.as_error().unwrap().to_string(), "my error: shared");
    // as_error gives the application error itself
    assert!(std::ptr::addr_eq(
        c.as_error().unwrap() as *const _,
        Arc::as_ptr(&shared)
    ));
    let Reason::Error(er) = &c else {
        panic!("from_arc gives Reason::Error")
    };
    assert!(Arc::ptr_eq(&er.to_arc(), &shared));
    assert_eq!(er.get().to_string(), "my error: shared");
    assert_eq!(er.clone(), *er);

    assert!(Reason::Requested.as_error().is_none());
    assert!(Reason::Code(3).as_error().is_none());
    assert_ne!(Reason::Code(3), Reason::Code(4));
    assert_eq!(Reason::Code(3), Reason::Code(3));
    assert_ne!(Reason::Requested, Reason::Shutdown);
}

#[test]
fn display_strings() {
    assert_eq!(Reason::Requested.to_string(), "cancellation requested");
    assert_eq!(Reason::DeadlineExceeded.to_string(), "deadline exceeded");
    assert_eq!(
        Reason::ParentGone.to_string(),
        "cancelled because its source went away"
    );
    assert_eq!(Reason::Shutdown.to_string(), "shutting down");
    assert_eq!(Reason::Code(42).to_string(), "cancelled with code 42");
    assert_eq!(
        Reason::error(MyErr("disk")).to_string(),
        "cancelled: my error: disk"
    );
    assert_eq!(format!("{:?}", Reason::Code(42)), "Code(42)");
    assert_eq!(format!("{:?}", Reason::Requested), "Requested");
    assert!(format!("{:?}", Reason::error(MyErr("dbg"))).contains("dbg"));
    assert_eq!(
        AlreadyCancelled.to_string(),
        "the node was already cancelled"
    );
}

#[test]
fn cancelled_error_type() {
    let c = Cancelled::new(Reason::Code(7));
    assert_eq!(c.reason(), &Reason::Code(7));
    assert_eq!(c.to_string(), "cancelled with code 7");
    assert!(c.source().is_none());
    assert_eq!(c.clone().into_reason(), Reason::Code(7));
    assert_eq!(c, Cancelled::new(Reason::Code(7)));

    let e = Reason::error(MyErr("src"));
    let c = Cancelled::new(e.clone());
    assert_eq!(c.to_string(), "cancelled: my error: src");
    let src = c.source().expect("an error reason is the source");
    assert_eq!(src.to_string(), "my error: src");
    assert!(std::ptr::addr_eq(
        src as *const dyn Error,
        e.as_error().unwrap() as *const (dyn Error + Send + Sync) as *const dyn Error
    ));
    // Usable as a boxed std error.
    let boxed: Box<dyn Error + Send + Sync> = Box::new(c);
    assert!(boxed.to_string().contains("src"));
}

#[test]
fn reason_is_small() {
    assert!(std::mem::size_of::<Reason>() <= 2 * std::mem::size_of::<usize>());
}
