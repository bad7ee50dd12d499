//! The dispatcher: node heartbeats. Followers forward them to the leader,
//! which keeps liveness and tells each node the role the cluster wants.

use swarmlet_common::names::role_name;
use swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient;
use swarmlet_proto::dispatcher::dispatcher_server::Dispatcher;
use swarmlet_proto::dispatcher::{HeartbeatRequest, HeartbeatResponse};
use swarmlet_proto::objects::{Node, RemovedNode};
use tonic::{Request, Response, Status};

use super::{calling_node, forwarded, ManagerSlot};
use crate::liveness::{heartbeat_period, mark_ready};
use crate::manager::store_status;

/// The dispatcher service of one node.
pub struct DispatcherService {
    slot: ManagerSlot,
}

impl DispatcherService {
    /// A dispatcher backed by the node's manager slot.
    pub fn new(slot: ManagerSlot) -> Self {
        DispatcherService { slot }
    }
}

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let node_id = calling_node(&request)?;
        let m = self.slot.get()?;
        if let Some(leader) = m.forward_target().await? {
            return DispatcherClient::new(leader)
                .heartbeat(forwarded(request.into_inner(), Some(&node_id)))
                .await;
        }
        let req = request.into_inner();
        let removed = m
            .store
            .get::<RemovedNode>(&node_id)
            .map_err(store_status)?
            .is_some();
        let node = m.store.get::<Node>(&node_id).map_err(store_status)?;
        let period = heartbeat_period(&m);
        let Some((_, node)) = node.filter(|_| !removed) else {
            return Ok(Response::new(HeartbeatResponse {
                period_ms: period.as_millis() as u64,
                removed: true,
                ..Default::default()
            }));
        };
        m.liveness.record(&node_id);
        let m2 = m.clone();
        let addr = req.addr.clone();
        tokio::spawn(async move { mark_ready(&m2, &node_id, &addr).await });
        Ok(Response::new(HeartbeatResponse {
            period_ms: period.as_millis() as u64,
            desired_role: role_name(node.role()).to_string(),
            manager_addrs: m.manager_addrs(),
            removed: false,
        }))
    }
}
