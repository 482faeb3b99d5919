//! Feeding the tree from cancellation sources it does not own.
#![deny(unsafe_code)]

use core::fmt;

use crate::node::Node;
use crate::reason::Reason;

/// A cancellation signal from outside the tree: another runtime's token, an interrupt line,
/// a socket's "peer closed" event.
///
/// The source calls [`Trigger::fire`] from its own notification path (a callback list, an
/// interrupt handler); cutoff never spawns a task or a thread per link. See [`feed`].
pub trait ForeignSource {
    /// The foreign side's registration; dropping it must stop future calls to the trigger.
    type Registration;

    /// Whether the source has already fired.
    fn is_cancelled(&self) -> bool;

    /// The reason to cancel with when the source fires. Defaults to [`Reason::Requested`].
    fn reason(&self) -> Reason {
        Reason::Requested
    }

    /// Arrange for `trigger.fire(..)` to be called when the source fires.
    fn register(&self, trigger: Trigger) -> Self::Registration;
}

/// A handle that cancels one node; given to a [`ForeignSource`].
///
/// It keeps its node alive: it points at a `'static` node, or (with `alloc`) holds a reference
/// on a heap node. Firing it twice is harmless (the first reason wins).
pub struct Trigger {
    inner: TriggerInner,
}

enum TriggerInner {
    Static(&'static Node),
    #[cfg(feature = "alloc")]
    Heap(crate::CancelSource),
}

impl Trigger {
    /// A trigger for a `'static` node (for example a `static` root cancelled from an interrupt).
    pub fn from_static(node: &'static Node) -> Self {
        Self {
            inner: TriggerInner::Static(node),
        }
    }

    /// A trigger for a heap node.
    #[cfg(feature = "alloc")]
    pub fn from_source(source: &crate::CancelSource) -> Self {
        Self {
            inner: TriggerInner::Heap(source.clone_handle()),
        }
    }

    /// Cancel the node with `reason`; `true` if this call cancelled it.
    pub fn fire(&self, reason: Reason) -> bool {
        self.node().cancel_with(reason)
    }

    fn node(&self) -> &Node {
        match &self.inner {
            TriggerInner::Static(n) => n,
            #[cfg(feature = "alloc")]
            TriggerInner::Heap(s) => s,
        }
    }
}

impl Clone for Trigger {
    fn clone(&self) -> Self {
        match &self.inner {
            TriggerInner::Static(n) => Self::from_static(n),
            #[cfg(feature = "alloc")]
            TriggerInner::Heap(s) => Self::from_source(s),
        }
    }
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Trigger").field(self.node()).finish()
    }
}

/// Link a foreign source to a node: when the source fires, `trigger`'s node is cancelled with
/// the source's reason. If the source has already fired, the node is cancelled now.
///
/// Keep the returned [`Feed`] alive as long as the link should hold; dropping it drops the
/// foreign registration.
///
/// # Examples
///
/// ```
/// use std::sync::Mutex;
/// use cutoff::{CancelSource, ForeignSource, Reason, Trigger, feed};
///
/// /// A toy foreign token: a flag plus the triggers to call.
/// #[derive(Default)]
/// struct Flag(Mutex<(bool, Vec<Trigger>)>);
/// impl ForeignSource for Flag {
///     type Registration = ();
///     fn is_cancelled(&self) -> bool { self.0.lock().unwrap().0 }
///     fn register(&self, t: Trigger) { self.0.lock().unwrap().1.push(t) }
/// }
///
/// let flag = Flag::default();
/// let node = CancelSource::new();
/// let _feed = feed(&flag, Trigger::from_source(&node));
/// let triggers = { let mut g = flag.0.lock().unwrap(); g.0 = true; std::mem::take(&mut g.1) };
/// for t in triggers { t.fire(Reason::Code(1)); }
/// assert_eq!(node.reason(), Some(Reason::Code(1)));
/// ```
pub fn feed<S: ForeignSource>(source: &S, trigger: Trigger) -> Feed<S::Registration> {
    if source.is_cancelled() {
        trigger.fire(source.reason());
        return Feed { registration: None };
    }
    Feed {
        registration: Some(source.register(trigger)),
    }
}

/// The link made by [`feed`]; dropping it drops the foreign registration.
pub struct Feed<R> {
    registration: Option<R>,
}

impl<R> Feed<R> {
    /// Whether the source was already cancelled when linked (so nothing was registered).
    pub fn was_cancelled_at_link(&self) -> bool {
        self.registration.is_none()
    }
}

impl<R> fmt::Debug for Feed<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("registered", &self.registration.is_some())
            .finish()
    }
}
