//! Bridges to tokio-util's [`CancellationToken`], both ways, without a task per link
//! (feature `tokio-util`).
//!
//! Code that already passes tokio-util tokens around can hang a cutoff tree off one of them,
//! and a cutoff tree can drive a library that only understands tokio-util tokens:
//!
//! * [`link_from_tokio`]: a cutoff node is cancelled when a tokio-util token is. The link is
//!   a [`Waker`]: it polls the token's `cancelled_owned()` future once, with a waker that
//!   cancels the node when tokio-util wakes it. No task is spawned and nothing is polled
//!   periodically; a spurious wake-up just polls the future again (which re-checks the token
//!   and re-registers). [`CancellationToken`] also implements [`ForeignSource`], so
//!   [`feed`](crate::feed) links it to any [`Trigger`], including one for a `static` node.
//! * [`link_to_tokio`]: a tokio-util token is cancelled when a cutoff node is. The link is an
//!   ordinary cutoff callback ([`CancelToken::on_cancel`]) that calls
//!   [`CancellationToken::cancel`]; it runs on the cancelling thread, outside cutoff's locks.
//!
//! Each link returns a guard ([`FromTokio`], [`ToTokio`]) that unlinks when dropped: the
//! tokio-util waiter or the cutoff callback is removed, and the link lets go of both sides,
//! so a long-lived token does not accumulate dead links. After the drop returns, a
//! cancellation that *starts* later on the source side no longer reaches the other side;
//! one already under way on another thread may still finish (cutoff's first-reason-wins
//! rule makes that harmless). Forgetting a guard (`mem::forget`) keeps its link for as long
//! as the source side lives, like any forgotten registration.
//!
//! # Reasons
//!
//! A tokio-util token carries no reason. A node cancelled through [`link_from_tokio`] gets
//! [`Reason::Requested`], the reason of a plain [`cancel`](crate::Node::cancel), since
//! tokio-util's `cancel()` is exactly that; use [`link_from_tokio_with`] to pick another (for
//! example [`Reason::Shutdown`] when the token is a process-wide shutdown signal). In the
//! other direction the cutoff reason is dropped, since tokio-util cannot store it; read it
//! from the cutoff node.
//!
//! # Already cancelled at link time
//!
//! | link | source side already cancelled | target side already cancelled |
//! |---|---|---|
//! | [`link_from_tokio`] | the node is cancelled before the call returns | nothing is registered |
//! | [`link_to_tokio`] | the token is cancelled before the call returns | nothing is registered |
//!
//! In every one of those cases the guard comes back unlinked
//! ([`is_linked`](FromTokio::is_linked) is `false`) and dropping it does nothing.
//!
//! # Examples
//!
//! ```
//! use cutoff::tokio_bridge::{link_from_tokio_with, link_to_tokio};
//! use cutoff::{CancelSource, Reason};
//! use tokio_util::sync::CancellationToken;
//!
//! // The application's tokio-util shutdown token drives a cutoff tree...
//! let shutdown = CancellationToken::new();
//! let server = CancelSource::new();
//! let _from = link_from_tokio_with(&shutdown, &server, Reason::Shutdown);
//!
//! // ...and a cutoff node deep in that tree drives a library that takes tokio-util tokens.
//! let request = server.child();
//! let for_library = CancellationToken::new();
//! let _to = link_to_tokio(&request.token(), for_library.clone());
//!
//! shutdown.cancel();
//! assert_eq!(request.reason(), Some(Reason::Shutdown));
//! assert!(for_library.is_cancelled());
//! ```
//!
//! A pinned or `static` node has no [`CancelToken`]; register the callback directly:
//!
//! ```
//! use core::pin::pin;
//! use cutoff::{Callback, Node, Reason};
//! use tokio_util::sync::CancellationToken;
//!
//! static ROOT: Node = Node::new();
//! let tok = CancellationToken::new();
//! let t = tok.clone();
//! let mut link = pin!(Callback::new(&ROOT, move |_: &Reason| t.cancel()));
//! link.as_mut().register();
//! ROOT.cancel();
//! assert!(tok.is_cancelled());
//! ```
#![deny(unsafe_code)]

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Waker};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Wake;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::foreign::{ForeignSource, Trigger};
use crate::reason::Reason;
use crate::token::{CancelSource, CancelToken, OnCancel};

// ---- tokio-util -> cutoff ---------------------------------------------------------------

/// Cancel `node` (with [`Reason::Requested`]) when `tokio` is cancelled.
///
/// No task is spawned: the link is a waker registered with tokio-util. If `tokio` is already
/// cancelled, `node` is cancelled before this returns; if `node` is already cancelled,
/// nothing is registered. Either way the returned guard is then unlinked. Keep the guard for
/// as long as the link should hold; dropping it unlinks. See the [module docs](self).
///
/// # Examples
///
/// ```
/// use cutoff::tokio_bridge::link_from_tokio;
/// use cutoff::{CancelSource, Reason};
/// use tokio_util::sync::CancellationToken;
///
/// let tokio = CancellationToken::new();
/// let node = CancelSource::new();
/// let link = link_from_tokio(&tokio, &node);
/// assert!(link.is_linked());
/// tokio.cancel();
/// assert_eq!(node.reason(), Some(Reason::Requested));
/// assert!(!link.is_linked());
/// ```
pub fn link_from_tokio(tokio: &CancellationToken, node: &CancelSource) -> FromTokio {
    link_from_tokio_with(tokio, node, Reason::Requested)
}

/// Cancel `node` with `reason` when `tokio` is cancelled. See [`link_from_tokio`].
pub fn link_from_tokio_with(
    tokio: &CancellationToken,
    node: &CancelSource,
    reason: Reason,
) -> FromTokio {
    if node.is_cancelled() {
        return FromTokio { link: None };
    }
    if tokio.is_cancelled() {
        node.cancel_with(reason);
        return FromTokio { link: None };
    }
    FromTokio::register(tokio, Trigger::from_source(node), reason)
}

/// A tokio-util token as a [`ForeignSource`]: [`feed`](crate::feed)`(&token, trigger)` cancels
/// the trigger's node with [`Reason::Requested`] when the token is cancelled, through the same
/// waker link as [`link_from_tokio`]. Use it for nodes that [`link_from_tokio`] does not take,
/// such as a `static` root ([`Trigger::from_static`]).
///
/// ```
/// use cutoff::{Node, Reason, Trigger, feed};
/// use tokio_util::sync::CancellationToken;
///
/// static ROOT: Node = Node::new();
/// let tokio = CancellationToken::new();
/// let _feed = feed(&tokio, Trigger::from_static(&ROOT));
/// tokio.cancel();
/// assert_eq!(ROOT.reason(), Some(Reason::Requested));
/// ```
impl ForeignSource for CancellationToken {
    type Registration = FromTokio;

    fn is_cancelled(&self) -> bool {
        CancellationToken::is_cancelled(self)
    }

    fn register(&self, trigger: Trigger) -> FromTokio {
        FromTokio::register(self, trigger, Reason::Requested)
    }
}

/// The link made by [`link_from_tokio`]: dropping it unlinks (the waiter is removed from the
/// tokio-util token and the node's handle is released).
///
/// While linked, the link holds a handle on the node (so the node lives at least as long as
/// the link can fire) and one waiter on the token; it lets go of both as soon as it fires.
#[must_use = "dropping the guard unlinks at once"]
pub struct FromTokio {
    link: Option<Arc<Link>>,
}

impl FromTokio {
    fn register(tokio: &CancellationToken, trigger: Trigger, reason: Reason) -> Self {
        let link = Arc::new(Link {
            state: Mutex::new(LinkState {
                wait: Some(Box::pin(tokio.clone().cancelled_owned())),
                trigger: Some(trigger),
                reason,
            }),
        });
        // The first poll registers the waker, or finds the token cancelled and fires now.
        link.poll();
        Self { link: Some(link) }
    }

    /// Whether the link is in place: registered, and the token has not fired through it yet.
    /// `false` once the node was cancelled through it, and when either side was already
    /// cancelled at link time.
    pub fn is_linked(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.lock().wait.is_some())
    }
}

impl Drop for FromTokio {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            let mut st = link.lock();
            let wait = st.wait.take();
            let trigger = st.trigger.take();
            drop(st);
            // Dropping the future removes its waiter (and our waker) from tokio-util, which
            // breaks the link <-> future cycle; dropping the trigger releases the node.
            drop(wait);
            drop(trigger);
        }
    }
}

impl fmt::Debug for FromTokio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromTokio")
            .field("linked", &self.is_linked())
            .finish()
    }
}

/// The shared part of a tokio-util -> cutoff link; it is also the waker.
struct Link {
    state: Mutex<LinkState>,
}

struct LinkState {
    /// The tokio-util waiter, `Some` while linked. It holds a clone of the link's waker, so
    /// the link and this future form a reference cycle, broken by taking the future out
    /// (when the link fires and when its guard drops).
    wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// The node to cancel; taken when the link fires or unlinks.
    trigger: Option<Trigger>,
    reason: Reason,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // Nothing panics while the lock is held except tokio-util's own poll; the state is
        // consistent at every point, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Poll the waiter with this link's waker; cancel the node if the token has fired.
    ///
    /// Called for the first poll and from every wake-up. A spurious wake-up finds the future
    /// still pending: polling it re-checks the token and re-registers the waker.
    fn poll(self: &Arc<Self>) {
        let waker = Waker::from(Arc::clone(self));
        let mut cx = Context::from_waker(&waker);
        let mut st = self.lock();
        let Some(wait) = st.wait.as_mut() else {
            return; // already fired or unlinked
        };
        if wait.as_mut().poll(&mut cx).is_pending() {
            return;
        }
        let wait = st.wait.take();
        let trigger = st.trigger.take();
        let reason = st.reason.clone();
        drop(st);
        // Outside our lock: tokio-util takes its own, and cancelling runs cutoff callbacks,
        // which may drop this link's guard.
        drop(wait);
        if let Some(trigger) = trigger {
            trigger.fire(reason);
        }
    }
}

impl Wake for Link {
    fn wake(self: Arc<Self>) {
        self.poll();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.poll();
    }
}

// ---- cutoff -> tokio-util ---------------------------------------------------------------

type CancelTokio = Box<dyn FnOnce(&Reason) + Send>;

/// Cancel `tokio` when `node` is cancelled.
///
/// The link is a cutoff callback that calls [`CancellationToken::cancel`] on the cancelling
/// thread; no task is spawned. If `node` is already cancelled, `tokio` is cancelled before
/// this returns; if `tokio` is already cancelled, nothing is registered. Either way the
/// returned guard is then unlinked. Dropping the guard unregisters the callback (waiting for
/// a run in progress on another thread, so after the drop `tokio.cancel()` is not running and
/// will not run through this link). The cutoff reason does not cross: tokio-util tokens
/// carry none.
///
/// A [`CancelSource`] gives its token with [`CancelSource::token`]; for pinned and `static`
/// nodes, register a [`Callback`](crate::Callback) (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use cutoff::tokio_bridge::link_to_tokio;
/// use cutoff::CancelSource;
/// use tokio_util::sync::CancellationToken;
///
/// let node = CancelSource::new();
/// let tokio = CancellationToken::new();
/// let link = link_to_tokio(&node.token(), tokio.clone());
/// node.cancel();
/// assert!(tokio.is_cancelled());
/// assert!(!link.is_linked());
/// ```
pub fn link_to_tokio(node: &CancelToken, tokio: CancellationToken) -> ToTokio {
    if tokio.is_cancelled() {
        return ToTokio { reg: None };
    }
    let cancel: CancelTokio = Box::new(move |_: &Reason| tokio.cancel());
    ToTokio {
        reg: Some(node.on_cancel(cancel)),
    }
}

/// The link made by [`link_to_tokio`]: dropping it unregisters the callback.
#[must_use = "dropping the guard unlinks at once"]
pub struct ToTokio {
    reg: Option<OnCancel<CancelTokio>>,
}

impl ToTokio {
    /// Whether the link is in place: registered, and the node has not been cancelled yet.
    /// `false` once the token was cancelled through it, and when either side was already
    /// cancelled at link time.
    pub fn is_linked(&self) -> bool {
        self.reg.as_ref().is_some_and(OnCancel::is_registered)
    }
}

impl fmt::Debug for ToTokio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToTokio")
            .field("linked", &self.is_linked())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wake-up while the token is not cancelled (spurious, or from a stale waker) re-polls,
    /// stays linked and does not cancel; the real cancellation still gets through after it.
    #[test]
    fn spurious_wake_keeps_the_link() {
        let tokio = CancellationToken::new();
        let node = CancelSource::new();
        let link = link_from_tokio(&tokio, &node);
        let shared = Arc::clone(link.link.as_ref().unwrap());
        let waker = Waker::from(Arc::clone(&shared));
        waker.wake_by_ref();
        shared.wake_by_ref();
        assert!(link.is_linked());
        assert!(!node.is_cancelled());
        tokio.cancel();
        assert_eq!(node.reason(), Some(Reason::Requested));
        assert!(!link.is_linked());
        // A late wake-up after firing is a no-op.
        waker.wake();
        drop(link);
        // The guard is gone and the future with its waker was dropped: only `shared` is left.
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    /// Dropping the guard breaks the link <-> future cycle: nothing keeps the link alive.
    #[test]
    fn drop_frees_the_link() {
        let tokio = CancellationToken::new();
        let node = CancelSource::new();
        let link = link_from_tokio(&tokio, &node);
        let weak = Arc::downgrade(link.link.as_ref().unwrap());
        assert!(Arc::strong_count(&weak.upgrade().unwrap()) >= 2); // guard + registered waker
        drop(link);
        assert!(weak.upgrade().is_none());
        tokio.cancel();
        assert!(!node.is_cancelled());
    }
}
