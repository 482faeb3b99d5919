//! Adversarial review: small API contract checks.
//!
//! Fixed (review F4): registering a spent registration is a no-op (`Ok`). Regression test.
//!
//! Run: cargo test -p cutoff-tests --release --test review_api_contracts

use std::pin::pin;

use cutoff::{AlreadyCancelled, Callback, Node, Reason};

/// Finding (low): `Callback::try_register` is documented to "return `AlreadyCancelled` without
/// running it if the node is already cancelled", and `register` to return `false` only "if
/// the node is already cancelled". After `disarm` (which hands the closure back and leaves the
/// entry `IDLE`), both report "already cancelled" on a node that is not cancelled, because
/// `try_register` folds "closure spent" into `AlreadyCancelled` (callback.rs `try_register`,
/// `if spent || g.seen() & CANCELLED != 0`).
#[test]
fn try_register_after_disarm_on_a_live_node() {
    let node = Node::new();
    let mut cb = pin!(Callback::new(&node, |_: &Reason| {}));
    assert!(cb.as_mut().register());
    assert!(cb.as_mut().disarm().is_some());
    assert!(!node.is_cancelled());
    let r = cb.as_ref().try_register();
    assert_ne!(
        r,
        Err(AlreadyCancelled),
        "try_register reports AlreadyCancelled on a node that is not cancelled"
    );
}
