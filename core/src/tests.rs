//! Unit tests of the tree's internals (black-box API tests live in the workspace `tests/`).

#[cfg(feature = "std")]
mod loom;
#[cfg(feature = "std")]
mod smoke;
