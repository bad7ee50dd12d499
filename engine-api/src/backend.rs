//! The Engine API's way into the cluster: the control API's own service,
//! called in-process. Every request therefore runs the same operations
//! ([`swarmlet_manager::ops`]) as `swarmctl`'s, with the same validation,
//! and a follower forwards writes and reads to the leader exactly as it
//! does for `swarmctl`. The socket is local and private (0600), so the
//! caller is trusted as the control socket's caller is.

use std::sync::Arc;

use swarmlet_manager::api::grpc::control::ControlService;
use swarmlet_manager::api::grpc::ManagerSlot;
use swarmlet_manager::manager::Manager;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_server::Control;
use swarmlet_proto::control::*;
use swarmlet_proto::objects::{Network, NetworkSpec, ServiceSpec};
use tonic::Request;

use crate::error::ApiResult;

/// The control API of this node, for the Engine API's handlers.
#[derive(Clone)]
pub struct Backend {
    slot: ManagerSlot,
    control: Arc<ControlService>,
}

macro_rules! call {
    ($self:ident, $method:ident, $req:expr) => {
        $self
            .control
            .$method(Request::new($req))
            .await
            .map(tonic::Response::into_inner)
            .map_err(crate::error::ApiError::from)
    };
}

impl Backend {
    /// A backend over this node's manager slot.
    pub fn new(slot: ManagerSlot) -> Self {
        Backend {
            control: Arc::new(ControlService::new(slot.clone(), true)),
            slot,
        }
    }

    /// This node's manager, or why there is none (a worker, a locked
    /// manager).
    pub fn manager(&self) -> ApiResult<Arc<Manager>> {
        Ok(self.slot.get()?)
    }

    /// The cluster's settings and Raft state.
    pub async fn cluster(&self) -> ApiResult<ClusterInfo> {
        call!(self, get_cluster, Empty {})
    }

    /// A join token and the address to join at.
    pub async fn join_token(&self, role: &str) -> ApiResult<JoinTokenResponse> {
        call!(
            self,
            get_join_token,
            JoinTokenRequest {
                role: role.into(),
                rotate: false,
            }
        )
    }

    /// Every node.
    pub async fn nodes(&self) -> ApiResult<Vec<NodeInfo>> {
        let list: NodeList = call!(self, list_nodes, Empty {})?;
        Ok(list.nodes)
    }

    /// One node by ID, hostname or ID prefix.
    pub async fn node(&self, node: &str) -> ApiResult<NodeInfo> {
        call!(self, inspect_node, NodeRef { node: node.into() })
    }

    /// Changes a node's availability and labels.
    pub async fn update_node(&self, request: UpdateNodeRequest) -> ApiResult<NodeInfo> {
        call!(self, update_node, request)
    }

    /// Promotes or demotes a node.
    pub async fn set_node_role(&self, node: &str, role: &str) -> ApiResult<NodeInfo> {
        call!(
            self,
            set_node_role,
            SetRoleRequest {
                node: node.into(),
                role: role.into(),
            }
        )
    }

    /// Removes a node from the cluster.
    pub async fn remove_node(&self, node: &str, force: bool) -> ApiResult<()> {
        let _: Empty = call!(
            self,
            remove_node,
            RemoveNodeRequest {
                node: node.into(),
                force,
            }
        )?;
        Ok(())
    }

    /// Every service with its counts.
    pub async fn services(&self) -> ApiResult<Vec<ServiceInfo>> {
        let list: ServiceList = call!(self, list_services, Empty {})?;
        Ok(list.services)
    }

    /// One service by ID, name or ID prefix.
    pub async fn service(&self, service: &str) -> ApiResult<ServiceInfo> {
        call!(
            self,
            inspect_service,
            ServiceRef {
                service: service.into()
            }
        )
    }

    /// Creates a service.
    pub async fn create_service(&self, spec: ServiceSpec) -> ApiResult<ServiceInfo> {
        call!(
            self,
            create_service,
            CreateServiceRequest { spec: Some(spec) }
        )
    }

    /// Replaces a service's spec (`expect`: the version the client read),
    /// or rolls it back.
    pub async fn update_service(&self, request: UpdateServiceRequest) -> ApiResult<ServiceInfo> {
        call!(self, update_service, request)
    }

    /// Removes a service.
    pub async fn remove_service(&self, service: &str) -> ApiResult<()> {
        let _: Empty = call!(
            self,
            remove_service,
            ServiceRef {
                service: service.into()
            }
        )?;
        Ok(())
    }

    /// Tasks, of one service and/or one node (empty: all).
    pub async fn tasks(&self, service: &str, node: &str) -> ApiResult<Vec<TaskInfo>> {
        let list: TaskList = call!(
            self,
            list_tasks,
            ListTasksRequest {
                service: service.into(),
                node: node.into(),
            }
        )?;
        Ok(list.tasks)
    }

    /// One task by ID or ID prefix.
    pub async fn task(&self, task: &str) -> ApiResult<TaskInfo> {
        call!(self, inspect_task, TaskRef { task: task.into() })
    }

    /// The merged output of a service's tasks.
    pub async fn service_logs(
        &self,
        service: &str,
        follow: bool,
        tail: i64,
    ) -> ApiResult<swarmlet_manager::api::grpc::logs::Lines> {
        call!(
            self,
            service_logs,
            ServiceLogsRequest {
                service: service.into(),
                follow,
                tail,
            }
        )
    }

    /// Every network.
    pub async fn networks(&self) -> ApiResult<Vec<Network>> {
        let list: NetworkList = call!(self, list_networks, Empty {})?;
        Ok(list.networks)
    }

    /// One network by ID, name or ID prefix.
    pub async fn network(&self, network: &str) -> ApiResult<Network> {
        call!(
            self,
            inspect_network,
            NetworkRef {
                network: network.into()
            }
        )
    }

    /// Creates an overlay network.
    pub async fn create_network(&self, spec: NetworkSpec) -> ApiResult<Network> {
        call!(self, create_network, spec)
    }

    /// Removes a network.
    pub async fn remove_network(&self, network: &str) -> ApiResult<()> {
        let _: Empty = call!(
            self,
            remove_network,
            NetworkRef {
                network: network.into()
            }
        )?;
        Ok(())
    }

    /// Secrets (`config` false) or configs.
    pub async fn secrets(&self, config: bool) -> ApiResult<Vec<SecretInfo>> {
        let list: SecretList = call!(self, list_secrets, ListSecretsRequest { config })?;
        Ok(list.secrets)
    }

    /// One secret or config by ID, name or ID prefix.
    pub async fn secret(&self, config: bool, secret: &str) -> ApiResult<SecretInfo> {
        call!(
            self,
            inspect_secret,
            SecretRef {
                config,
                secret: secret.into(),
            }
        )
    }

    /// Creates a secret or config.
    pub async fn create_secret(&self, request: CreateSecretRequest) -> ApiResult<SecretInfo> {
        call!(self, create_secret, request)
    }

    /// Replaces a secret's or config's labels.
    pub async fn update_secret_labels(
        &self,
        request: UpdateSecretLabelsRequest,
    ) -> ApiResult<SecretInfo> {
        call!(self, update_secret_labels, request)
    }

    /// Removes a secret or config.
    pub async fn remove_secret(&self, config: bool, secret: &str) -> ApiResult<()> {
        let _: Empty = call!(
            self,
            remove_secret,
            SecretRef {
                config,
                secret: secret.into(),
            }
        )?;
        Ok(())
    }
}
