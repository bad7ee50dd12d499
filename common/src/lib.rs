//! Types and helpers shared by Swarmlet's manager, worker and binaries.
//!
//! # Layout
//! - [`ids`]: node, cluster and Raft identifiers.
//! - [`token`]: join tokens `SWMTKN-1-<root digest>-<secret>`.
//! - [`ca`]: the cluster's root certificate authority (create, sign CSRs).
//! - [`identity`]: a node's key and certificate, their roles and persistence.
//! - [`tls`]: rustls client/server configurations with hot-swappable certificates.
//! - [`tls_base`]: the crypto provider, TLS error and PEM root stores [`tls`] and [`trust`] share.
//! - [`trust`]: the trusted roots, hot-swappable too (root CA rotation).
//! - [`grpc`]: gRPC channels over mTLS TCP and the unix control socket, message limits.
//! - [`listener`]: the mTLS listener's connections, capped and closed when idle.
//! - [`names`]: enum ↔ string conversions used in the API and CLI.
//! - [`task_state`]: the task state machine and the predicates over a task's states.
//! - [`task_name`]: task and container names (`<service>.<slot>[.<task id>]`).
//! - [`template`]: Swarm task templates (`{{.Service.Name}}`, `{{.Task.Slot}}`, …).
//! - [`clock`]: wall-clock helpers.
//! - [`huge_pages`]: transparent huge pages off for the process (allocator churn).
//! - [`metrics`]: process-wide metrics, Prometheus text.
//! - [`private_fs`]: the state dir's files, 0600/0700 from creation.

pub mod ca;
pub mod clock;
pub mod grpc;
pub mod huge_pages;
pub mod identity;
pub mod ids;
pub mod listener;
pub mod metrics;
pub mod names;
pub mod private_fs;
pub mod task_name;
pub mod task_state;
pub mod template;
pub mod tls;
pub mod tls_base;
pub mod token;
pub mod trust;
