//! Starting a daemon: the state dir made private, the node resumed (or
//! left waiting for its unlock key), the metrics endpoint and the local
//! control socket (the local API and the control API) served.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use anyhow::Context;
use swarmlet_common::grpc::WithLimits;
use swarmlet_common::identity::Role;
use swarmlet_manager::api::grpc::control::ControlService;
use swarmlet_manager::api::grpc::{ManagerSlot, LOCKED};
use swarmlet_manager::at_rest::keys::KeyFiles;
use swarmlet_proto::control::control_server::ControlServer;
use swarmlet_proto::local::local_server::LocalServer;
use tokio::sync::{watch, Mutex};
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::DaemonConfig;
use crate::daemon::Daemon;
use crate::local::LocalService;
use crate::state::NodeState;

impl Daemon {
    /// Starts the daemon: resumes the node if its state dir is populated,
    /// then serves the control socket.
    pub async fn start(cfg: DaemonConfig) -> anyhow::Result<Arc<Daemon>> {
        // Everything the daemon creates from here on (sled's files included)
        // is private to root from its creation.
        swarmlet_common::private_fs::restrict_umask();
        prepare_state_dir(&cfg.state_dir)?;
        let managers = ManagerSlot::default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = NodeState::load(&cfg.state_dir)?;
        if cfg.force_new_cluster && state.as_ref().is_none_or(|s| s.role != Role::Manager) {
            anyhow::bail!(
                "--force-new-cluster needs the state dir of a manager ({} holds none)",
                cfg.state_dir.display()
            );
        }
        // Bound before the node resumes: a taken address fails the start
        // before anything runs.
        let (metrics_addr, metrics) = match &cfg.metrics_addr {
            Some(addr) => {
                let (bound, task) =
                    crate::metrics_http::start(addr, managers.clone(), shutdown_rx.clone()).await?;
                (Some(bound), Some(task))
            }
            None => (None, None),
        };
        // Bound before the node resumes too.
        let (web_addr, web) = match &cfg.web_addr {
            Some(addr) => {
                let (bound, task) = serve_web(addr, managers.clone(), shutdown_rx.clone()).await?;
                (Some(bound), Some(task))
            }
            None => (None, None),
        };
        let daemon = Arc::new(Daemon {
            cfg: cfg.clone(),
            managers: managers.clone(),
            joined: Mutex::new(None),
            locked: Mutex::new(None),
            shutdown,
            server: std::sync::Mutex::new(None),
            metrics: std::sync::Mutex::new(metrics),
            engine_api: std::sync::Mutex::new(None),
            web: std::sync::Mutex::new(web),
            web_addr,
            metrics_addr,
        });
        let locked = match &state {
            Some(s) if s.role == Role::Manager => KeyFiles::new(&cfg.state_dir).is_locked()?,
            _ => false,
        };
        if let (true, Some(state)) = (locked, state.clone()) {
            tracing::warn!("{LOCKED}");
            managers.set_locked(true);
            *daemon.locked.lock().await = Some(state);
        } else if let Some(state) = state {
            match Self::resume(&cfg, state, managers.clone(), None).await {
                Ok(joined) => *daemon.joined.lock().await = Some(joined),
                Err(e) => {
                    let _ = daemon.shutdown.send(true); // the metrics listener
                    return Err(e);
                }
            }
        }
        let socket = &cfg.control_socket;
        if let Some(dir) = socket.parent() {
            swarmlet_common::private_fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)
            .with_context(|| format!("cannot bind control socket {}", socket.display()))?;
        // Created 0700 under the umask above (no moment with access for
        // others); the execute bit means nothing on a socket.
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        let local = LocalService::new(Arc::downgrade(&daemon));
        let mut rx = shutdown_rx;
        let control_slot = managers.clone();
        let server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(LocalServer::new(local).with_limits())
                .add_service(
                    ControlServer::new(ControlService::new(control_slot, true)).with_limits(),
                )
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!("control socket failed: {e}");
            }
        });
        if let Ok(mut s) = daemon.server.lock() {
            *s = Some(server);
        }
        if let Some(path) = &cfg.engine_api_socket {
            if let Some(task) = serve_engine_api(&cfg, path, managers, daemon.shutdown.subscribe())?
            {
                if let Ok(mut e) = daemon.engine_api.lock() {
                    *e = Some(task);
                }
            }
        }
        Ok(daemon)
    }
}

/// Serves the browser view on `addr` (a token is required beyond
/// loopback).
async fn serve_web(
    addr: &str,
    managers: ManagerSlot,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the web view on {addr}"))?;
    let bound = listener.local_addr()?;
    let access = swarmlet_web::Access::for_addr(&bound);
    tracing::info!(
        "cluster view on http://{bound}/{}",
        if access == swarmlet_web::Access::Token {
            " (token: swarmctl cluster web-token)"
        } else {
            ""
        }
    );
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = swarmlet_web::serve(listener, managers, access, stop).await {
            tracing::error!("the web view failed: {e}");
        }
    });
    Ok((bound, task))
}

/// Serves the Docker Engine API on `path` (`Ok(None)`: the default socket
/// is served by another daemon on this host, which is only a warning).
fn serve_engine_api(
    cfg: &DaemonConfig,
    path: &std::path::Path,
    managers: ManagerSlot,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let listener = match swarmlet_engine_api::bind(path) {
        Ok(l) => l,
        Err(e) if !cfg.engine_api_socket_given => {
            tracing::warn!("Docker Engine API not served: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!("Docker Engine API on unix://{}", path.display());
    Ok(Some(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = swarmlet_engine_api::serve(listener, managers, stop).await {
            tracing::error!("Docker Engine API failed: {e}");
        }
    })))
}

/// Creates the state dir 0700, or tightens one that an older version (or
/// an operator's `mkdir`) left open to others, before anything is written
/// in it.
fn prepare_state_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    swarmlet_common::private_fs::create_dir_all(dir)
        .with_context(|| format!("cannot create state dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "state dir was open to others: now 700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
