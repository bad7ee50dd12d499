//! The control API behind `swarmctl`, over gRPC: each call authorizes the
//! caller, goes to the leader, and runs the operation in [`crate::ops`]
//! (one file per resource there); nothing else happens here.
//!
//! Served on the local unix socket (trusted: mode 0600) and on the mTLS
//! listener, where only manager certificates may call it. A follower
//! forwards every call to the leader, which answers reads after a Raft read
//! barrier, so what a client sees is linearizable.

use futures::StreamExt;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::control_server::Control;
use swarmlet_proto::control::*;
use tonic::{Request, Response, Status};

use super::auth::{authorize, Need};
use super::{forwarded, ManagerSlot};
use crate::manager::Manager;
use crate::ops::{self, OpsError};

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

/// What a leader that just handed its leadership away answers when the new
/// leader is not known yet.
fn retry() -> Status {
    Status::unavailable("leadership moved; retry")
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
            ops::secret::create(&m, request.into_inner()).await?,
        ))
    }

    async fn list_secrets(
        &self,
        request: Request<ListSecretsRequest>,
    ) -> Result<Response<SecretList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_secrets);
        let kind = ops::secret::Kind::from_flag(request.get_ref().config);
        Ok(Response::new(SecretList {
            secrets: ops::secret::list(&m, kind).await?,
        }))
    }

    async fn inspect_secret(
        &self,
        request: Request<SecretRef>,
    ) -> Result<Response<SecretInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_secret);
        let r = request.get_ref();
        let kind = ops::secret::Kind::from_flag(r.config);
        Ok(Response::new(
            ops::secret::inspect(&m, kind, &r.secret).await?,
        ))
    }

    async fn remove_secret(&self, request: Request<SecretRef>) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_secret);
        let r = request.get_ref();
        let kind = ops::secret::Kind::from_flag(r.config);
        ops::secret::remove(&m, kind, &r.secret).await?;
        Ok(Response::new(Empty {}))
    }

    async fn update_secret_labels(
        &self,
        request: Request<UpdateSecretLabelsRequest>,
    ) -> Result<Response<SecretInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, update_secret_labels);
        let r = request.into_inner();
        let kind = ops::secret::Kind::from_flag(r.config);
        Ok(Response::new(
            ops::secret::update_labels(&m, kind, &r.secret, r.labels.into_iter().collect()).await?,
        ))
    }

    async fn get_web_token(
        &self,
        request: Request<WebTokenRequest>,
    ) -> Result<Response<WebTokenResponse>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, get_web_token);
        let token = ops::cluster::web_token(&m, request.get_ref().rotate).await?;
        Ok(Response::new(WebTokenResponse { token }))
    }

    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        // Every manager applies every change: no need for the leader.
        let m = self.manager(&request)?;
        let since_ms = request.get_ref().since_ms;
        let events = crate::events::stream(&m.store.events, since_ms).map(Ok);
        Ok(Response::new(events.boxed()))
    }

    async fn create_network(
        &self,
        request: Request<swarmlet_proto::objects::NetworkSpec>,
    ) -> Result<Response<swarmlet_proto::objects::Network>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, create_network);
        Ok(Response::new(
            ops::network::create(&m, request.into_inner()).await?,
        ))
    }

    async fn list_networks(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<NetworkList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_networks);
        Ok(Response::new(NetworkList {
            networks: ops::network::list(&m).await?,
        }))
    }

    async fn inspect_network(
        &self,
        request: Request<NetworkRef>,
    ) -> Result<Response<swarmlet_proto::objects::Network>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_network);
        Ok(Response::new(
            ops::network::inspect(&m, &request.get_ref().network).await?,
        ))
    }

    async fn remove_network(
        &self,
        request: Request<NetworkRef>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_network);
        ops::network::remove(&m, &request.get_ref().network).await?;
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
        Ok(Response::new(ops::service::create(&m, spec).await?))
    }

    async fn list_services(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<ServiceList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_services);
        Ok(Response::new(ServiceList {
            services: ops::service::list(&m).await?,
        }))
    }

    async fn inspect_service(
        &self,
        request: Request<ServiceRef>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_service);
        Ok(Response::new(
            ops::service::inspect(&m, &request.get_ref().service).await?,
        ))
    }

    async fn update_service(
        &self,
        request: Request<UpdateServiceRequest>,
    ) -> Result<Response<ServiceInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, update_service);
        let req = request.into_inner();
        let info = if req.rollback {
            ops::service::rollback(&m, &req.service, req.expect_spec_version).await?
        } else {
            let spec = req.spec.unwrap_or_default();
            ops::service::update(&m, &req.service, spec, req.expect_spec_version).await?
        };
        Ok(Response::new(info))
    }

    async fn remove_service(
        &self,
        request: Request<ServiceRef>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_service);
        ops::service::remove(&m, &request.get_ref().service).await?;
        Ok(Response::new(Empty {}))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<TaskList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_tasks);
        let req = request.get_ref();
        let tasks = ops::task::list(&m, &req.service, &req.node).await?;
        Ok(Response::new(TaskList { tasks }))
    }

    async fn inspect_task(&self, request: Request<TaskRef>) -> Result<Response<TaskInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_task);
        Ok(Response::new(
            ops::task::inspect(&m, &request.get_ref().task).await?,
        ))
    }

    async fn get_cluster(&self, request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, get_cluster);
        Ok(Response::new(ops::cluster::get(&m).await?))
    }

    async fn update_cluster(
        &self,
        request: Request<UpdateClusterRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, update_cluster);
        Ok(Response::new(
            ops::cluster::update(&m, request.into_inner()).await?,
        ))
    }

    async fn get_join_token(
        &self,
        request: Request<JoinTokenRequest>,
    ) -> Result<Response<JoinTokenResponse>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, get_join_token);
        let req = request.get_ref();
        Ok(Response::new(
            ops::cluster::join_token(&m, &req.role, req.rotate).await?,
        ))
    }

    async fn rotate_root_ca(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<ClusterInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, rotate_root_ca);
        Ok(Response::new(ops::cluster::rotate_root_ca(&m).await?))
    }

    async fn get_unlock_key(
        &self,
        request: Request<UnlockKeyRequest>,
    ) -> Result<Response<UnlockKeyResponse>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, get_unlock_key);
        let unlock_key = ops::autolock::unlock_key(&m, request.get_ref().rotate).await?;
        Ok(Response::new(UnlockKeyResponse { unlock_key }))
    }

    async fn list_nodes(&self, request: Request<Empty>) -> Result<Response<NodeList>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, list_nodes);
        Ok(Response::new(NodeList {
            nodes: ops::node::list(&m).await?,
        }))
    }

    async fn inspect_node(&self, request: Request<NodeRef>) -> Result<Response<NodeInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, inspect_node);
        Ok(Response::new(
            ops::node::inspect(&m, &request.get_ref().node).await?,
        ))
    }

    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, update_node);
        Ok(Response::new(
            ops::node::update(&m, request.into_inner()).await?,
        ))
    }

    async fn set_node_role(
        &self,
        request: Request<SetRoleRequest>,
    ) -> Result<Response<NodeInfo>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, set_node_role);
        let req = request.get_ref();
        match ops::node::set_role(&m, &req.node, &req.role).await {
            // This leader demoted itself: the new leader finishes.
            Err(OpsError::LeaderMoved) => {
                let leader = m.forward_target().await?.ok_or_else(retry)?;
                ControlClient::new(leader)
                    .with_limits()
                    .set_node_role(forwarded(request.into_inner(), None))
                    .await
            }
            other => Ok(Response::new(other?)),
        }
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_node);
        let req = request.get_ref();
        ops::node::remove(&m, &req.node, req.force).await?;
        Ok(Response::new(Empty {}))
    }

    async fn remove_raft_member(
        &self,
        request: Request<RemoveRaftMemberRequest>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&request)?;
        forward_to_leader!(m, request, remove_raft_member);
        match ops::node::remove_raft_member(&m, &request.get_ref().node_id).await {
            // This leader was the member: the new leader finishes.
            Err(OpsError::LeaderMoved) => {
                let leader = m.forward_target().await?.ok_or_else(retry)?;
                ControlClient::new(leader)
                    .with_limits()
                    .remove_raft_member(forwarded(request.into_inner(), None))
                    .await
            }
            other => {
                other?;
                Ok(Response::new(Empty {}))
            }
        }
    }
}
