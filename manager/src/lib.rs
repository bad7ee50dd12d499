//! The Swarmlet manager: everything a manager node runs besides the worker agent.
//!
//! Dependencies point one way: front ends (`api`) → operations (`ops`) →
//! `manager`/`core` → store and Raft; background loops get a [`core::Core`],
//! not the manager. No module imports one that imports it back.
//!
//! # Layout
//! - [`store`]: typed tables over sled, changed only by applying committed Raft entries.
//! - [`raft`]: the raft-rs `RawNode` Ready loop, its sled storage and its mTLS transport.
//! - [`core`]: the small handle the loops and operations share (store + Raft proposer).
//! - [`channels`]: cached mTLS channels to other nodes.
//! - [`manager`]: one manager: starts its store, Raft loop and background loops; the CA.
//! - [`ops`]: the operations of the control API, one file per resource,
//!   independent of the transport (typed [`ops::OpsError`]).
//! - [`api`]: the front ends: the gRPC services a manager serves (control
//!   API, CA, Raft, dispatcher), each mapping `OpsError` to its statuses.
//! - [`liveness`]: heartbeats → node `ready`/`down`.
//! - [`resolve`]: node, service and task references → objects.
//! - [`orchestrator`]: services → the tasks that should exist (pure).
//! - [`scheduler`]: pending tasks → nodes (pure).
//! - [`allocator`]: service VIPs and task addresses on networks (pure).
//! - [`ipam`]: subnets, VNIs and addresses of overlay networks (pure).
//! - [`ports`]: published-port checks and allocation (pure).
//! - [`reconciler`]: the leader's loop: one snapshot, one plan, one write per changed row.
//! - [`reconcile_plan`]: one pass planned on one snapshot (orchestrators, allocator, scheduler).
//! - [`assignments`]: each node's assigned tasks, for the worker sessions.
//! - [`chunks`]: an assignments update cut into messages of bounded size.
//! - [`overlay_view`]: each node's overlay peers (neighbour and FDB entries to program).
//! - [`status_batcher`]: worker task status updates → few proposals.
//! - [`events`]: the cluster events kept in memory and fed live (`swarmctl events`).
//! - [`secrets`]: the keys that seal secrets and configs (KEK and data key).
//! - [`metrics`]: the manager's gauges on `/metrics` (nodes, tasks, Raft).
//! - [`ca_rotation`]: moving every node to a new root CA without an outage.
//! - [`crypto`]: AES-256-GCM sealing with a 256-bit key (rows, log, secrets).
//! - [`at_rest`]: the Raft log and rows sealed on disk, the keys behind them, autolock.

pub mod allocator;
pub mod api;
pub mod assignments;
pub mod at_rest;
pub mod ca_rotation;
pub mod channels;
pub mod chunks;
pub mod core;
pub mod crypto;
pub mod events;
pub mod ipam;
pub mod liveness;
pub mod manager;
pub mod metrics;
pub mod ops;
pub mod orchestrator;
pub mod overlay_view;
pub mod ports;
pub mod raft;
pub mod reconcile_plan;
pub mod reconciler;
pub mod resolve;
pub mod scheduler;
pub mod secrets;
pub mod status_batcher;
pub mod store;
