//! Running any `Future` or `Stream` until a node is cancelled.
//!
//! [`FutureCancelExt::with_cancel`] runs a future with a node: it resolves to `Ok(output)` if
//! the future finishes, or to `Err(`[`Cancelled`]`)` carrying the node's
//! [`Reason`](crate::Reason) once the node is cancelled, dropping the future then.
//! [`StreamCancelExt::take_until_cancelled`][take_until_cancelled] (feature `futures-core`)
//! ends a stream at cancellation. Both take a `&NodeView`, so a [`Node`](crate::Node), a
//! linked [`ChildNode`](crate::ChildNode), a `CancelSource` or a `CancelToken` all work
//! through deref coercion.
//!
//! * **Allocation-free**: the node's [`Cancellation`] waiter is stored inline in the
//!   combinator, so no box, no `Arc` and no task; this works without `alloc`.
//! * **Cheap when nothing happens**: a future that is ready on its first poll costs one atomic
//!   load more than awaiting it bare; the waiter links into the node only once the inner
//!   future returns `Pending`, and unlinks in O(1) when the combinator is dropped.
//! * **Biased to cancellation**: each poll first checks the node (one `Acquire` load) and
//!   only polls the inner future if it is not cancelled. A loop over futures that are always
//!   ready (a flooded channel, a busy socket) therefore still stops at cancellation. To let a
//!   ready result win over a cancellation instead, use
//!   [`NodeView::run_until_cancelled`].
//! * **Cancel-safe**: `Err` means the inner future did not complete, so no output is thrown
//!   away; dropping the combinator at any point is as safe as dropping the inner future. To
//!   keep the inner future across a cancellation (to resume it under another node, say), pass
//!   it by reference: `(&mut fut).with_cancel(&node)` for an `Unpin` future, or
//!   `fut.as_mut().with_cancel(&node)` for a pinned one.
//!
//! # Examples
//!
//! ```
//! use cutoff::future_ext::FutureCancelExt;
//! use cutoff::{CancelSource, Reason};
//! use futures::executor::block_on;
//!
//! let request = CancelSource::new();
//!
//! // Not cancelled: the output comes through.
//! assert_eq!(block_on(async { 7 }.with_cancel(&request)), Ok(7));
//!
//! // Cancelled while pending: the error carries the reason.
//! let token = request.token();
//! let canceller = std::thread::spawn(move || request.cancel_with(Reason::Shutdown));
//! let err = block_on(std::future::pending::<()>().with_cancel(&token)).unwrap_err();
//! assert_eq!(*err.reason(), Reason::Shutdown);
//! canceller.join().unwrap();
//! ```
#![cfg_attr(
    feature = "futures-core",
    doc = "[take_until_cancelled]: StreamCancelExt::take_until_cancelled"
)]
#![cfg_attr(not(feature = "futures-core"), doc = "[take_until_cancelled]: self")]
#![deny(unsafe_code)]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::reason::Cancelled;
use crate::view::NodeView;
use crate::wait::Cancellation;

/// Run any future until a node is cancelled. Implemented for every [`Future`].
///
/// See the [module docs](self) for the rules (allocation-free, biased to cancellation,
/// cancel-safe).
pub trait FutureCancelExt: Future + Sized {
    /// Run this future until it completes (`Ok(output)`) or `node` is cancelled
    /// (`Err(`[`Cancelled`]`)` carrying the node's reason).
    ///
    /// The node is checked before the future on every poll, so a node that is already
    /// cancelled never lets the future be polled at all. Nothing is allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::pin::pin;
    /// use cutoff::future_ext::FutureCancelExt;
    /// use cutoff::{ChildNode, Node, Reason};
    /// use futures::executor::block_on;
    ///
    /// static SERVER: Node = Node::new();
    /// let mut req = pin!(ChildNode::new(&SERVER));
    /// let req = req.as_mut().link();
    ///
    /// SERVER.cancel_with(Reason::Code(503));
    /// let polled = core::cell::Cell::new(false);
    /// let out = block_on(async { polled.set(true) }.with_cancel(req));
    /// assert_eq!(out.unwrap_err().into_reason(), Reason::Code(503));
    /// assert!(!polled.get()); // cancelled before the first poll: never started
    /// ```
    ///
    /// # Cancel safety
    ///
    /// `Err` means the inner future did not complete. Pass `&mut fut` (for an `Unpin` future)
    /// or `fut.as_mut()` (for a pinned one) to keep it after a cancellation.
    fn with_cancel(self, node: &NodeView) -> WithCancel<'_, Self> {
        WithCancel {
            future: self,
            cancelled: node.cancelled(),
            node,
        }
    }
}

impl<F: Future> FutureCancelExt for F {}

pin_project! {
    /// Future returned by [`FutureCancelExt::with_cancel`].
    ///
    /// Resolves to `Ok(output)` if the inner future completes, or to `Err(`[`Cancelled`]`)`
    /// once the node is cancelled. Holds the inner future and the node's [`Cancellation`]
    /// waiter inline; allocates nothing.
    #[must_use = "futures do nothing unless polled"]
    pub struct WithCancel<'a, F> {
        #[pin]
        future: F,
        #[pin]
        cancelled: Cancellation<'a>,
        node: &'a NodeView,
    }
}

impl<F: Future> Future for WithCancel<'_, F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Cancellation first: one load, and it keeps loops over always-ready futures stoppable.
        if let Some(reason) = this.node.reason() {
            return Poll::Ready(Err(Cancelled::new(reason)));
        }
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        // Links the waiter on the first pending poll (or finds the node cancelled meanwhile).
        match this.cancelled.poll(cx) {
            Poll::Ready(reason) => Poll::Ready(Err(Cancelled::new(reason))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> core::fmt::Debug for WithCancel<'_, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WithCancel")
            .field("node", &self.node)
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "futures-core")]
pub use stream::{StreamCancelExt, TakeUntilCancelled};

#[cfg(feature = "futures-core")]
mod stream {
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll};

    use futures_core::stream::{FusedStream, Stream};
    use pin_project_lite::pin_project;

    use crate::reason::Reason;
    use crate::view::NodeView;
    use crate::wait::Cancellation;

    /// End any stream when a node is cancelled (feature `futures-core`). Implemented for every
    /// [`Stream`].
    pub trait StreamCancelExt: Stream + Sized {
        /// Yield this stream's items until it ends or `node` is cancelled, whichever comes
        /// first; then end (`None`) for good.
        ///
        /// The node is checked before the stream on every poll, so an always-ready stream
        /// still ends at cancellation, and a node cancelled before the first poll yields no
        /// item at all. Items still buffered in the inner stream are not lost: reach them through
        /// [`get_pin_mut`](TakeUntilCancelled::get_pin_mut), or pass `&mut stream` for an
        /// `Unpin` stream and keep reading it afterwards. Nothing is allocated.
        ///
        /// # Examples
        ///
        /// ```
        /// use core::pin::pin;
        /// use cutoff::future_ext::StreamCancelExt;
        /// use cutoff::{CancelSource, Reason};
        /// use futures::executor::block_on;
        /// use futures::stream::{self, StreamExt};
        ///
        /// let feed = CancelSource::new();
        /// let mut seen = Vec::new();
        /// let mut items = pin!(stream::iter(1..).take_until_cancelled(&feed));
        /// block_on(async {
        ///     while let Some(i) = items.next().await {
        ///         seen.push(i);
        ///         if i == 3 {
        ///             feed.cancel_with(Reason::Code(3));
        ///         }
        ///     }
        /// });
        /// assert_eq!(seen, [1, 2, 3]); // an endless stream, ended by the node
        /// assert_eq!(items.cancelled_with(), Some(&Reason::Code(3)));
        /// ```
        fn take_until_cancelled(self, node: &NodeView) -> TakeUntilCancelled<'_, Self> {
            TakeUntilCancelled {
                stream: self,
                cancelled: node.cancelled(),
                node,
                state: State::Running,
            }
        }
    }

    impl<S: Stream> StreamCancelExt for S {}

    #[derive(Debug)]
    enum State {
        Running,
        /// The inner stream ended.
        Exhausted,
        /// The node was cancelled, with this reason.
        Cancelled(Reason),
    }

    pin_project! {
        /// Stream returned by [`StreamCancelExt::take_until_cancelled`].
        ///
        /// Holds the inner stream and the node's [`Cancellation`] waiter inline; allocates
        /// nothing. Once it has ended (by cancellation or because the inner stream ended) it
        /// keeps returning `None` without polling anything ([`FusedStream`]).
        #[must_use = "streams do nothing unless polled"]
        pub struct TakeUntilCancelled<'a, S> {
            #[pin]
            stream: S,
            #[pin]
            cancelled: Cancellation<'a>,
            node: &'a NodeView,
            state: State,
        }
    }

    impl<S> TakeUntilCancelled<'_, S> {
        /// The reason, if the stream ended because the node was cancelled; `None` while it
        /// runs or if the inner stream ended by itself.
        pub fn cancelled_with(&self) -> Option<&Reason> {
            match &self.state {
                State::Cancelled(r) => Some(r),
                _ => None,
            }
        }

        /// The inner stream.
        pub fn get_ref(&self) -> &S {
            &self.stream
        }

        /// The inner stream, pinned: to drain the items it still holds after the node was
        /// cancelled, or to keep reading it past the cancellation.
        pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
            self.project().stream
        }
    }

    impl<S: Stream> Stream for TakeUntilCancelled<'_, S> {
        type Item = S::Item;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
            let mut this = self.project();
            if !matches!(this.state, State::Running) {
                return Poll::Ready(None);
            }
            if let Some(reason) = this.node.reason() {
                *this.state = State::Cancelled(reason);
                return Poll::Ready(None);
            }
            match this.stream.poll_next(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => {
                    *this.state = State::Exhausted;
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            match this.cancelled.as_mut().poll(cx) {
                Poll::Ready(reason) => {
                    *this.state = State::Cancelled(reason);
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            }
        }

        fn size_hint(&self) -> (usize, Option<usize>) {
            match self.state {
                State::Running => (0, self.stream.size_hint().1),
                _ => (0, Some(0)),
            }
        }
    }

    impl<S: Stream> FusedStream for TakeUntilCancelled<'_, S> {
        fn is_terminated(&self) -> bool {
            !matches!(self.state, State::Running)
        }
    }

    impl<S> core::fmt::Debug for TakeUntilCancelled<'_, S> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("TakeUntilCancelled")
                .field("node", &self.node)
                .field("state", &self.state)
                .finish_non_exhaustive()
        }
    }
}
