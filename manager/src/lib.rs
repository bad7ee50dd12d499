//! The Swarmlet manager: everything a manager node runs besides the worker agent.
//!
//! # Layout
//! - [`store`]: typed tables over sled, changed only by applying committed Raft entries.
//! - [`raft`]: the raft-rs `RawNode` Ready loop, its sled storage and its mTLS transport.
//! - [`manager`]: one manager (store, Raft, CA, liveness) and the helpers its services share.
//! - [`services`]: the gRPC services a manager serves (control API, CA, Raft, dispatcher).
//! - [`liveness`]: heartbeats → node `ready`/`down`.
//! - [`resolve`]: node references (ID, ID prefix, hostname) → nodes.

pub mod liveness;
pub mod manager;
pub mod raft;
pub mod resolve;
pub mod services;
pub mod store;
