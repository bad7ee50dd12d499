//! The cluster object: its settings, join tokens, root CA rotation, and the
//! view `cluster inspect` shows.

use swarmlet_common::names::parse_role;
use swarmlet_common::token::{new_secret, root_digest, JoinToken};
use swarmlet_proto::control::{ClusterInfo, JoinTokenResponse, UpdateClusterRequest};
use swarmlet_proto::objects::{Cluster, Node, NodeRole};

use super::{OpsError, OpsResult};
use crate::manager::Manager;
use crate::raft::RaftStatus;
use crate::store::Tx;

/// What `cluster inspect` shows of `c`, with the Raft state in `status`.
pub fn cluster_info(m: &Manager, c: &Cluster, status: &RaftStatus) -> OpsResult<ClusterInfo> {
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
            let nodes = m.store.objects::<Node>()?;
            crate::ca_rotation::pending(&nodes, &crate::ca_rotation::current_digest(c)) as u32
        } else {
            0
        },
    })
}

/// The cluster as it is now (after a read barrier).
pub async fn get(m: &Manager) -> OpsResult<ClusterInfo> {
    m.read_barrier().await?;
    let (_, c) = m.cluster()?;
    cluster_info(m, &c, &m.raft.status())
}

/// Changes the cluster's settings; what is not set in `req` stays.
pub async fn update(m: &Manager, req: UpdateClusterRequest) -> OpsResult<ClusterInfo> {
    if req.heartbeat_period_ms == Some(0) {
        return Err(OpsError::invalid("heartbeat period must be positive"));
    }
    let min = m.min_cert_expiry;
    if req
        .node_cert_expiry_ms
        .is_some_and(|ms| ms < min.as_millis() as u64)
    {
        return Err(OpsError::invalid(format!(
            "certificate expiry must be at least {}",
            humantime::format_duration(min)
        )));
    }
    if req.task_history_limit.is_some_and(|l| l < 0) {
        return Err(OpsError::invalid("task history limit must not be negative"));
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
    cluster_info(m, &c, &m.raft.status())
}

/// The join token of `role` (`worker` or `manager`), replaced by a new one
/// first with `rotate`, and the address to join through.
pub async fn join_token(m: &Manager, role: &str, rotate: bool) -> OpsResult<JoinTokenResponse> {
    let role = parse_role(role).ok_or_else(|| {
        OpsError::invalid(format!("unknown role {role:?}: use worker or manager"))
    })?;
    m.read_barrier().await?;
    let c = if rotate {
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
    Ok(JoinTokenResponse {
        token: JoinToken::format(m.root_ca()?.cert_der(), secret),
        manager_addr: m.advertise_addr.clone(),
    })
}

/// The browser view's token, made on first use; `rotate` replaces it (the
/// old one is refused from then on).
pub async fn web_token(m: &Manager, rotate: bool) -> OpsResult<String> {
    m.read_barrier().await?;
    let current = m.cluster()?.1.web_token;
    if !current.is_empty() && !rotate {
        return Ok(current);
    }
    m.update(|m| {
        let (version, mut c) = m.cluster()?;
        c.web_token = format!("SWMWEB-1-{}", new_secret());
        c.updated_at_ms = swarmlet_common::clock::now_ms();
        let token = c.web_token.clone();
        Ok((Tx::new().put(&c, Some(version)), token))
    })
    .await
}

/// Starts moving every node to a new root CA.
pub async fn rotate_root_ca(m: &Manager) -> OpsResult<ClusterInfo> {
    let c = start_rotation(m).await?;
    tracing::info!("root CA rotation started");
    cluster_info(m, &c, &m.raft.status())
}

/// Starts a rotation (leader only); refused while one is under way.
async fn start_rotation(m: &Manager) -> OpsResult<Cluster> {
    m.read_barrier().await?;
    m.update(|core| {
        let (version, mut c) = core.cluster()?;
        if crate::ca_rotation::rotating(&c) {
            return Err(OpsError::precondition(
                "a root CA rotation is already in progress",
            ));
        }
        let old = m.root_ca()?;
        let (new, cross) = old
            .rotate(&c.id)
            .map_err(|e| OpsError::internal(format!("making the new root CA: {e}")))?;
        c.trust_roots_pem = format!("{}{}", old.cert_pem(), new.cert_pem()).into_bytes();
        c.root_ca_cert_pem = new.cert_pem().as_bytes().to_vec();
        c.root_ca_key_pem = new.key_pem().into_bytes();
        c.ca_cross_signed_pem = cross.into_bytes();
        c.updated_at_ms = swarmlet_common::clock::now_ms();
        Ok((Tx::new().put(&c, Some(version)), c))
    })
    .await
}
