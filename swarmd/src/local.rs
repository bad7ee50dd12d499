//! The local-only service: the node's own life cycle (init, join, leave, info).

use std::sync::{Arc, Weak};

use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::RemoveRaftMemberRequest;
use swarmlet_proto::local::local_server::Local;
use swarmlet_proto::local::*;
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
}

#[tonic::async_trait]
impl Local for LocalService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let d = self.daemon()?;
        let mut joined = d.joined.lock().await;
        if joined.is_some() {
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
                }))
            }
            Err(e) => Err(abandon(&d, e)),
        }
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let d = self.daemon()?;
        let mut joined = d.joined.lock().await;
        if joined.is_some() {
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
                    role: st.role,
                    cluster_id: st.cluster_id,
                }))
            }
            Err(e) => Err(abandon(&d, e)),
        }
    }

    async fn leave(&self, request: Request<LeaveRequest>) -> Result<Response<Empty>, Status> {
        let d = self.daemon()?;
        let mut joined = d.joined.lock().await;
        let Some(j) = joined.as_ref() else {
            return Err(Status::failed_precondition(
                "this node is not part of a swarm",
            ));
        };
        let st = j.state.lock().await.clone();
        if st.role == "manager" {
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
                    match ControlClient::new(ch).remove_raft_member(req).await {
                        Ok(_) => break,
                        Err(s) => {
                            tracing::warn!(manager = %addr, "leaving raft failed: {}", s.message())
                        }
                    }
                }
            }
        }
        j.stop().await;
        *joined = None;
        wipe_state(&d);
        Ok(Response::new(Empty {}))
    }

    async fn info(&self, _request: Request<Empty>) -> Result<Response<LocalInfo>, Status> {
        let d = self.daemon()?;
        let joined = d.joined.lock().await;
        let info = match joined.as_ref() {
            None => LocalInfo {
                state: "inactive".into(),
                hostname: d.cfg.hostname.clone(),
                ..Default::default()
            },
            Some(j) => {
                let st = j.state.lock().await;
                LocalInfo {
                    state: st.role.clone(),
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
