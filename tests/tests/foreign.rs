//! Rule 9: foreign cancellation sources feed the tree through `feed()` and `Trigger`, without a
//! task or thread per link.

use std::sync::{Arc, Mutex};

use cutoff::{CancelSource, ChildNode, ForeignSource, Node, Reason, Trigger, feed};

/// A toy foreign token: a fired flag plus the triggers to call, with registrations that remove
/// their trigger when dropped.
#[derive(Default)]
struct Toy {
    inner: Mutex<ToyInner>,
    reason: Option<Reason>,
}

#[derive(Default)]
struct ToyInner {
    fired: bool,
    next_id: u64,
    triggers: Vec<(u64, Trigger)>,
}

struct ToyReg {
    toy: Arc<Toy>,
    id: u64,
}

impl Drop for ToyReg {
    fn drop(&mut self) {
        self.toy
            .inner
            .lock()
            .unwrap()
            .triggers
            .retain(|(id, _)| *id != self.id);
    }
}

/// `ForeignSource` for a shared handle, so registrations can point back at the source.
struct ToyHandle(Arc<Toy>);

impl ForeignSource for ToyHandle {
    type Registration = ToyReg;
    fn is_cancelled(&self) -> bool {
        self.0.inner.lock().unwrap().fired
    }
    fn reason(&self) -> Reason {
        self.0.reason.clone().unwrap_or(Reason::Requested)
    }
    fn register(&self, trigger: Trigger) -> ToyReg {
        let mut g = self.0.inner.lock().unwrap();
        let id = g.next_id;
        g.next_id += 1;
        g.triggers.push((id, trigger));
        ToyReg {
            toy: self.0.clone(),
            id,
        }
    }
}

impl ToyHandle {
    fn new(reason: Option<Reason>) -> Self {
        Self(Arc::new(Toy {
            inner: Mutex::default(),
            reason,
        }))
    }
    /// Fire from the foreign side: call every trigger outside the foreign lock.
    fn fire(&self) -> usize {
        let triggers = {
            let mut g = self.0.inner.lock().unwrap();
            g.fired = true;
            std::mem::take(&mut g.triggers)
        };
        let r = self.reason();
        triggers.iter().filter(|(_, t)| t.fire(r.clone())).count()
    }
    fn registered(&self) -> usize {
        self.0.inner.lock().unwrap().triggers.len()
    }
}

#[test]
fn feed_cancels_a_heap_node_when_the_source_fires() {
    let toy = ToyHandle::new(Some(Reason::Code(77)));
    let node = CancelSource::new();
    let child = node.child();
    let f = feed(&toy, Trigger::from_source(&node));
    assert!(!f.was_cancelled_at_link());
    assert_eq!(toy.registered(), 1);
    assert!(!node.is_cancelled());
    assert_eq!(toy.fire(), 1);
    assert_eq!(node.reason(), Some(Reason::Code(77)));
    assert_eq!(child.reason(), Some(Reason::Code(77)));
}

#[test]
fn trigger_from_static_node() {
    static ROOT: Node = Node::new();
    let toy = ToyHandle::new(Some(Reason::Shutdown));
    let mut c = std::pin::pin!(ChildNode::new(&ROOT));
    let c = c.as_mut().link();
    let _f = feed(&toy, Trigger::from_static(&ROOT));
    assert_eq!(toy.fire(), 1);
    assert_eq!(ROOT.reason(), Some(Reason::Shutdown));
    assert_eq!(c.reason(), Some(Reason::Shutdown));
}

#[test]
fn already_fired_source_cancels_at_link_without_registering() {
    let toy = ToyHandle::new(Some(Reason::DeadlineExceeded));
    toy.fire();
    let node = CancelSource::new();
    let f = feed(&toy, Trigger::from_source(&node));
    assert!(f.was_cancelled_at_link());
    assert_eq!(toy.registered(), 0);
    assert_eq!(node.reason(), Some(Reason::DeadlineExceeded));
}

#[test]
fn default_reason_is_requested() {
    let toy = ToyHandle::new(None);
    let node = CancelSource::new();
    let _f = feed(&toy, Trigger::from_source(&node));
    toy.fire();
    assert_eq!(node.reason(), Some(Reason::Requested));
}

#[test]
fn dropping_the_feed_drops_the_foreign_registration() {
    let toy = ToyHandle::new(None);
    let node = CancelSource::new();
    let f = feed(&toy, Trigger::from_source(&node));
    assert_eq!(toy.registered(), 1);
    drop(f);
    assert_eq!(toy.registered(), 0);
    assert_eq!(toy.fire(), 0);
    assert!(!node.is_cancelled());
}

#[test]
fn trigger_keeps_its_heap_node_alive_and_fires_once() {
    let toy = ToyHandle::new(Some(Reason::Code(1)));
    let root = CancelSource::new();
    let child = root.child();
    let tok = child.token();
    let t = Trigger::from_source(&child);
    let t2 = t.clone();
    let _f = feed(&toy, t);
    drop(child); // the trigger owns the node now (with the token)
    assert_eq!(toy.fire(), 1);
    assert_eq!(tok.reason(), Some(Reason::Code(1)));
    assert!(!t2.fire(Reason::Code(2)), "second fire is harmless");
    assert_eq!(tok.reason(), Some(Reason::Code(1)));
    assert!(!root.is_cancelled());
}

#[test]
fn one_source_feeds_many_nodes_from_another_thread() {
    let toy = Arc::new(ToyHandle::new(Some(Reason::Code(5))));
    let nodes: Vec<CancelSource> = (0..100).map(|_| CancelSource::new()).collect();
    let feeds: Vec<_> = nodes
        .iter()
        .map(|n| feed(&*toy, Trigger::from_source(n)))
        .collect();
    let t = {
        let toy = toy.clone();
        std::thread::spawn(move || toy.fire())
    };
    assert_eq!(t.join().unwrap(), 100);
    assert!(nodes.iter().all(|n| n.reason() == Some(Reason::Code(5))));
    drop(feeds);
}
