//! Consensus: raft-rs `RawNode` driven by a Ready loop on its own thread,
//! sled-backed storage, and a gRPC transport between managers.

pub mod handle;
pub mod node;
pub mod storage;
pub mod transport;

pub use handle::{ProposeError, RaftHandle, RaftStatus};
pub use node::{RaftConfig, Transport};
