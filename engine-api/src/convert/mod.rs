//! Swarmlet's objects in Docker's shapes (and a client's spec in
//! Swarmlet's): pure functions, unit-tested without a cluster.

pub mod objects;
pub mod residual;
pub mod spec;
pub mod time;
