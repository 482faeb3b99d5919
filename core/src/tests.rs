//! Unit tests of the tree's internals (black-box API tests live in the workspace `tests/`).

#[cfg(all(feature = "critical-section", feature = "std", not(loom)))]
mod critical_section;
#[cfg(feature = "std")]
mod loom;
#[cfg(feature = "std")]
mod smoke;
