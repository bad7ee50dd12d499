//! The control API behind `swarmctl`: cluster and node management.
//!
//! Served on the local unix socket (trusted: mode 0600) and on the mTLS
//! listener, where only manager certificates may call it. A follower
//! forwards every call to the leader, which answers reads after a Raft read
//! barrier, so what a client sees is linearizable.

use std::time::Duration;

use prost::Message as _;
use swarmlet_common::grpc::WithLimits;
use swarmlet_common::names::{
    availability_name, parse_availability, parse_role, role_name, status_name,
};
use swarmlet_common::token::{new_secret, root_digest, JoinToken};
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::control_server::Control;
use swarmlet_proto::control::*;
use swarmlet_proto::objects::{
    Cluster, Node, NodeRole, NodeStatus, RaftMember, RemovedNode, Service,
};
use swarmlet_proto::store::ConfChangeContext;
use tonic::{Request, Response, Status};

use super::auth::{authorize, Need};
use super::service_ops;
use super::{forwarded, ManagerSlot};
use crate::manager::{propose_status, Manager};
use crate::raft::RaftStatus;
use crate::resolve::{resolve_node, resolve_service};
use crate::store::Tx;

/// The control API of one node.
pub struct ControlService {
    slot: ManagerSlot,
    local: bool,
}

impl ControlService {
    /// Control API for the unix socket (`local`) or the mTLS listener.
    pub fn new(slot: ManagerSlot, local: bool) -> Self {
        ControlService { slot, local }
    }

    /// The manager, after checking the caller may use the control API: a
    /// manager now, in the store's view ([`super::auth`]).
    fn manager<T>(&self, request: &Request<T>) -> Result<std::sync::Arc<Manager>, Status> {
        let m = self.slot.get()?;
        if !self.local {
            authorize(&m, request, Need::Manager)?;
        }
        Ok(m)
    }
}

/// Forwards the call to the leader when this manager is a follower.
macro_rules! forward_to_leader {
    ($m:expr, $request:ident, $method:ident) => {
        let forwarded_reply =
            super::forward_unary(&$m, $request.get_ref(), |leader, req| async move {
                ControlClient::new(leader)
                    .with_limits()
                    .$method(forwarded(req, None))
                    .await
            })
            .await?;
        if let Some(reply) = forwarded_reply {
            return Ok(reply);
        }
    };
}

fn cluster_info(m: &Manager, c: &Cluster, status: &RaftStatus) -> Result<ClusterInfo, Status> {
    let leader_node_id = m
        .members()?
        .into_iter()
        .find(|x| x.raft_id == status.leader_id)
        .map(|x| x.node_id)
        .unwrap_or_default();
    Ok(ClusterInfo {
        id: c.id.clone(),
        name: c.name.clone(),
        heartbeat_period_ms: c.heartbeat_period_ms,
        task_history_limit: c.task_history_limit,
        default_addr_pool: c.default_addr_pool.clone(),
        default_addr_pool_mask_len: c.default_addr_pool_mask_len,
        root_ca_digest: root_digest(m.root_ca()?.cert_der()),
        created_at_ms: c.created_at_ms,
        updated_at_ms: c.updated_at_ms,
        raft_term: status.term,
        raft_commit_index: status.commit,
        leader_node_id,
        node_cert_expiry_ms: match c.node_cert_expiry_ms {
            0 => swarmlet_common::ca::NODE_CERT_VALIDITY.as_millis() as u64,
            ms => ms,
        },
        autolock: c.autolock,
        ca_rotating: crate::ca_rotation::rotating(c),
        ca_rotation_pending: if crate::ca_rotation::rotating(c) {
            let nodes: Vec<Node> = m.nodes()?.into_iter().map(|(_, n)| n).collect();
            crate::ca_rotation::pending(&nodes, &crate::ca_rotation::current_digest(c)) as u32
        } else {
            0
        },
    })
}

fn node_info(n: &Node, members: &[RaftMember], status: &RaftStatus) -> NodeInfo {
    let manager_status = match members.iter().find(|x| x.node_id == n.id) {
        Some(member) if member.raft_id == status.leader_id => "leader",
        Some(member) if status.reachable.contains(&member.raft_id) => "reachable",
        Some(_) => "unreachable",
        None if n.role() == NodeRole::Manager => "unreachable",
        None => "",
    };
    NodeInfo {
        id: n.id.clone(),
        hostname: n.hostname.clone(),
        role: role_name(n.role()).into(),
        status: status_name(n.status()).into(),
        availability: availability_name(n.availability()).into(),
        manager_status: manager_status.into(),
        addr: n.addr.clone(),
        labels: n.labels.clone(),
        status_message: n.status_message.clone(),
        created_at_ms: n.created_at_ms,
        updated_at_ms: n.updated_at_ms,
        lb_addresses: n.lb_addresses.clone(),
    }
}

/// Whether removing `raft_id` from the voters keeps a reachable majority.
fn removal_keeps_quorum(status: &RaftStatus, raft_id: u64) -> Result<(), Status> {
    let remaining: Vec<u64> = status
        .voters
        .iter()
        .copied()
        .filter(|v| *v != raft_id)
        .collect();
    if remaining.is_empty() {
        return Err(Status::failed_precondition(
            "can't remove the last manager of the cluster",
        ));
    }
    let reachable = remaining
        .iter()
        .filter(|v| status.reachable.contains(v))
        .count();
    let needed = remaining.len() / 2 + 1;
    if reachable < needed {
        return Err(Status::failed_precondition(format!(
            "can't remove this manager: the cluster would lose quorum ({reachable} of the {} remaining managers reachable, {needed} needed)",
            remaining.len()
        )));
    }
    Ok(())
}

/// The Raft status once removing `raft_id` keeps quorum. A leader learns
/// which peers are reachable only as they answer, so a fresh leader gets
/// one election timeout to hear from them before the change is refused.
async fn wait_for_quorum_after_removal(m: &Manager, raft_id: u64) -> Result<RaftStatus, Status> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let status = m.raft.status();
        match removal_keeps_quorum(&status, raft_id) {
            Ok(()) => return Ok(status),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl ControlService {
    async fn node_info_for(&self, m: &Manager, id: &str) -> Result<NodeInfo, Status> {
        let (_, n) = resolve_node(&m.nodes()?, id)?;
        Ok(node_info(&n, &m.members()?, &m.raft.status()))
    }

    /// Removes a Raft voter after checking quorum, handing leadership away
    /// first if the voter is this leader. `Ok(false)`: leadership moved,
    /// the caller must retry on the new leader.
    async fn remove_voter(&self, m: &Manager, node_id: &str) -> Result<bool, Status> {
        let Some(member) = m.members()?.into_iter().find(|x| x.node_id == node_id) else {
            return Ok(true);
        };
        let status = wait_for_quorum_after_removal(m, member.raft_id).await?;
        if member.raft_id == status.raft_id {
            let Some(next) = status
                .voters
                .iter()
                .copied()
                .find(|v| *v != status.raft_id && status.reachable.contains(v))
            else {
                return Err(Status::failed_precondition(
                    "no other reachable manager to take over",
                ));
            };
            m.raft.transfer_leader(next);
            let mut rx = m.raft.watch_status();
            let moved = rx.wait_for(|s| s.leader_id != 0 && s.leader_id != status.raft_id);
            tokio::time::timeout(Duration::from_secs(5), moved)
                .await
                .map_err(|_| Status::unavailable("leadership transfer timed out; retry"))?
                .map_err(|_| Status::unavailable("raft stopped"))?;
            return Ok(false);
        }
        let ctx = ConfChangeContext {
            node_id: node_id.to_string(),
            ..Default::default()
        };
        m.raft
            .remove_voter(member.raft_id, ctx.encode_to_vec())
            .await
            .map_err(propose_status)?;
        Ok(true)
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    type ServiceLogsStream = super::logs::Lines;
    type EventsStream = futures::stream::BoxStream<'static, Result<Event, Status>>;

    async fn create_secret(
        &self,
        request: Request<CreateSecretRequest>,
    ) -> Result<Response<SecretInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, create_secret);
        Ok(Response::new(
            crate::secrets::ops::create(&m, request.into_inner()).await?,
        ))
    }

    async fn list_secrets(
        &self,
        request: Request<ListSecretsRequest>,
    ) -> Result<Response<SecretList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_secrets);
        m.read_barrier().await?;
        let kind = crate::secrets::ops::Kind::from_flag(request.get_ref().config);
        Ok(Response::new(SecretList {
            secrets: crate::secrets::ops::list_infos(&m, kind)?,
        }))
    }

    async fn inspect_secret(
        &self,
        request: Request<SecretRef>,
    ) -> Result<Response<SecretInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_secret);
        m.read_barrier().await?;
        let r = request.get_ref();
        let kind = crate::secrets::ops::Kind::from_flag(r.config);
        let (_, s) = crate::secrets::ops::resolve(&m, kind, &r.secret)?;
        Ok(Response::new(crate::secrets::ops::info(&m, kind, &s)?))
    }

    async fn remove_secret(&self, request: Request<SecretRef>) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_secret);
        let r = request.get_ref();
        let kind = crate::secrets::ops::Kind::from_flag(r.config);
        crate::secrets::ops::remove(&m, kind, &r.secret).await?;
        Ok(Response::new(Empty {}))
    }

    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        // Every manager applies every change: no need for the leader.
        let m = self.manager(&request)?;
        let since_ms = request.get_ref().since_ms;
        Ok(Response::new(crate::events::stream(
            &m.store.events,
            since_ms,
        )))
    }

    async fn create_network(
        &self,
        request: Request<swarmlet_proto::objects::NetworkSpec>,
    ) -> Result<Response<swarmlet_proto::objects::Network>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, create_network);
        Ok(Response::new(
            super::network_ops::create(&m, request.into_inner()).await?,
        ))
    }

    async fn list_networks(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<NetworkList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_networks);
        Ok(Response::new(NetworkList {
            networks: super::network_ops::list(&m).await?,
        }))
    }

    async fn inspect_network(
        &self,
        request: Request<NetworkRef>,
    ) -> Result<Response<swarmlet_proto::objects::Network>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_network);
        Ok(Response::new(
            super::network_ops::inspect(&m, &request.get_ref().network).await?,
        ))
    }

    async fn remove_network(
        &self,
        request: Request<NetworkRef>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_network);
        super::network_ops::remove(&m, &request.get_ref().network).await?;
        Ok(Response::new(Empty {}))
    }

    async fn service_logs(
        &self,
        request: Request<ServiceLogsRequest>,
    ) -> Result<Response<Self::ServiceLogsStream>, Status> {
        let m = self.manager(&request)?;
        let req = request.into_inner();
        Ok(Response::new(
            super::logs::service_logs(&m, &req.service, req.follow, req.tail).await?,
        ))
    }

    async fn create_service(
        &self,
        request: Request<CreateServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, create_service);
        let spec = request.into_inner().spec.unwrap_or_default();
        Ok(Response::new(service_ops::create(&m, spec).await?))
    }

    async fn list_services(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<ServiceList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_services);
        m.read_barrier().await?;
        let mut services = Vec::new();
        for (_, s) in m
            .store
            .list::<Service>()
            .map_err(crate::manager::store_status)?
        {
            services.push(service_ops::service_info(&m, &s)?);
        }
        services.sort_by(|a, b| {
            let name =
                |i: &ServiceInfo| i.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            name(a).cmp(&name(b))
        });
        Ok(Response::new(ServiceList { services }))
    }

    async fn inspect_service(
        &self,
        request: Request<ServiceRef>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_service);
        m.read_barrier().await?;
        let services = m
            .store
            .list::<Service>()
            .map_err(crate::manager::store_status)?;
        let (_, s) = resolve_service(&services, &request.get_ref().service)?;
        Ok(Response::new(service_ops::service_info(&m, &s)?))
    }

    async fn update_service(
        &self,
        request: Request<UpdateServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, update_service);
        let req = request.into_inner();
        let info = if req.rollback {
            service_ops::rollback(&m, &req.service).await?
        } else {
            let spec = req.spec.unwrap_or_default();
            service_ops::update(&m, &req.service, spec, req.expect_spec_version).await?
        };
        Ok(Response::new(info))
    }

    async fn remove_service(
        &self,
        request: Request<ServiceRef>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_service);
        service_ops::remove(&m, &request.get_ref().service).await?;
        Ok(Response::new(Empty {}))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<TaskList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_tasks);
        let req = request.get_ref();
        let tasks = service_ops::list_tasks(&m, &req.service, &req.node).await?;
        Ok(Response::new(TaskList { tasks }))
    }

    async fn inspect_task(&self, request: Request<TaskRef>) -> Result<Response<TaskInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_task);
        Ok(Response::new(
            service_ops::inspect_task(&m, &request.get_ref().task).await?,
        ))
    }

    async fn get_cluster(&self, request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, get_cluster);
        m.read_barrier().await?;
        let (_, c) = m.cluster()?;
        Ok(Response::new(cluster_info(&m, &c, &m.raft.status())?))
    }

    async fn update_cluster(
        &self,
        request: Request<UpdateClusterRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, update_cluster);
        let req = request.into_inner();
        if req.heartbeat_period_ms == Some(0) {
            return Err(Status::invalid_argument(
                "heartbeat period must be positive",
            ));
        }
        let min = m.min_cert_expiry;
        if req
            .node_cert_expiry_ms
            .is_some_and(|ms| ms < min.as_millis() as u64)
        {
            return Err(Status::invalid_argument(format!(
                "certificate expiry must be at least {}",
                humantime::format_duration(min)
            )));
        }
        if req.task_history_limit.is_some_and(|l| l < 0) {
            return Err(Status::invalid_argument(
                "task history limit must not be negative",
            ));
        }
        m.read_barrier().await?;
        let c = m
            .update(|m| {
                let (version, mut c) = m.cluster()?;
                if let Some(p) = req.heartbeat_period_ms {
                    c.heartbeat_period_ms = p;
                }
                if let Some(l) = req.task_history_limit {
                    c.task_history_limit = l;
                }
                if let Some(ms) = req.node_cert_expiry_ms {
                    c.node_cert_expiry_ms = ms;
                }
                if let Some(on) = req.autolock {
                    super::autolock::set_autolock(&mut c, on)?;
                }
                c.updated_at_ms = swarmlet_common::clock::now_ms();
                Ok((Tx::new().put(&c, Some(version)), c))
            })
            .await?;
        Ok(Response::new(cluster_info(&m, &c, &m.raft.status())?))
    }

    async fn get_join_token(
        &self,
        request: Request<JoinTokenRequest>,
    ) -> Result<Response<JoinTokenResponse>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, get_join_token);
        let req = request.into_inner();
        let role = parse_role(&req.role).ok_or_else(|| {
            Status::invalid_argument(format!(
                "unknown role {:?}: use worker or manager",
                req.role
            ))
        })?;
        m.read_barrier().await?;
        let c = if req.rotate {
            m.update(|m| {
                let (version, mut c) = m.cluster()?;
                match role {
                    NodeRole::Manager => c.manager_token_secret = new_secret(),
                    NodeRole::Worker => c.worker_token_secret = new_secret(),
                }
                c.updated_at_ms = swarmlet_common::clock::now_ms();
                Ok((Tx::new().put(&c, Some(version)), c))
            })
            .await?
        } else {
            m.cluster()?.1
        };
        let secret = match role {
            NodeRole::Manager => &c.manager_token_secret,
            NodeRole::Worker => &c.worker_token_secret,
        };
        Ok(Response::new(JoinTokenResponse {
            token: JoinToken::format(m.root_ca()?.cert_der(), secret),
            manager_addr: m.advertise_addr.clone(),
        }))
    }

    async fn rotate_root_ca(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<ClusterInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, rotate_root_ca);
        let c = crate::ca_rotation::start(&m).await?;
        tracing::info!("root CA rotation started");
        Ok(Response::new(cluster_info(&m, &c, &m.raft.status())?))
    }

    async fn get_unlock_key(
        &self,
        request: Request<UnlockKeyRequest>,
    ) -> Result<Response<UnlockKeyResponse>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, get_unlock_key);
        let unlock_key = super::autolock::unlock_key(&m, request.get_ref().rotate).await?;
        Ok(Response::new(UnlockKeyResponse { unlock_key }))
    }

    async fn list_nodes(&self, request: Request<Empty>) -> Result<Response<NodeList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_nodes);
        m.read_barrier().await?;
        let members = m.members()?;
        let status = m.raft.status();
        let mut nodes: Vec<NodeInfo> = m
            .nodes()?
            .iter()
            .map(|(_, n)| node_info(n, &members, &status))
            .collect();
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        Ok(Response::new(NodeList { nodes }))
    }

    async fn inspect_node(&self, request: Request<NodeRef>) -> Result<Response<NodeInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_node);
        m.read_barrier().await?;
        Ok(Response::new(
            self.node_info_for(&m, &request.get_ref().node).await?,
        ))
    }

    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, update_node);
        let req = request.into_inner();
        m.read_barrier().await?;
        let availability = req
            .availability
            .as_deref()
            .map(|a| {
                parse_availability(a).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "invalid availability {a:?}: use active, pause or drain"
                    ))
                })
            })
            .transpose()?;
        let id = m
            .update(|m| {
                let (version, mut n) = resolve_node(&m.nodes()?, &req.node)?;
                if let Some(a) = availability {
                    n.set_availability(a);
                }
                for k in &req.label_rm {
                    if n.labels.remove(k).is_none() {
                        return Err(Status::invalid_argument(format!(
                            "label {k} does not exist on node {}",
                            n.hostname
                        )));
                    }
                }
                for (k, v) in &req.label_add {
                    if k.is_empty() {
                        return Err(Status::invalid_argument("label key must not be empty"));
                    }
                    n.labels.insert(k.clone(), v.clone());
                }
                n.updated_at_ms = swarmlet_common::clock::now_ms();
                Ok((Tx::new().put(&n, Some(version)), n.id))
            })
            .await?;
        Ok(Response::new(self.node_info_for(&m, &id).await?))
    }

    async fn set_node_role(
        &self,
        request: Request<SetRoleRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, set_node_role);
        let req = request.get_ref().clone();
        let role = parse_role(&req.role)
            .ok_or_else(|| Status::invalid_argument(format!("unknown role {:?}", req.role)))?;
        m.read_barrier().await?;
        let (_, n) = resolve_node(&m.nodes()?, &req.node)?;
        if n.role() == role {
            return Ok(Response::new(self.node_info_for(&m, &n.id).await?));
        }
        if role == NodeRole::Worker {
            let managers = m
                .nodes()?
                .iter()
                .filter(|(_, x)| x.role() == NodeRole::Manager)
                .count();
            if managers <= 1 {
                return Err(Status::failed_precondition(
                    "can't demote the last manager of the cluster",
                ));
            }
            if !self.remove_voter(&m, &n.id).await? {
                // Leadership moved away from this manager: let the new leader finish.
                let leader = m
                    .forward_target()
                    .await?
                    .ok_or_else(|| Status::unavailable("retry"))?;
                return ControlClient::new(leader)
                    .with_limits()
                    .set_node_role(forwarded(req, None))
                    .await;
            }
        }
        let id = n.id.clone();
        m.update(|m| {
            let (version, mut n) = m
                .store
                .get::<Node>(&id)
                .map_err(crate::manager::store_status)?
                .ok_or_else(|| Status::not_found(format!("node {id} not found")))?;
            n.set_role(role);
            n.updated_at_ms = swarmlet_common::clock::now_ms();
            Ok((Tx::new().put(&n, Some(version)), ()))
        })
        .await?;
        Ok(Response::new(self.node_info_for(&m, &id).await?))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_node);
        let req = request.into_inner();
        m.read_barrier().await?;
        let (version, n) = resolve_node(&m.nodes()?, &req.node)?;
        if n.role() == NodeRole::Manager {
            return Err(Status::failed_precondition(format!(
                "node {} is a manager: demote it before removing it",
                n.hostname
            )));
        }
        if n.status() != NodeStatus::Down && !req.force {
            return Err(Status::failed_precondition(format!(
                "node {} is not down and can't be removed: stop it first, or use --force",
                n.hostname
            )));
        }
        let removed = RemovedNode {
            id: n.id.clone(),
            removed_at_ms: swarmlet_common::clock::now_ms(),
        };
        m.propose(
            Tx::new()
                .delete::<Node>(&n.id, Some(version))
                .put(&removed, None),
        )
        .await?;
        Ok(Response::new(Empty {}))
    }

    async fn remove_raft_member(
        &self,
        request: Request<RemoveRaftMemberRequest>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_raft_member);
        let req = request.get_ref().clone();
        if !self.remove_voter(&m, &req.node_id).await? {
            let leader = m
                .forward_target()
                .await?
                .ok_or_else(|| Status::unavailable("retry"))?;
            return ControlClient::new(leader)
                .with_limits()
                .remove_raft_member(forwarded(req, None))
                .await;
        }
        Ok(Response::new(Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(voters: &[u64], reachable: &[u64]) -> RaftStatus {
        RaftStatus {
            raft_id: 1,
            leader_id: 1,
            voters: voters.to_vec(),
            reachable: reachable.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn quorum_rule_for_removal() {
        // 3 healthy: removing one leaves 2 of 2 reachable.
        assert!(removal_keeps_quorum(&status(&[1, 2, 3], &[1, 2, 3]), 3).is_ok());
        // 3 with one down: removing the down one is fine, a healthy one is not.
        assert!(removal_keeps_quorum(&status(&[1, 2, 3], &[1, 2]), 3).is_ok());
        assert!(removal_keeps_quorum(&status(&[1, 2, 3], &[1, 2]), 2).is_err());
        // Never the last one.
        assert!(removal_keeps_quorum(&status(&[1], &[1]), 1).is_err());
    }
}
