//! Unit tests of the tree's internals (black-box API tests live in the workspace `tests/`).

mod loom;
mod smoke;
