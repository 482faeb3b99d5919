//! Threads that receive a token and are cancelled and joined when their handle goes, in the
//! spirit of C++20 `std::jthread` (feature `std`).
//!
//! [`spawn`] starts a thread with a fresh node of its own and hands the closure a
//! [`CancelToken`] for it; [`spawn_under`] hangs that node under a parent, so cancelling the
//! parent (a pool, a server) cancels the thread too. The thread checks
//! [`is_cancelled`](crate::NodeView::is_cancelled) between steps, or blocks in
//! [`wait`](crate::NodeView::wait) / [`wait_timeout`](crate::NodeView::wait_timeout), or
//! registers a callback to interrupt a blocking call: cancellation is cooperative.
//!
//! The [`JoinHandle`] follows `jthread`:
//!
//! | | cancels the thread's node | joins | a panic in the thread |
//! |---|---|---|---|
//! | drop | yes ([`Reason::Requested`]) | yes | resumed in the dropping thread (dropped if that thread is already panicking) |
//! | [`join`](JoinHandle::join) | no | yes | resumed in the joining thread |
//! | [`try_join`](JoinHandle::try_join) | no | yes | returned as `Err(payload)` |
//! | [`cancel_and_join`](JoinHandle::cancel_and_join) | yes | yes | resumed in the joining thread |
//! | [`into_parts`](JoinHandle::into_parts) | no | no (you get std's handle) | yours to handle |
//!
//! `join` does not cancel, as `jthread::join` does not: use it to wait for a thread that
//! finishes on its own, and `cancel_and_join` (or drop) to stop one. A panic is never lost
//! silently: it surfaces from `join`, `cancel_and_join` or the drop, except when the drop
//! itself runs during a panic (a second panic would abort), where the thread's payload is
//! dropped.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use cutoff::CancelToken;
//!
//! let ticker = cutoff::thread::spawn(|token: CancelToken| {
//!     let mut ticks = 0u32;
//!     while token.wait_timeout(Duration::from_millis(1)).is_none() {
//!         ticks += 1; // one step of work
//!     }
//!     ticks
//! });
//! std::thread::sleep(Duration::from_millis(5));
//! drop(ticker); // cancels the thread's node, then joins
//!
//! // A thread that finishes by itself is joined without being cancelled.
//! let sum = cutoff::thread::spawn(|_token| (1..=10).sum::<u32>());
//! assert_eq!(sum.join(), 55);
//! ```
#![deny(unsafe_code)]

use core::fmt;

use crate::ext::Parent;
use crate::reason::Reason;
use crate::token::{CancelSource, CancelToken};

/// Spawn a thread with a new root node; the closure gets a token for it.
///
/// Dropping the returned handle cancels the node and joins the thread; see the
/// [module docs](self) for `join` and panics.
///
/// # Panics
///
/// If the operating system cannot create the thread (as [`std::thread::spawn`]); use
/// [`spawn_with`] to get the error instead.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce(CancelToken) -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_under(Parent::Root, f)
}

/// Spawn a thread whose node is a child of `parent` (a [`CancelSource`], a [`CancelToken`]
/// or a `static` node): cancelling the parent cancels the thread too, with the parent's
/// reason.
///
/// # Examples
///
/// ```
/// use cutoff::{CancelSource, CancelToken, Reason};
///
/// let pool = CancelSource::new();
/// let workers: Vec<_> = (0..2)
///     .map(|_| cutoff::thread::spawn_under(&pool, |token: CancelToken| token.wait()))
///     .collect();
/// pool.cancel_with(Reason::Shutdown);
/// for w in workers {
///     assert_eq!(w.join(), Reason::Shutdown);
/// }
/// ```
///
/// # Panics
///
/// If the operating system cannot create the thread; see [`spawn_with`].
pub fn spawn_under<'a, F, T>(parent: impl Into<Parent<'a>>, f: F) -> JoinHandle<T>
where
    F: FnOnce(CancelToken) -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_with(std::thread::Builder::new(), parent, f).expect("failed to spawn thread")
}

/// Spawn a thread configured by `builder` (name, stack size) whose node hangs under `parent`
/// ([`Parent::Root`] for none).
///
/// # Errors
///
/// The error of [`std::thread::Builder::spawn`] if the thread cannot be created; the node
/// made for it is dropped then.
pub fn spawn_with<'a, F, T>(
    builder: std::thread::Builder,
    parent: impl Into<Parent<'a>>,
    f: F,
) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce(CancelToken) -> T + Send + 'static,
    T: Send + 'static,
{
    let source = new_node(parent.into());
    let token = source.token();
    let thread = builder.spawn(move || f(token))?;
    Ok(JoinHandle {
        source,
        thread: Some(thread),
    })
}

fn new_node(parent: Parent<'_>) -> CancelSource {
    match parent {
        Parent::Root => CancelSource::new(),
        Parent::Static(view) => CancelSource::child_of(view),
        Parent::Heap(_) => parent
            .view()
            .and_then(crate::NodeView::to_token)
            .expect("a borrowed heap handle keeps its node alive")
            .child(),
    }
}

/// An owned permission to join a thread started by [`spawn`]; dropping it cancels the thread's
/// node and joins.
///
/// See the [module docs](self) for what each way of letting go does with cancellation and
/// with a panic in the thread.
#[must_use = "dropping the handle cancels the thread and joins it at once"]
pub struct JoinHandle<T> {
    source: CancelSource,
    /// `Some` until joined or taken apart.
    thread: Option<std::thread::JoinHandle<T>>,
}

impl<T> JoinHandle<T> {
    /// Cancel the thread's node with [`Reason::Requested`] (C++ `request_stop`); `true` if this
    /// call cancelled it. Does not wait for the thread.
    pub fn cancel(&self) -> bool {
        self.source.cancel()
    }

    /// Cancel the thread's node with `reason`; `true` if this call cancelled it.
    pub fn cancel_with(&self, reason: Reason) -> bool {
        self.source.cancel_with(reason)
    }

    /// The thread's node (to make children under it, or to check it).
    pub fn source(&self) -> &CancelSource {
        &self.source
    }

    /// Another token for the thread's node.
    pub fn token(&self) -> CancelToken {
        self.source.token()
    }

    /// The thread.
    pub fn thread(&self) -> &std::thread::Thread {
        self.inner().thread()
    }

    /// Whether the thread's closure has returned (or panicked).
    pub fn is_finished(&self) -> bool {
        self.inner().is_finished()
    }

    /// Wait for the thread to finish, **without** cancelling it (as `jthread::join`), and
    /// return its result.
    ///
    /// # Panics
    ///
    /// If the thread panicked, its panic is resumed here ([`std::panic::resume_unwind`]).
    pub fn join(self) -> T {
        match self.try_join() {
            Ok(v) => v,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Wait for the thread to finish, without cancelling it; a panic comes back as
    /// `Err(payload)`, as from [`std::thread::JoinHandle::join`].
    ///
    /// # Errors
    ///
    /// The thread's panic payload if it panicked.
    pub fn try_join(mut self) -> std::thread::Result<T> {
        self.take_inner().join()
    }

    /// Cancel the thread's node, then wait for the thread and return its result (what drop
    /// does, with the result).
    ///
    /// # Panics
    ///
    /// If the thread panicked, its panic is resumed here.
    pub fn cancel_and_join(self) -> T {
        self.source.cancel();
        self.join()
    }

    /// Take the handle apart: std's handle and the node's source. Nothing is cancelled or
    /// joined, now or later; the thread runs on, like a detached `jthread`, unless you cancel
    /// the source.
    pub fn into_parts(mut self) -> (std::thread::JoinHandle<T>, CancelSource) {
        let thread = self.take_inner();
        (thread, self.source.clone_handle())
    }

    fn inner(&self) -> &std::thread::JoinHandle<T> {
        self.thread
            .as_ref()
            .expect("a JoinHandle holds its thread until consumed")
    }

    fn take_inner(&mut self) -> std::thread::JoinHandle<T> {
        self.thread
            .take()
            .expect("a JoinHandle holds its thread until consumed")
    }
}

impl<T> Drop for JoinHandle<T> {
    /// Cancel the thread's node with [`Reason::Requested`] and join the thread.
    ///
    /// If the thread panicked, the panic is resumed here, unless this thread is already
    /// panicking (then the payload is dropped, since a second panic would abort).
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.source.cancel();
        if let Err(payload) = thread.join()
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(payload);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("source", &self.source)
            .field("thread", &self.thread.as_ref().map(|t| t.thread().id()))
            .finish()
    }
}
