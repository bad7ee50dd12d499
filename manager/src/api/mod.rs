//! The manager's front ends: how clients reach the operations in
//! [`crate::ops`]. Today the gRPC services ([`grpc`]); each front end
//! authorizes the caller, forwards writes to the leader and maps
//! [`crate::ops::OpsError`] to its own statuses.

pub mod grpc;
