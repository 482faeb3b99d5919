//! Why a node was cancelled.
#![deny(unsafe_code)]

use core::fmt;

#[cfg(feature = "alloc")]
use alloc::sync::Arc;

/// The cause of a cancellation: written once, before the cancelled bit is published, and
/// inherited by every descendant cancelled through its parent. The first cause wins.
///
/// Without `alloc` a reason is a small value (16 bytes on 64-bit targets). With `alloc` it can
/// also carry an application error ([`Reason::Error`]), shared by reference count so that
/// propagating it to a million descendants copies a pointer, not the error.
///
/// # Examples
///
/// ```
/// use cutoff::{Node, Reason};
///
/// let root = Node::new();
/// assert!(root.cancel_with(Reason::Code(7)));
/// assert_eq!(root.reason(), Some(Reason::Code(7)));
/// // First cause wins.
/// assert!(!root.cancel_with(Reason::Requested));
/// assert_eq!(root.reason(), Some(Reason::Code(7)));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// `cancel()` was called with no further detail.
    Requested,
    /// A deadline passed.
    DeadlineExceeded,
    /// The node was cut off because what it depended on went away (for example a timer driver
    /// or a foreign source that shut down).
    ParentGone,
    /// An orderly shutdown.
    Shutdown,
    /// An application-defined code.
    Code(u32),
    /// An application error (with the `alloc` feature).
    #[cfg(feature = "alloc")]
    Error(ErrorReason),
}

impl Reason {
    /// A reason carrying an application error.
    #[cfg(feature = "alloc")]
    pub fn error<E>(error: E) -> Self
    where
        E: core::error::Error + Send + Sync + 'static,
    {
        Self::Error(ErrorReason(Arc::new(Arc::new(error))))
    }

    /// A reason carrying an already shared application error.
    #[cfg(feature = "alloc")]
    pub fn from_arc(error: Arc<dyn core::error::Error + Send + Sync>) -> Self {
        Self::Error(ErrorReason(Arc::new(error)))
    }

    /// The application error, if this reason carries one.
    #[cfg(feature = "alloc")]
    pub fn as_error(&self) -> Option<&(dyn core::error::Error + Send + Sync + 'static)> {
        match self {
            Self::Error(e) => Some(e.get()),
            _ => None,
        }
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("Requested"),
            Self::DeadlineExceeded => f.write_str("DeadlineExceeded"),
            Self::ParentGone => f.write_str("ParentGone"),
            Self::Shutdown => f.write_str("Shutdown"),
            Self::Code(c) => f.debug_tuple("Code").field(c).finish(),
            #[cfg(feature = "alloc")]
            Self::Error(e) => f.debug_tuple("Error").field(&e.get()).finish(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("cancellation requested"),
            Self::DeadlineExceeded => f.write_str("deadline exceeded"),
            Self::ParentGone => f.write_str("cancelled because its source went away"),
            Self::Shutdown => f.write_str("shutting down"),
            Self::Code(c) => write!(f, "cancelled with code {c}"),
            #[cfg(feature = "alloc")]
            Self::Error(e) => write!(f, "cancelled: {}", e.get()),
        }
    }
}

/// An application error carried by [`Reason::Error`].
///
/// It is a thin, reference-counted pointer, so a [`Reason`] stays two words wide and cloning
/// it into every descendant is one atomic increment. Two `ErrorReason`s are equal when they
/// share the same error object.
#[cfg(feature = "alloc")]
#[derive(Clone)]
pub struct ErrorReason(Arc<Arc<dyn core::error::Error + Send + Sync>>);

#[cfg(feature = "alloc")]
impl ErrorReason {
    /// The error.
    pub fn get(&self) -> &(dyn core::error::Error + Send + Sync + 'static) {
        &**self.0
    }

    /// The error as a shared pointer.
    pub fn to_arc(&self) -> Arc<dyn core::error::Error + Send + Sync> {
        Arc::clone(&self.0)
    }
}

#[cfg(feature = "alloc")]
impl PartialEq for ErrorReason {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(feature = "alloc")]
impl Eq for ErrorReason {}

#[cfg(feature = "alloc")]
impl fmt::Debug for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.get(), f)
    }
}

/// The error returned when an operation stopped because its node was cancelled.
///
/// It carries the node's [`Reason`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancelled {
    reason: Reason,
}

impl Cancelled {
    /// Wrap a reason.
    pub fn new(reason: Reason) -> Self {
        Self { reason }
    }

    /// Why the node was cancelled.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// Take the reason out.
    pub fn into_reason(self) -> Reason {
        self.reason
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl core::error::Error for Cancelled {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        #[cfg(feature = "alloc")]
        if let Reason::Error(e) = &self.reason {
            return Some(e.get());
        }
        None
    }
}

/// Returned by `try_` registrations when the node was already cancelled, so the caller's
/// callback was not run inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlreadyCancelled;

impl fmt::Display for AlreadyCancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the node was already cancelled")
    }
}

impl core::error::Error for AlreadyCancelled {}

const _: () = assert!(core::mem::size_of::<Reason>() <= 2 * core::mem::size_of::<usize>());
