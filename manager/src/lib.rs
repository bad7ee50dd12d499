//! The Swarmlet manager: everything a manager node runs besides the worker agent.
//!
//! # Layout
//! - [`store`]: typed tables over sled, changed only by applying committed Raft entries.
//! - [`raft`]: the raft-rs `RawNode` Ready loop, its sled storage and its mTLS transport.
//! - [`manager`]: wiring of one manager (store, Raft, CA, liveness) and its public handle.
//! - [`services`]: the gRPC services a manager serves (control API, CA, Raft, dispatcher).
//! - [`liveness`]: heartbeats → node `ready`/`down`.

pub mod raft;
pub mod store;
