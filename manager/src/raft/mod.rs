//! Consensus: raft-rs `RawNode` driven by a Ready loop on its own thread,
//! sled-backed storage, and a gRPC transport between managers.

pub mod storage;
