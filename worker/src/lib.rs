//! The Swarmlet worker side of a node.
//!
//! # Layout
//! - [`agent`]: the node's heartbeat session with the managers, with
//!   failover between managers, reporting what the cluster wants of it.

pub mod agent;
