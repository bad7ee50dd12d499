//! Swarmlet's Docker Engine API subset: what the `docker` CLI (`docker
//! node|service|network|secret|config|stack …`), Compose files through
//! `docker stack deploy`, and Docker's SDKs need from a swarm manager,
//! served on a unix socket (`swarmd --engine-api-socket`).
//!
//! # Layout
//! - [`version`]: the `/vX.Y` prefix (checked against the versions served)
//!   and the version headers.
//! - [`routes`]: one file per resource (system, nodes, services, tasks,
//!   networks, secrets and configs).
//! - [`backend`]: the control API's service called in-process, so every
//!   request runs the same operations as `swarmctl`'s (and a follower
//!   forwards to the leader as it does for `swarmctl`).
//! - [`convert`]: Swarmlet's objects in Docker's shapes and a client's
//!   service spec in Swarmlet's (pure, unit-tested).
//! - [`filters`]: Docker's `filters` query parameter.
//! - [`error`]: Docker's `{"message": …}` errors and status codes.

// `/info`'s answer is one large `json!` literal.
#![recursion_limit = "256"]

pub mod backend;
pub mod convert;
pub mod error;
pub mod filters;
pub mod routes;
pub mod version;

use std::path::Path;

use axum::ServiceExt;
use swarmlet_manager::api::grpc::ManagerSlot;
use tower::Layer;

pub use backend::Backend;

/// Why the Engine API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another live process serves the socket.
    #[error("engine API socket {0} is served by another process")]
    InUse(String),
    /// The socket could not be made.
    #[error("cannot bind engine API socket {path}: {source}")]
    Bind {
        /// The socket's path.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// Binds the socket at `path` (0600: created under the daemon's umask and
/// then restricted; a stale socket file is replaced, a live one refused).
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServeError::InUse(shown));
    }
    let bind_error = |source| ServeError::Bind {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        swarmlet_common::private_fs::create_dir_all(dir)
            .map_err(|e| bind_error(std::io::Error::other(e.to_string())))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Serves the Engine API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    slot: ManagerSlot,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = routes::router(Backend::new(slot));
    let app = axum::middleware::from_fn(version::negotiate).layer(router);
    axum::serve(
        listener,
        ServiceExt::<axum::extract::Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
