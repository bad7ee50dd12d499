//! The daemon: what one running `swarmd` holds (its membership, its
//! manager slot, the control socket's server), resuming a joined node, and
//! stopping everything on shutdown. Starting it is [`crate::startup`].

use std::sync::Arc;

use anyhow::Context;
use swarmlet_common::identity::NodeIdentity;
use swarmlet_manager::api::grpc::ManagerSlot;
use swarmlet_manager::crypto::Key;
use tokio::sync::{watch, Mutex};

use crate::config::DaemonConfig;
use crate::joined::Joined;
use crate::state::NodeState;

/// One running `swarmd`.
pub struct Daemon {
    /// Its settings.
    pub cfg: DaemonConfig,
    /// Its manager, while it is one.
    pub managers: ManagerSlot,
    /// Its cluster membership, once joined.
    pub joined: Mutex<Option<Arc<Joined>>>,
    /// A manager's state waiting for its unlock key (autolock): the node
    /// runs nothing until `swarmctl cluster unlock`.
    pub locked: Mutex<Option<NodeState>>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) server: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) metrics: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The browser view's server, while it runs.
    pub(crate) web: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where the browser view is served (`--web-addr`, port resolved).
    pub web_addr: Option<std::net::SocketAddr>,
    /// The Engine API server, while it runs.
    pub(crate) engine_api: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where `/metrics` is served (`--metrics-addr`, port resolved).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Daemon {
    /// Resumes the cluster membership a populated state dir records (a
    /// locked manager with the data key its unlock opened).
    pub async fn resume(
        cfg: &DaemonConfig,
        state: NodeState,
        managers: ManagerSlot,
        unlocked_key: Option<Key>,
    ) -> anyhow::Result<Arc<Joined>> {
        let identity = NodeIdentity::load(&cfg.certs_dir())?
            .context("state dir has node.json but no certificates")?;
        tracing::info!(node = %state.node_id, role = state.role.name(), "resuming node");
        Joined::start(cfg.clone(), state, identity, managers, false, unlocked_key).await
    }

    /// Stops the node's parts and the control socket.
    pub async fn shutdown(&self) {
        if let Some(j) = self.joined.lock().await.take() {
            j.stop().await;
        }
        let _ = self.shutdown.send(true);
        let server = self.server.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = server {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), s).await;
        }
        let metrics = self.metrics.lock().ok().and_then(|mut m| m.take());
        if let Some(m) = metrics {
            m.abort();
        }
        let web = self.web.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = web {
            // Its event streams end with the server.
            if tokio::time::timeout(std::time::Duration::from_secs(2), w)
                .await
                .is_err()
            {
                tracing::debug!("the browser view did not stop in time");
            }
        }
        let engine_api = self.engine_api.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = engine_api {
            // Long-lived requests (log follows) end with the server.
            if tokio::time::timeout(std::time::Duration::from_secs(3), e)
                .await
                .is_ok()
            {
                if let Some(path) = &self.cfg.engine_api_socket {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let _ = std::fs::remove_file(&self.cfg.control_socket);
    }
}
