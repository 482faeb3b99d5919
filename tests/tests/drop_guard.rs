//! Rule 8 (first half): `DropGuard` cancels on drop, `disarm()` gives the source back.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cutoff::{CancelSource, Reason};

#[test]
fn guard_cancels_on_drop() {
    let root = CancelSource::new();
    let child = root.child();
    let tok = child.token();
    let grandchild = child.child();
    let guard = child.drop_guard();
    assert!(!guard.source().is_cancelled());
    assert!(guard.source().same_node(&tok));
    drop(guard);
    assert_eq!(tok.reason(), Some(Reason::Requested));
    assert!(grandchild.is_cancelled());
    assert!(!root.is_cancelled());
}

#[test]
fn guard_cancels_when_unwinding() {
    let src = CancelSource::new();
    let tok = src.token();
    let r = catch_unwind(AssertUnwindSafe(move || {
        let _g = src.drop_guard();
        panic!("unwind through the guard");
    }));
    assert!(r.is_err());
    assert!(tok.is_cancelled());
}

#[test]
fn disarm_returns_the_source_without_cancelling() {
    let src = CancelSource::new();
    let tok = src.token();
    let guard = src.drop_guard();
    let src = guard.disarm();
    assert!(!tok.is_cancelled());
    assert!(src.same_node(&tok));
    drop(src);
    assert!(!tok.is_cancelled(), "dropping a plain source never cancels");
}

#[test]
fn guard_on_an_already_cancelled_source_keeps_the_reason() {
    let src = CancelSource::new();
    let tok = src.token();
    src.cancel_with(Reason::Code(3));
    drop(src.drop_guard());
    assert_eq!(tok.reason(), Some(Reason::Code(3)));
}

#[test]
fn guard_is_send_to_another_thread() {
    let src = CancelSource::new();
    let tok = src.token();
    let g = src.drop_guard();
    std::thread::spawn(move || drop(g)).join().unwrap();
    assert!(tok.is_cancelled());
}
