//! The CA service: the root certificate for joining nodes, certificates
//! against a join token, and renewals for nodes that hold a certificate.

use crate::ops::OpsError;
use swarmlet_common::ca::NODE_CERT_VALIDITY;
use swarmlet_common::grpc::WithLimits;
use swarmlet_common::identity::Role;
use swarmlet_common::token::{root_digest, JoinToken};
use swarmlet_proto::ca::ca_client::CaClient;
use swarmlet_proto::ca::ca_server::Ca;
use swarmlet_proto::ca::{IssueRequest, IssueResponse, RenewRequest, RootCaResponse};
use swarmlet_proto::common::Empty;
use swarmlet_proto::objects::{Node, NodeAvailability, NodeRole, NodeStatus, RemovedNode};
use tonic::{Request, Response, Status};

use super::auth::{acting_node, Need};
use super::{forwarded, ManagerSlot};
use crate::manager::Manager;
use crate::store::Tx;

/// The CA service of one node.
pub struct CaService {
    slot: ManagerSlot,
}

impl CaService {
    /// A CA service backed by the node's manager slot.
    pub fn new(slot: ManagerSlot) -> Self {
        CaService { slot }
    }
}

/// Which role a token's secret grants, if it is a current token of this cluster.
fn role_for_token(m: &Manager, token: &str) -> Result<Role, Status> {
    let token = JoinToken::parse(token).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let (_, cluster) = m.cluster()?;
    let ca = m.root_ca()?;
    if token.root_digest != root_digest(ca.cert_der()) {
        return Err(Status::permission_denied(
            "invalid join token: it is for another cluster's root CA",
        ));
    }
    if token.secret == cluster.manager_token_secret {
        Ok(Role::Manager)
    } else if token.secret == cluster.worker_token_secret {
        Ok(Role::Worker)
    } else {
        Err(Status::permission_denied(
            "invalid join token: the token was rotated or is wrong",
        ))
    }
}

fn sign(m: &Manager, csr: &str, node_id: &str, role: Role) -> Result<IssueResponse, Status> {
    let (_, cluster) = m.cluster()?;
    let validity = match cluster.node_cert_expiry_ms {
        0 => NODE_CERT_VALIDITY,
        ms => std::time::Duration::from_millis(ms),
    };
    let root = m.root_ca()?;
    let mut cert_pem = root
        .sign_node(csr, node_id, role, &cluster.id, validity)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    // During a root rotation, the chain through the old root too.
    cert_pem.push_str(&String::from_utf8_lossy(&cluster.ca_cross_signed_pem));
    Ok(IssueResponse {
        node_id: node_id.to_string(),
        role: role.name().to_string(),
        cert_pem,
        cluster_id: cluster.id.clone(),
        manager_addrs: m.manager_addrs(),
        trust_roots_pem: crate::ca_rotation::trust_roots(&cluster),
        root_digest: root_digest(root.cert_der()),
    })
}

#[tonic::async_trait]
impl Ca for CaService {
    async fn get_root_ca_certificate(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<RootCaResponse>, Status> {
        let m = self.slot.get()?;
        Ok(Response::new(RootCaResponse {
            cert_pem: m.root_ca()?.cert_pem().to_string(),
        }))
    }

    async fn issue_node_certificate(
        &self,
        request: Request<IssueRequest>,
    ) -> Result<Response<IssueResponse>, Status> {
        let m = self.slot.get()?;
        if let Some(leader) = m.forward_target().await? {
            return CaClient::new(leader)
                .with_limits()
                .issue_node_certificate(forwarded(request.into_inner(), None))
                .await;
        }
        let req = request.into_inner();
        let role = role_for_token(&m, &req.token)?;
        let node_id = swarmlet_common::ids::new_id();
        let now = swarmlet_common::clock::now_ms();
        let mut node = Node {
            id: node_id.clone(),
            hostname: req.hostname.clone(),
            addr: req.advertise_addr.clone(),
            created_at_ms: now,
            updated_at_ms: now,
            ..Default::default()
        };
        node.set_role(match role {
            Role::Manager => NodeRole::Manager,
            Role::Worker => NodeRole::Worker,
        });
        node.set_availability(NodeAvailability::Active);
        node.set_status(NodeStatus::Unknown);
        // Sign first: a bad CSR must not leave a node behind.
        let response = sign(&m, &req.csr_pem, &node_id, role)?;
        node.cert_root_digest = response.root_digest.clone();
        m.propose(Tx::new().create(&node)).await?;
        tracing::info!(node = %node_id, hostname = %req.hostname, role = role.name(), "node joined");
        Ok(Response::new(response))
    }

    async fn renew_node_certificate(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<IssueResponse>, Status> {
        let m = self.slot.get()?;
        let node_id = acting_node(&m, &request, Need::Member)?;
        // The leader signs, so that the signing root is recorded in the
        // node's row (a root CA rotation follows it).
        let forwarded_reply = super::forward_unary(&m, request.get_ref(), |leader, req| {
            let node_id = node_id.clone();
            async move {
                CaClient::new(leader)
                    .with_limits()
                    .renew_node_certificate(forwarded(req, Some(&node_id)))
                    .await
            }
        })
        .await?;
        if let Some(reply) = forwarded_reply {
            return Ok(reply);
        }
        if m.store
            .get::<RemovedNode>(&node_id)
            .map_err(OpsError::from)?
            .is_some()
        {
            return Err(Status::permission_denied(format!(
                "node {node_id} was removed from the cluster"
            )));
        }
        let (_, node) = m
            .store
            .get::<Node>(&node_id)
            .map_err(OpsError::from)?
            .ok_or_else(|| Status::not_found(format!("node {node_id} not found")))?;
        let role = match node.role() {
            NodeRole::Manager => Role::Manager,
            NodeRole::Worker => Role::Worker,
        };
        let response = sign(&m, &request.get_ref().csr_pem, &node_id, role)?;
        let digest = response.root_digest.clone();
        m.update(|m| {
            let (version, mut n) = m
                .store
                .get::<Node>(&node_id)
                .map_err(OpsError::from)?
                .ok_or_else(|| OpsError::not_found("node", node_id.as_str()))?;
            n.cert_root_digest = digest.clone();
            Ok((Tx::new().put(&n, Some(version)), ()))
        })
        .await?;
        Ok(Response::new(response))
    }
}
