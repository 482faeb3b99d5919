//! Running any `Future` or `Stream` until a node is cancelled (issue 7, item 2).
