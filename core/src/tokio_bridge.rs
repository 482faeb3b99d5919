//! Bridges to tokio-util's `CancellationToken`, both ways, without a task per link (issue 7,
//! item 1).
