//! Deadline propagation across processes in gRPC's `grpc-timeout` form (issue 7, item 5).
