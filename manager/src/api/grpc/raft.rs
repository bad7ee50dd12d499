//! The Raft transport service: message streams from peers, and joining the
//! Raft group as a new voter.

use crate::ops::OpsError;
use prost::Message as _;
use protobuf::Message as PbMessage;
use raft::eraftpb::Message;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::common::Empty;
use swarmlet_proto::objects::{Node, NodeRole};
use swarmlet_proto::raft::raft_transport_client::RaftTransportClient;
use swarmlet_proto::raft::raft_transport_server::RaftTransport;
use swarmlet_proto::raft::{
    JoinRaftRequest, JoinRaftResponse, RaftChunk, RaftMemberInfo, SecretsKey,
};
use swarmlet_proto::store::ConfChangeContext;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{self, acting_node, authorize, Need};
use super::{forwarded, ManagerSlot};

/// The Raft transport service of one node.
pub struct RaftService {
    slot: ManagerSlot,
}

impl RaftService {
    /// A Raft service backed by the node's manager slot.
    pub fn new(slot: ManagerSlot) -> Self {
        RaftService { slot }
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn stream(
        &self,
        request: Request<Streaming<RaftChunk>>,
    ) -> Result<Response<Empty>, Status> {
        // Checked against the store at the start and again as messages
        // come: a stream outlives a demotion or a removal.
        let cert = authorize(&*self.slot.get()?, &request, Need::Manager)?;
        let from_addr = request
            .metadata()
            .get(crate::raft::transport::FROM_ADDR)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut stream = request.into_inner();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.message().await? {
            buf.extend_from_slice(&chunk.data);
            if !chunk.last {
                continue;
            }
            let msg = Message::parse_from_bytes(&buf)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            buf.clear();
            // Look the manager up per message: a stream outlives a demotion or
            // shutdown, and must not keep the stopped manager alive.
            let m = self.slot.get()?;
            if m.transport.is_blocked(msg.from) {
                continue;
            }
            if let Some(refused) = auth::refuse_raft_peer(&m.store, &cert) {
                return Err(refused);
            }
            if !auth::raft_sender_matches(&m.store, &cert, msg.from) {
                tracing::warn!(
                    node = %cert.node_id,
                    from = msg.from,
                    "raft message from a member that is not the sender's: dropped"
                );
                continue;
            }
            m.transport.learn_peer(msg.from, &from_addr);
            m.raft.step(msg);
        }
        Ok(Response::new(Empty {}))
    }

    async fn fetch_secrets_key(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<SecretsKey>, Status> {
        // Managers only: the key opens every secret of the cluster.
        let m = self.slot.get()?;
        authorize(&m, &request, Need::Manager)?;
        let key = m.keys.local_kek()?;
        Ok(Response::new(SecretsKey {
            key: key.map(|k| k.as_bytes().to_vec()).unwrap_or_default(),
        }))
    }

    async fn join_raft(
        &self,
        request: Request<JoinRaftRequest>,
    ) -> Result<Response<JoinRaftResponse>, Status> {
        let m = self.slot.get()?;
        let node_id = acting_node(&m, &request, Need::Manager)?;
        if let Some(leader) = m.forward_target().await? {
            return RaftTransportClient::new(leader)
                .with_limits()
                .join_raft(forwarded(request.into_inner(), Some(&node_id)))
                .await;
        }
        let req = request.into_inner();
        let (_, node) = m
            .store
            .get::<Node>(&node_id)
            .map_err(OpsError::from)?
            .ok_or_else(|| Status::not_found(format!("node {node_id} not found")))?;
        if node.role() != NodeRole::Manager {
            return Err(Status::permission_denied(format!(
                "node {node_id} is not a manager"
            )));
        }
        let members = m.members()?;
        let already = members.iter().any(|x| x.raft_id == req.raft_id);
        if let Some(stale) = members
            .iter()
            .find(|x| x.node_id == node_id && x.raft_id != req.raft_id)
        {
            // The node lost its Raft state and comes back under a new Raft ID.
            let ctx = ConfChangeContext {
                node_id: node_id.clone(),
                ..Default::default()
            };
            m.raft
                .remove_voter(stale.raft_id, ctx.encode_to_vec())
                .await
                .map_err(OpsError::from)?;
        }
        if !already {
            let ctx = ConfChangeContext {
                node_id: node_id.clone(),
                addr: req.addr.clone(),
                proposal_id: 0,
            };
            m.raft
                .add_voter(req.raft_id, ctx.encode_to_vec())
                .await
                .map_err(OpsError::from)?;
            tracing::info!(node = %node_id, raft_id = req.raft_id, "manager joined raft");
        }
        let members = m
            .members()?
            .into_iter()
            .map(|x| RaftMemberInfo {
                raft_id: x.raft_id,
                node_id: x.node_id,
                addr: x.addr,
            })
            .collect();
        Ok(Response::new(JoinRaftResponse { members }))
    }
}
