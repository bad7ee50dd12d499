//! The dispatcher: node heartbeats. Followers forward them to the leader,
//! which keeps liveness and tells each node the role the cluster wants.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use swarmlet_common::grpc::{WithLimits, ASSIGNMENT_CHUNK_BYTES};

use crate::ops::OpsError;
use futures::Stream;
use swarmlet_common::names::role_name;
use swarmlet_proto::common::Empty;
use swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient;
use swarmlet_proto::dispatcher::dispatcher_server::Dispatcher;
use swarmlet_proto::dispatcher::{
    AssignmentsMessage, AssignmentsRequest, AttachRequest, UpdateTaskStatusRequest,
};
use swarmlet_proto::dispatcher::{HeartbeatRequest, HeartbeatResponse};
use swarmlet_proto::objects::Task;
use swarmlet_proto::objects::{Node, RemovedNode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::{acting_node, Need};
use super::{forwarded, ManagerSlot};
use crate::assignments::{diff, NodeAssignments, NodeTasks};
use crate::liveness::{heartbeat_period, mark_ready};
use crate::manager::Manager;

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

/// Counts a session in `swarmlet_dispatcher_sessions` while it lives.
struct SessionCount;

impl SessionCount {
    fn open() -> Self {
        swarmlet_common::metrics::global().dispatcher_sessions.inc();
        SessionCount
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        swarmlet_common::metrics::global().dispatcher_sessions.dec();
    }
}

/// One worker's session: the full set first, then diffs whenever the
/// node's assignments change. Ends when this manager stops leading (the
/// worker reconnects).
async fn session(
    manager: Weak<Manager>,
    node_id: String,
    tx: mpsc::Sender<Result<AssignmentsMessage, Status>>,
) {
    let Some((mut assigned, mut status)) = manager
        .upgrade()
        .map(|m| (m.assignments.subscribe(&node_id), m.raft.watch_status()))
    else {
        return;
    };
    let _counted = SessionCount::open();
    // What the node was last sent (None: nothing yet).
    let mut sent: Option<Arc<NodeAssignments>> = None;
    let nothing = NodeTasks::new();
    loop {
        if !status.borrow().is_leader() {
            let _ = tx
                .send(Err(Status::unavailable(
                    "this manager is no longer the leader",
                )))
                .await;
            return;
        }
        let Some(now) = assigned.borrow_and_update().clone() else {
            // Not computed yet for this node: wait for the first scan.
            tokio::select! {
                r = assigned.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
            continue;
        };
        let full = sent.is_none();
        let diff = diff(sent.as_ref().map_or(&nothing, |s| &s.tasks), &now.tasks);
        let networks_changed = sent.as_ref().is_none_or(|s| s.networks != now.networks);
        let changed =
            !diff.updated.is_empty() || !diff.states.is_empty() || !diff.removed.is_empty();
        if full || changed || networks_changed {
            // The secrets and configs of these tasks, opened only now and
            // only for this node.
            let files = match manager.upgrade() {
                Some(m) => {
                    let refs: Vec<&Task> = diff.updated.iter().collect();
                    crate::ops::secret::payloads(&m, &refs).await
                }
                None => return,
            };
            let msg = AssignmentsMessage {
                files,
                full,
                updated: diff.updated,
                removed: diff.removed,
                states: diff.states,
                networks_changed,
                networks: if networks_changed {
                    now.networks.clone()
                } else {
                    Vec::new()
                },
                more: false,
            };
            for chunk in crate::chunks::into_chunks(msg, ASSIGNMENT_CHUNK_BYTES) {
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            sent = Some(now);
        }
        tokio::select! {
            r = assigned.changed() => if r.is_err() { return },
            r = status.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    type AssignmentsStream = Pin<Box<dyn Stream<Item = Result<AssignmentsMessage, Status>> + Send>>;

    async fn assignments(
        &self,
        request: Request<AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let m = self.slot.get()?;
        let node_id = acting_node(&m, &request, Need::Member)?;
        if let Some(leader) = m.forward_target().await? {
            let upstream = DispatcherClient::new(leader)
                .with_limits()
                .assignments(forwarded(request.into_inner(), Some(&node_id)))
                .await?;
            return Ok(Response::new(Box::pin(upstream.into_inner())));
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(session(Arc::downgrade(&m), node_id, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_task_status(
        &self,
        request: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.slot.get()?;
        let node_id = acting_node(&m, &request, Need::Member)?;
        if let Some(leader) = m.forward_target().await? {
            return DispatcherClient::new(leader)
                .with_limits()
                .update_task_status(forwarded(request.into_inner(), Some(&node_id)))
                .await;
        }
        for u in request.into_inner().updates {
            // A node reports only on its own tasks.
            let owned = m
                .store
                .get_shared::<Task>(&u.task_id)
                .map_err(OpsError::from)?
                .is_some_and(|(_, t)| t.node_id == node_id);
            if let (true, Some(status)) = (owned, u.status) {
                m.report_status(u.task_id, status);
            }
        }
        Ok(Response::new(Empty {}))
    }

    async fn attach(&self, request: Request<AttachRequest>) -> Result<Response<Task>, Status> {
        let m = self.slot.get()?;
        let node_id = acting_node(&m, &request, Need::Member)?;
        if let Some(leader) = m.forward_target().await? {
            return DispatcherClient::new(leader)
                .with_limits()
                .attach(forwarded(request.into_inner(), Some(&node_id)))
                .await;
        }
        let task = crate::ops::network::attach(&m, &node_id, request.into_inner()).await?;
        Ok(Response::new(task))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let m = self.slot.get()?;
        // A removed node is told so (it then leaves the cluster by itself)
        // rather than refused.
        let own = swarmlet_common::tls::peer_cert_info(&request)?.node_id;
        if request.metadata().get(super::ON_BEHALF_OF).is_none()
            && m.store
                .get_shared::<RemovedNode>(&own)
                .map_err(OpsError::from)?
                .is_some()
        {
            return Ok(Response::new(HeartbeatResponse {
                period_ms: heartbeat_period(&m).as_millis() as u64,
                removed: true,
                ..Default::default()
            }));
        }
        let node_id = acting_node(&m, &request, Need::Member)?;
        if let Some(leader) = m.forward_target().await? {
            return DispatcherClient::new(leader)
                .with_limits()
                .heartbeat(forwarded(request.into_inner(), Some(&node_id)))
                .await;
        }
        let req = request.into_inner();
        let removed = m
            .store
            .get::<RemovedNode>(&node_id)
            .map_err(OpsError::from)?
            .is_some();
        let period = heartbeat_period(&m);
        if removed {
            return Ok(Response::new(HeartbeatResponse {
                period_ms: period.as_millis() as u64,
                removed: true,
                ..Default::default()
            }));
        }
        // Not registered yet (its record is still being committed, as at
        // `cluster init`): the node retries.
        let Some((_, node)) = m.store.get::<Node>(&node_id).map_err(OpsError::from)? else {
            return Err(Status::unavailable(format!(
                "node {node_id} is not registered yet"
            )));
        };
        m.liveness.record(&node_id);
        let m2 = m.clone();
        let reported = crate::liveness::Reported {
            addr: req.addr,
            resources: req.resources,
            daemon_ports: req.daemon_ports,
            engine_error: req.engine_error,
            data_addr: req.data_addr,
        };
        tokio::spawn(async move { mark_ready(&m2, &node_id, reported).await });
        let (root_digest, trust_roots_pem) = m
            .cluster()
            .map(|(_, c)| {
                (
                    crate::ca_rotation::current_digest(&c),
                    crate::ca_rotation::trust_roots(&c),
                )
            })
            .unwrap_or_default();
        Ok(Response::new(HeartbeatResponse {
            period_ms: period.as_millis() as u64,
            desired_role: role_name(node.role()).to_string(),
            manager_addrs: m.manager_addrs(),
            removed: false,
            root_digest,
            trust_roots_pem,
            manager_ids: m
                .members()
                .map(|ms| ms.into_iter().map(|x| x.node_id).collect())
                .unwrap_or_default(),
        }))
    }
}
