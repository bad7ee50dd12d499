//! Messages and gRPC services of Swarmlet, generated from `proto/swarmlet/*.proto`.
//!
//! # Layout
//! - [`objects`]: rows of the replicated store (nodes, cluster, raft members).
//! - [`store`]: what goes into the Raft log and into snapshots.
//! - [`ca`], [`raft`], [`dispatcher`], [`control`], [`logs`]: services on the mTLS listener.
//! - [`local`]: the node's own life cycle, on the unix control socket only.
#![allow(missing_docs, clippy::all)]

pub mod common {
    tonic::include_proto!("swarmlet.common");
}
pub mod objects {
    tonic::include_proto!("swarmlet.objects");
}
pub mod store {
    tonic::include_proto!("swarmlet.store");
}
pub mod ca {
    tonic::include_proto!("swarmlet.ca");
}
pub mod raft {
    tonic::include_proto!("swarmlet.raft");
}
pub mod dispatcher {
    tonic::include_proto!("swarmlet.dispatcher");
}
pub mod logs {
    tonic::include_proto!("swarmlet.logs");
}
pub mod control {
    tonic::include_proto!("swarmlet.control");
}
pub mod local {
    tonic::include_proto!("swarmlet.local");
}
