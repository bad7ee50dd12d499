//! The Swarmlet worker side of a node.
//!
//! # Layout
//! - [`agent`]: heartbeats, the assignments session and status reports,
//!   with failover between managers.
//! - [`executor`]: the executor trait (how a worker runs one task's container).
//! - [`node_executor`]: the executor a daemon was started with (Docker or simulated).
//! - [`docker`]: the Docker executor (bollard); `docker::container_config` maps a task to its containers.
//! - [`sim`]: the simulated executor.
//! - [`kernel`]: network namespaces and nftables transactions, shared by
//!   the overlay and the DNS.
//! - [`logs`]: the node's logs service for managers.
//! - [`overlay`]: the VXLAN overlay data plane (namespaces, bridge, veths,
//!   neighbour and FDB entries), reconciled with the managers' view.
//! - [`pause_image`]: the image of the network sandbox containers.
//! - [`resources`]: the CPUs and memory this host offers.
//! - [`secret_files`]: the tasks' secrets and configs, as files on tmpfs.
//! - [`session`]: the assignments stream and batched status reports.
//! - [`tasks`]: the task manager: one controller per assigned task.
//! - [`task_controller`]: one task's controller, performing its steps
//!   through the executor and the overlay.
//! - [`task_step`]: the next step of a task, decided without side effects.

pub mod agent;
pub mod dns;
pub mod docker;
pub mod executor;
pub mod kernel;
pub mod logs;
pub mod node_executor;
pub mod overlay;
pub mod pause_image;
pub mod resources;
pub mod secret_files;
pub mod session;
pub mod sim;
pub mod task_controller;
pub mod task_step;
pub mod tasks;
