//! The gRPC services of a manager. Each is served on the node's mTLS
//! listener; the control API is also served on the local unix socket.
//! Services find the running manager through a [`ManagerSlot`], since a
//! node's role can change while its listener keeps running. An operation's
//! [`OpsError`] becomes a gRPC status here, and only here.
//!
//! - [`auth`]: who the caller is, and whether the store lets it call.
//! - [`control`]: the control API (`swarmctl`), dispatching to [`crate::ops`].
//! - [`ca`]: joining and certificate renewal.
//! - [`dispatcher`]: workers' heartbeats, assignments and status reports.
//! - [`logs`]: a service's logs, gathered from its tasks' nodes.
//! - [`raft`]: Raft messages and membership between managers.

pub mod auth;
pub mod ca;
pub mod control;
pub mod dispatcher;
pub mod logs;
pub mod raft;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tonic::Status;

use crate::manager::Manager;
use crate::ops::OpsError;

impl From<OpsError> for Status {
    fn from(e: OpsError) -> Self {
        let message = e.to_string();
        match e {
            OpsError::NotFound { .. } => Status::not_found(message),
            OpsError::Ambiguous { .. } | OpsError::InvalidArgument(_) => {
                Status::invalid_argument(message)
            }
            OpsError::NameTaken { .. } | OpsError::InUse(_) => Status::already_exists(message),
            OpsError::Stale(_) => Status::aborted(message),
            OpsError::FailedPrecondition(_) => Status::failed_precondition(message),
            OpsError::Exhausted(_) => Status::resource_exhausted(message),
            OpsError::PermissionDenied(_) => Status::permission_denied(message),
            OpsError::Unavailable(_) | OpsError::LeaderMoved => Status::unavailable(message),
            OpsError::Timeout(_) => Status::deadline_exceeded(message),
            OpsError::Internal(_) => Status::internal(message),
        }
    }
}

/// Metadata key a forwarding manager uses to say on whose behalf it calls.
pub const ON_BEHALF_OF: &str = "x-swarmlet-node";

/// The manager this node runs, if it is a manager now.
#[derive(Clone, Default)]
pub struct ManagerSlot {
    manager: Arc<RwLock<Option<Arc<Manager>>>>,
    /// A manager waits for its unlock key (autolock) instead of running.
    locked: Arc<AtomicBool>,
    /// The cluster's managers as this node last heard (named in a worker's
    /// refusal, so that the caller knows where to go).
    known_managers: Arc<RwLock<Vec<String>>>,
}

/// What a locked manager answers to everything but `cluster unlock`.
pub const LOCKED: &str = "this manager is locked (autolock): run `swarmctl cluster unlock` with the cluster's unlock key";

impl ManagerSlot {
    /// The running manager, or the error a worker (or a locked manager) gives.
    pub fn get(&self) -> Result<Arc<Manager>, Status> {
        if let Some(m) = self.manager.read().ok().and_then(|g| g.clone()) {
            return Ok(m);
        }
        if self.locked.load(Ordering::SeqCst) {
            return Err(Status::unavailable(LOCKED));
        }
        let managers = self
            .known_managers
            .read()
            .map(|m| m.join(", "))
            .unwrap_or_default();
        let mut message =
            "this node is not a swarm manager: run this command on a manager node".to_string();
        if !managers.is_empty() {
            message.push_str(&format!(" (managers: {managers})"));
        }
        Err(Status::failed_precondition(message))
    }

    /// Records the cluster's managers' addresses as this node knows them.
    pub fn set_known_managers(&self, addrs: &[String]) {
        if let Ok(mut g) = self.known_managers.write() {
            *g = addrs.to_vec();
        }
    }

    /// Whether a manager runs.
    pub fn is_set(&self) -> bool {
        self.manager.read().map(|g| g.is_some()).unwrap_or(false)
    }

    /// Installs or clears the manager.
    pub fn set(&self, manager: Option<Arc<Manager>>) {
        if let Ok(mut g) = self.manager.write() {
            *g = manager;
        }
    }

    /// Marks this node's manager as waiting for its unlock key, or not.
    pub fn set_locked(&self, locked: bool) {
        self.locked.store(locked, Ordering::SeqCst);
    }
}

/// How long a forwarded call keeps being sent again after the leader could
/// not be reached: long enough for an election (~1.5 s) to name another.
const UNREACHABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The pause between two attempts to reach the same leader.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether a forwarded call failed on the way (no connection, a connection
/// its peer's restart or lost host left broken) rather than being refused
/// by the leader. Our handlers never answer `Unknown`; tonic reports a
/// broken connection so.
fn not_delivered(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    )
}

/// Sends `request` to the leader with `call` (`Ok(None)`: this manager leads
/// now, the caller answers itself). The leader's host may be gone without a
/// word (a cut link: its connection just goes silent), so the call is
/// raced against a change of leader: when another manager takes over, the
/// call is abandoned and sent to the new leader, instead of hanging until
/// the old connection's keep-alive gives up (10 s). A lost leader cannot
/// have committed the abandoned call (it has no quorum). A call that fails
/// on the way ([`not_delivered`]: a refused or broken connection, e.g. to
/// a leader that restarted) is sent again, to the same leader after a
/// pause or to the next one, for up to [`UNREACHABLE_RETRY`]; `swarm-bench
/// failover --host-loss` had failed one round in three with "transport
/// error" instead.
pub async fn forward_unary<Req, Resp, F, Fut>(
    m: &Manager,
    request: &Req,
    call: F,
) -> Result<Option<tonic::Response<Resp>>, Status>
where
    Req: Clone,
    F: Fn(tonic::transport::Channel, Req) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let mut retry_until = None;
    loop {
        let Some(channel) = m.forward_target().await? else {
            return Ok(None);
        };
        let mut status = m.raft.watch_status();
        let leader_id = status.borrow_and_update().leader_id;
        let failed = tokio::select! {
            r = call(channel, request.clone()) => match r {
                Err(e) if not_delivered(&e) => e,
                r => return r.map(Some),
            },
            changed = status.wait_for(|s| s.leader_id != leader_id) => {
                if changed.is_err() {
                    return Err(Status::unavailable("this manager is stopping"));
                }
                tracing::debug!("the leader changed while a call was forwarded to it: sent again");
                continue;
            }
        };
        let until =
            *retry_until.get_or_insert_with(|| tokio::time::Instant::now() + UNREACHABLE_RETRY);
        if tokio::time::Instant::now() >= until {
            return Err(failed);
        }
        tracing::debug!("a call forwarded to the leader did not reach it ({failed}): sent again");
        // Sooner if another manager takes over.
        let _ =
            tokio::time::timeout(RETRY_PAUSE, status.wait_for(|s| s.leader_id != leader_id)).await;
    }
}

/// A copy of `message` to send to the leader on behalf of `node`.
pub fn forwarded<T>(message: T, node: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(v) = node.and_then(|n| n.parse().ok()) {
        r.metadata_mut().insert(ON_BEHALF_OF, v);
    }
    r
}
