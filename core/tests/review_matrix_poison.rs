//! The loom matrix (`loom_matrix.rs`, unchanged, included as a module) run again with the
//! review's poison-on-free allocator (`support/poison.rs`): `loom_matrix.rs` installs none, so a
//! late access to a freed heap node in any of its models goes unnoticed there. Here it makes
//! loom panic at the access.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target-loom \
//!     cargo test -p cutoff --profile loom --test review_matrix_poison -- <model>
//! ```
#![cfg(loom)]

#[path = "support/poison.rs"]
mod poison;

#[path = "loom_matrix.rs"]
mod matrix;
