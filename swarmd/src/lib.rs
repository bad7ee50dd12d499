//! The Swarmlet node daemon as a library, so tests can run many nodes in one process.
//!
//! # Layout
//! - [`config`]: the daemon's settings (from `swarmd`'s flags).
//! - [`state`]: what a joined node persists about itself (`node.json`).
//! - [`daemon`]: what a running daemon holds; resuming and shutdown.
//! - [`startup`]: starting a daemon and serving its local control socket.
//! - [`joined`]: a node that belongs to a cluster: mTLS listener, agent,
//!   manager when its role says so, and following role changes live.
//! - [`bootstrap`]: `cluster init` and `node join`.
//! - [`local`]: the local-only gRPC service (init, join, leave, info).
//! - [`metrics_http`]: `--metrics-addr`, Prometheus text on `/metrics`.

pub mod bootstrap;
pub mod config;
pub mod daemon;
pub mod joined;
pub mod local;
pub mod metrics_http;
pub mod startup;
pub mod state;
