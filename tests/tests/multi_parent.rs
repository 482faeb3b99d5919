//! Rule 8 (second half): nodes with several parents, pinned `AnyOf<N>` and heap
//! `CancelSource::any_of`: cancelled when any parent is, with that parent's reason; dropping
//! unlinks from every parent; born cancelled if a parent already is.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;

use cutoff::{AnyOf, Callback, CancelSource, CancelToken, ChildNode, Node, Reason};
use cutoff_tests::must_finish;

#[test]
fn pinned_any_of_cancelled_by_either_parent() {
    for which in 0..2 {
        let a = Node::new();
        let b = Node::new();
        let mut m = pin!(AnyOf::new([&*a, &*b]));
        let m = m.as_mut().link();
        assert!(a.has_children() && b.has_children());
        assert!(!m.is_cancelled());
        let (first, second) = if which == 0 { (&a, &b) } else { (&b, &a) };
        first.cancel_with(Reason::Code(which));
        assert_eq!(m.reason(), Some(Reason::Code(which)));
        second.cancel_with(Reason::Code(100));
        assert_eq!(m.reason(), Some(Reason::Code(which)), "first parent wins");
    }
}

#[test]
fn pinned_any_of_with_mixed_parents_and_subtree() {
    static S: Node = Node::new();
    let heap = CancelSource::new();
    let mut pinned = pin!(ChildNode::new(&heap));
    let pinned = pinned.as_mut().link();
    let other = CancelSource::new();
    let mut m = pin!(AnyOf::new([&*S, &**other, pinned]));
    let m = m.as_mut().link();
    let mut under = pin!(ChildNode::new(m));
    let under = under.as_mut().link();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let mut cb = pin!(Callback::new(m, move |r: &Reason| {
        assert_eq!(*r, Reason::Code(5));
        r2.fetch_add(1, SeqCst);
    }));
    assert!(cb.as_mut().register());
    heap.cancel_with(Reason::Code(5)); // reaches m through the pinned parent
    assert_eq!(m.reason(), Some(Reason::Code(5)));
    assert_eq!(under.reason(), Some(Reason::Code(5)));
    other.cancel();
    assert_eq!(runs.load(SeqCst), 1);
    assert!(!S.is_cancelled());
}

#[test]
fn zero_parents_is_a_plain_root() {
    let mut m = pin!(AnyOf::<0>::new([]));
    let m = m.as_mut().link();
    assert!(!m.is_cancelled());
    assert!(m.cancel());
    let h = CancelSource::any_of(std::iter::empty::<&CancelToken>());
    assert!(!h.is_cancelled());
    assert!(h.cancel());
}

#[test]
fn dropping_unlinks_from_every_parent() {
    let a = CancelSource::new();
    let b = CancelSource::new();
    let c = Node::new();
    {
        let mut m = pin!(AnyOf::new([&*a, &*b, &*c]));
        m.as_mut().link();
        assert!(a.has_children() && b.has_children() && c.has_children());
    }
    assert!(!a.has_children() && !b.has_children() && !c.has_children());

    let h = CancelSource::any_of([&a.token(), &b.token()]);
    assert!(a.has_children() && b.has_children());
    a.cancel(); // cancelled or not, dropping unlinks
    drop(h);
    assert!(!a.has_children() && !b.has_children());
    // Many cycles leave nothing behind.
    let (ta, tb) = (a.token(), b.token());
    let cycles = if cfg!(miri) { 20 } else { 1_000 }; // fewer under Miri
    for _ in 0..cycles {
        let h = CancelSource::any_of([&ta, &tb]);
        let mut p = pin!(AnyOf::new([&*ta, &*tb]));
        p.as_mut().link();
        drop(h);
    }
    assert!(!a.has_children() && !b.has_children());
}

#[test]
fn heap_any_of_cancelled_with_the_parents_reason() {
    let a = CancelSource::new();
    let b = CancelSource::new();
    let m = CancelSource::any_of([&a.token(), &b.token()]);
    let under = m.child();
    let tok = m.token();
    b.cancel_with(Reason::Code(2));
    assert_eq!(m.reason(), Some(Reason::Code(2)));
    assert_eq!(under.reason(), Some(Reason::Code(2)));
    assert_eq!(tok.reason(), Some(Reason::Code(2)));
    a.cancel_with(Reason::Code(1));
    assert_eq!(m.reason(), Some(Reason::Code(2)));
}

#[test]
fn heap_any_of_keeps_parents_alive() {
    let a = CancelSource::new();
    let a_child = a.child();
    let m = CancelSource::any_of([&a_child.token()]);
    drop(a_child); // the link keeps the parent node alive and linked under `a`
    assert!(a.has_children());
    a.cancel_with(Reason::Code(4));
    assert_eq!(m.reason(), Some(Reason::Code(4)));
    drop(m);
    assert!(!a.has_children(), "dropping m released the parent node");
}

#[test]
fn parent_already_cancelled_at_creation_gives_a_born_cancelled_node() {
    for pos in 0..3 {
        let parents: Vec<CancelSource> = (0..3).map(|_| CancelSource::new()).collect();
        parents[pos].cancel_with(Reason::Code(pos as u32));
        let toks: Vec<CancelToken> = parents.iter().map(|p| p.token()).collect();
        {
            let m = CancelSource::any_of(&toks);
            assert_eq!(
                m.reason(),
                Some(Reason::Code(pos as u32)),
                "heap, pos {pos}"
            );
            assert!(m.child().is_cancelled());
        }
        {
            let mut m = pin!(AnyOf::new([&*toks[0], &*toks[1], &*toks[2]]));
            let m = m.as_mut().link();
            assert_eq!(
                m.reason(),
                Some(Reason::Code(pos as u32)),
                "pinned, pos {pos}"
            );
            let mut c = pin!(ChildNode::new(m));
            assert!(c.as_mut().link().is_cancelled());
        }
        for p in &parents {
            assert!(!p.has_children(), "nothing left linked (pos {pos})");
        }
    }
    // Two cancelled parents: the first listed wins.
    let a = CancelSource::new();
    let b = CancelSource::new();
    b.cancel_with(Reason::Code(2));
    a.cancel_with(Reason::Code(1));
    let m = CancelSource::any_of([&b.token(), &a.token()]);
    assert_eq!(m.reason(), Some(Reason::Code(2)));
}

#[test]
fn diamond_is_cancelled_once() {
    let root = CancelSource::new();
    let a = root.child();
    let b = root.child();
    let runs = Arc::new(AtomicUsize::new(0));
    let d = CancelSource::any_of([&a.token(), &b.token()]);
    let r2 = runs.clone();
    let _reg = d.on_cancel(move |_: &Reason| {
        r2.fetch_add(1, SeqCst);
    });
    let mut pd = pin!(AnyOf::new([&*a, &*b]));
    let pd = pd.as_mut().link();
    let r2 = runs.clone();
    let mut pcb = pin!(Callback::new(pd, move |_: &Reason| {
        r2.fetch_add(1, SeqCst);
    }));
    assert!(pcb.as_mut().register());
    let dd = d.child();
    root.cancel_with(Reason::Shutdown);
    assert_eq!(runs.load(SeqCst), 2, "each multi node's callback ran once");
    assert_eq!(d.reason(), Some(Reason::Shutdown));
    assert_eq!(pd.reason(), Some(Reason::Shutdown));
    assert_eq!(dd.reason(), Some(Reason::Shutdown));
}

#[test]
fn concurrent_parent_cancels_agree_on_one_reason() {
    let rounds = if cfg!(miri) { 10 } else { 1_000 }; // fewer under Miri
    for _ in 0..rounds {
        let a = Arc::new(CancelSource::new());
        let b = Arc::new(CancelSource::new());
        let m = CancelSource::any_of([&a.token(), &b.token()]);
        let under = m.child();
        let runs = Arc::new(AtomicUsize::new(0));
        let r2 = runs.clone();
        let _reg = m.on_cancel(move |_: &Reason| {
            r2.fetch_add(1, SeqCst);
        });
        let go = Arc::new(Barrier::new(2));
        let t = {
            let (b, go) = (b.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                b.cancel_with(Reason::Code(2));
            })
        };
        go.wait();
        a.cancel_with(Reason::Code(1));
        t.join().unwrap();
        let r = m.reason().expect("cancelled");
        assert!(r == Reason::Code(1) || r == Reason::Code(2));
        assert_eq!(under.reason(), Some(r));
        assert_eq!(runs.load(SeqCst), 1);
    }
}

#[test]
fn creating_while_parents_are_cancelled() {
    let rounds = if cfg!(miri) { 10 } else { 1_000 }; // fewer under Miri
    for i in 0..rounds {
        let a = Arc::new(CancelSource::new());
        let b = CancelSource::new();
        let go = Arc::new(Barrier::new(2));
        let t = {
            let (a, go) = (a.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                a.cancel_with(Reason::Code(i));
            })
        };
        go.wait();
        let m = CancelSource::any_of([&b.token(), &a.token()]);
        t.join().unwrap();
        assert_eq!(m.reason(), Some(Reason::Code(i)));
        drop(m);
        assert!(!a.has_children() && !b.has_children());
    }
}

#[test]
fn dropping_while_a_parent_cancels() {
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 1_000 }; // fewer under Miri
    must_finish("multi drop vs cancel", || {
        for _ in 0..ROUNDS {
            let a = Arc::new(CancelSource::new());
            let b = CancelSource::new();
            let m = CancelSource::any_of([&a.token(), &b.token()]);
            let _grandkids: Vec<_> = (0..3).map(|_| m.child()).collect();
            let go = Arc::new(Barrier::new(2));
            let t = {
                let (a, go) = (a.clone(), go.clone());
                thread::spawn(move || {
                    go.wait();
                    a.cancel();
                })
            };
            go.wait();
            drop(_grandkids);
            drop(m);
            t.join().unwrap();
            assert!(!a.has_children() && !b.has_children());
            assert!(!b.is_cancelled());
        }
    });
}
