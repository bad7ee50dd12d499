//! The local-only service: the node's own life cycle (init, join, leave,
//! info) and `swarmctl run` containers on this node.

use std::sync::{Arc, Weak};

use swarmlet_common::grpc::WithLimits;
use swarmlet_common::identity::Role;
use swarmlet_common::task_state::is_terminal;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::RemoveRaftMemberRequest;
use swarmlet_proto::local::local_server::Local;
use swarmlet_proto::local::*;
use swarmlet_proto::logs::LogLine;
use swarmlet_proto::objects::TaskStatus;
use swarmlet_worker::logs::container_log_lines;
use tonic::{Request, Response, Status};

use crate::bootstrap::{self, InitParams};
use crate::daemon::Daemon;

/// The local service of one daemon.
pub struct LocalService {
    daemon: Weak<Daemon>,
}

impl LocalService {
    /// A local service for `daemon`.
    pub fn new(daemon: Weak<Daemon>) -> Self {
        LocalService { daemon }
    }

    fn daemon(&self) -> Result<Arc<Daemon>, Status> {
        self.daemon
            .upgrade()
            .ok_or_else(|| Status::unavailable("daemon is shutting down"))
    }
}

/// How long `run` waits for the container to run on its networks.
const RUN_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl LocalService {
    /// The joined node, or a clear error when it is not in a swarm.
    async fn joined(&self) -> Result<Arc<crate::joined::Joined>, Status> {
        let d = self.daemon()?;
        let joined = d.joined.lock().await;
        joined.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this node is not part of a swarm: run `swarmctl cluster init` or `swarmctl node join` first",
            )
        })
    }
}

fn already_joined() -> Status {
    Status::already_exists("this node is already part of a swarm: run `swarmctl node leave` first")
}

/// Undoes a failed init or join: stops a manager it started and removes
/// what it wrote, so nothing is left half-done. Returns the error to show.
fn abandon(d: &Daemon, e: anyhow::Error) -> Status {
    if let Ok(m) = d.managers.get() {
        m.stop();
    }
    d.managers.set(None);
    wipe_state(d);
    Status::failed_precondition(format!("{e:#}"))
}

/// Removes what a failed init or join wrote.
fn wipe_state(d: &Daemon) {
    let _ = std::fs::remove_file(d.cfg.state_dir.join("node.json"));
    let _ = std::fs::remove_dir_all(d.cfg.certs_dir());
    let _ = std::fs::remove_dir_all(d.cfg.raft_dir());
    swarmlet_manager::at_rest::keys::KeyFiles::new(&d.cfg.state_dir).remove();
}

#[tonic::async_trait]
impl Local for LocalService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let d = self.daemon()?;
        let mut joined = d.joined.lock().await;
        if joined.is_some() || d.locked.lock().await.is_some() {
            return Err(already_joined());
        }
        let req = request.into_inner();
        let params = InitParams {
            advertise_addr: Some(req.advertise_addr).filter(|a| !a.is_empty()),
            default_addr_pool: Some(req.default_addr_pool)
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "10.0.0.0/8".into()),
            default_addr_pool_mask_len: Some(req.default_addr_pool_mask_len)
                .filter(|l| *l != 0)
                .unwrap_or(24),
            autolock: req.autolock,
        };
        match bootstrap::init(&d.cfg, params, d.managers.clone()).await {
            Ok(out) => {
                let st = out.joined.state.lock().await.clone();
                *joined = Some(out.joined);
                Ok(Response::new(InitResponse {
                    node_id: st.node_id,
                    cluster_id: st.cluster_id,
                    worker_token: out.worker_token,
                    manager_token: out.manager_token,
                    manager_addr: st.addr,
                    unlock_key: out.unlock_key.unwrap_or_default(),
                }))
            }
            Err(e) => Err(abandon(&d, e)),
        }
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let d = self.daemon()?;
        let mut joined = d.joined.lock().await;
        if joined.is_some() || d.locked.lock().await.is_some() {
            return Err(already_joined());
        }
        let req = request.into_inner();
        let advertise = Some(req.advertise_addr.as_str()).filter(|a| !a.is_empty());
        match bootstrap::join(
            &d.cfg,
            &req.token,
            &req.remote_addr,
            advertise,
            d.managers.clone(),
        )
        .await
        {
            Ok(j) => {
                let st = j.state.lock().await.clone();
                *joined = Some(j);
                Ok(Response::new(JoinResponse {
                    node_id: st.node_id,
                    role: st.role.name().into(),
                    cluster_id: st.cluster_id,
                }))
            }
            Err(e) => Err(abandon(&d, e)),
        }
    }

    async fn leave(&self, request: Request<LeaveRequest>) -> Result<Response<Empty>, Status> {
        let d = self.daemon()?;
        let mut joined = d.joined.lock().await;
        let mut locked = d.locked.lock().await;
        if locked.is_some() {
            // A locked manager runs nothing; with --force it forgets its
            // state, as `docker swarm leave --force` does.
            if !request.get_ref().force {
                return Err(Status::failed_precondition(
                    "this node is a locked manager: unlock it first, or use --force",
                ));
            }
            *locked = None;
            d.managers.set_locked(false);
            wipe_state(&d);
            return Ok(Response::new(Empty {}));
        }
        let Some(j) = joined.as_ref() else {
            return Err(Status::failed_precondition(
                "this node is not part of a swarm",
            ));
        };
        let st = j.state.lock().await.clone();
        if st.role == Role::Manager {
            if !request.get_ref().force {
                return Err(Status::failed_precondition(
                    "this node is a manager: leaving would weaken the cluster's quorum; demote it first, or use --force",
                ));
            }
            // Best effort: ask another manager to drop this one from Raft.
            if let Ok(m) = d.managers.get() {
                // This manager's copy of the members may lag; add the managers
                // it heard of through heartbeats and at join.
                let mut others: Vec<String> = m.manager_addrs();
                others.extend(st.managers.iter().cloned());
                others.sort();
                others.dedup();
                others.retain(|a| *a != st.addr);
                for addr in others {
                    let Ok(ch) = m.channel_to(&addr) else {
                        continue;
                    };
                    let req = RemoveRaftMemberRequest {
                        node_id: st.node_id.clone(),
                    };
                    match ControlClient::new(ch)
                        .with_limits()
                        .remove_raft_member(req)
                        .await
                    {
                        Ok(_) => break,
                        Err(s) => {
                            tracing::warn!(manager = %addr, "leaving raft failed: {}", s.message())
                        }
                    }
                }
            }
        }
        j.stop().await;
        j.clean().await;
        *joined = None;
        wipe_state(&d);
        Ok(Response::new(Empty {}))
    }

    async fn run(&self, request: Request<RunRequest>) -> Result<Response<RunResponse>, Status> {
        let joined = self.joined().await?;
        let req = request.into_inner();
        let task = joined
            .attach(swarmlet_proto::dispatcher::AttachRequest {
                name: req.name,
                image: req.image,
                command: req.command,
                args: req.args,
                networks: req.networks,
            })
            .await?;
        // The task comes back through this node's assignments; wait until
        // its container runs on its networks, or the reason it cannot.
        let deadline = tokio::time::Instant::now() + RUN_START_TIMEOUT;
        loop {
            if let Some(st) = joined.task_manager.attachment_status(&task.id) {
                // A container that already ran to its end (a short command)
                // started too: its output and exit code are still to read.
                if st.started && !st.container_id.is_empty() {
                    return Ok(Response::new(RunResponse {
                        container_id: st.container_id,
                        task_id: task.id,
                    }));
                }
                if is_terminal(st.state()) {
                    let why = if st.err.is_empty() {
                        st.message
                    } else {
                        st.err
                    };
                    return Err(Status::failed_precondition(why));
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Status::deadline_exceeded(
                    "the container did not start within 60 s",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    type RunLogsStream = futures::stream::BoxStream<'static, Result<LogLine, Status>>;

    async fn run_logs(
        &self,
        request: Request<RunRef>,
    ) -> Result<Response<Self::RunLogsStream>, Status> {
        let joined = self.joined().await?;
        let id = request.into_inner().task_id;
        let st = joined
            .task_manager
            .attachment_status(&id)
            .ok_or_else(|| Status::not_found(format!("no run container {id} on this node")))?;
        let exec = joined.task_manager.executor();
        Ok(Response::new(container_log_lines(
            exec.as_ref(),
            &st.container_id,
            true,
            -1,
        )))
    }

    async fn run_status(&self, request: Request<RunRef>) -> Result<Response<TaskStatus>, Status> {
        let joined = self.joined().await?;
        let id = request.into_inner().task_id;
        joined
            .task_manager
            .attachment_status(&id)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no run container {id} on this node")))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<Empty>, Status> {
        use swarmlet_manager::at_rest::keys::{parse_unlock_key, AtRestError, KeyFiles};
        let d = self.daemon()?;
        let mut joined = d.joined.lock().await;
        let mut locked = d.locked.lock().await;
        let Some(state) = locked.clone() else {
            return Err(Status::failed_precondition("this node is not locked"));
        };
        let refused = |e: AtRestError| match e {
            AtRestError::WrongUnlockKey | AtRestError::BadUnlockKey => {
                Status::invalid_argument(e.to_string())
            }
            other => Status::internal(other.to_string()),
        };
        let key = parse_unlock_key(&request.get_ref().unlock_key).map_err(refused)?;
        let data_key = KeyFiles::new(&d.cfg.state_dir)
            .unlock(&key)
            .map_err(refused)?;
        let j = Daemon::resume(&d.cfg, state, d.managers.clone(), Some(data_key))
            .await
            .map_err(|e| Status::failed_precondition(format!("{e:#}")))?;
        *joined = Some(j);
        *locked = None;
        d.managers.set_locked(false);
        tracing::info!("unlocked: this manager runs again");
        Ok(Response::new(Empty {}))
    }

    async fn info(&self, _request: Request<Empty>) -> Result<Response<LocalInfo>, Status> {
        let d = self.daemon()?;
        let joined = d.joined.lock().await;
        if let Some(st) = d.locked.lock().await.as_ref() {
            return Ok(Response::new(LocalInfo {
                state: "locked".into(),
                node_id: st.node_id.clone(),
                cluster_id: st.cluster_id.clone(),
                addr: st.addr.clone(),
                hostname: d.cfg.hostname.clone(),
            }));
        }
        let info = match joined.as_ref() {
            None => LocalInfo {
                state: "inactive".into(),
                hostname: d.cfg.hostname.clone(),
                ..Default::default()
            },
            Some(j) => {
                let st = j.state.lock().await;
                LocalInfo {
                    state: st.role.name().into(),
                    node_id: st.node_id.clone(),
                    cluster_id: st.cluster_id.clone(),
                    addr: st.addr.clone(),
                    hostname: d.cfg.hostname.clone(),
                }
            }
        };
        Ok(Response::new(info))
    }
}
