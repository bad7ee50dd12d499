//! Nodes: the view `node ls`/`node inspect` show, availability and labels,
//! promotion and demotion (with the Raft membership change it takes), and
//! removal.

use std::time::Duration;

use prost::Message as _;
use swarmlet_common::names::{
    availability_name, parse_availability, parse_role, role_name, status_name,
};
use swarmlet_proto::control::{NodeInfo, UpdateNodeRequest};
use swarmlet_proto::objects::{Node, NodeRole, NodeStatus, RaftMember, RemovedNode};
use swarmlet_proto::store::ConfChangeContext;

use super::{OpsError, OpsResult};
use crate::manager::Manager;
use crate::raft::RaftStatus;
use crate::resolve::resolve_node;
use crate::store::Tx;

/// What `node ls` shows of `n`, given the Raft members and status.
pub fn node_info(n: &Node, members: &[RaftMember], status: &RaftStatus) -> NodeInfo {
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
        resources: n.resources,
        data_addr: n.data_addr.clone(),
    }
}

/// The view of node `reference` (ID, hostname or unique ID prefix).
fn info_of(m: &Manager, reference: &str) -> OpsResult<NodeInfo> {
    let (_, n) = resolve_node(&m.nodes()?, reference)?;
    Ok(node_info(&n, &m.members()?, &m.raft.status()))
}

/// Every node, by hostname (after a read barrier).
pub async fn list(m: &Manager) -> OpsResult<Vec<NodeInfo>> {
    m.read_barrier().await?;
    let members = m.members()?;
    let status = m.raft.status();
    let mut nodes: Vec<NodeInfo> = m
        .nodes()?
        .iter()
        .map(|(_, n)| node_info(n, &members, &status))
        .collect();
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    Ok(nodes)
}

/// One node (after a read barrier).
pub async fn inspect(m: &Manager, reference: &str) -> OpsResult<NodeInfo> {
    m.read_barrier().await?;
    info_of(m, reference)
}

/// Changes a node's availability and labels.
pub async fn update(m: &Manager, req: UpdateNodeRequest) -> OpsResult<NodeInfo> {
    m.read_barrier().await?;
    let availability = req
        .availability
        .as_deref()
        .map(|a| {
            parse_availability(a).ok_or_else(|| {
                OpsError::invalid(format!(
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
                    return Err(OpsError::invalid(format!(
                        "label {k} does not exist on node {}",
                        n.hostname
                    )));
                }
            }
            for (k, v) in &req.label_add {
                if k.is_empty() {
                    return Err(OpsError::invalid("label key must not be empty"));
                }
                n.labels.insert(k.clone(), v.clone());
            }
            n.updated_at_ms = swarmlet_common::clock::now_ms();
            Ok((Tx::new().put(&n, Some(version)), n.id))
        })
        .await?;
    info_of(m, &id)
}

/// Promotes or demotes a node. Demoting a manager removes it from Raft
/// first; when that manager is this leader, leadership is handed away and
/// [`OpsError::LeaderMoved`] says to ask the new leader.
pub async fn set_role(m: &Manager, reference: &str, role: &str) -> OpsResult<NodeInfo> {
    let role =
        parse_role(role).ok_or_else(|| OpsError::invalid(format!("unknown role {role:?}")))?;
    m.read_barrier().await?;
    let (_, n) = resolve_node(&m.nodes()?, reference)?;
    if n.role() == role {
        return info_of(m, &n.id);
    }
    if role == NodeRole::Worker {
        let managers = m
            .nodes()?
            .iter()
            .filter(|(_, x)| x.role() == NodeRole::Manager)
            .count();
        if managers <= 1 {
            return Err(OpsError::precondition(
                "can't demote the last manager of the cluster",
            ));
        }
        remove_voter(m, &n.id).await?;
    }
    let id = n.id.clone();
    m.update(|m| {
        let (version, mut n) = m
            .store
            .get::<Node>(&id)?
            .ok_or_else(|| OpsError::not_found("node", id.as_str()))?;
        n.set_role(role);
        n.updated_at_ms = swarmlet_common::clock::now_ms();
        Ok((Tx::new().put(&n, Some(version)), ()))
    })
    .await?;
    info_of(m, &id)
}

/// Removes a worker that is down (or any worker with `force`); its
/// certificate is refused from then on.
pub async fn remove(m: &Manager, reference: &str, force: bool) -> OpsResult<()> {
    m.read_barrier().await?;
    let (version, n) = resolve_node(&m.nodes()?, reference)?;
    if n.role() == NodeRole::Manager {
        return Err(OpsError::precondition(format!(
            "node {} is a manager: demote it before removing it",
            n.hostname
        )));
    }
    if n.status() != NodeStatus::Down && !force {
        return Err(OpsError::precondition(format!(
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
    Ok(())
}

/// Removes node `node_id` from the Raft members (a manager leaving).
pub async fn remove_raft_member(m: &Manager, node_id: &str) -> OpsResult<()> {
    remove_voter(m, node_id).await
}

/// Whether removing `raft_id` from the voters keeps a reachable majority.
fn removal_keeps_quorum(status: &RaftStatus, raft_id: u64) -> OpsResult<()> {
    let remaining: Vec<u64> = status
        .voters
        .iter()
        .copied()
        .filter(|v| *v != raft_id)
        .collect();
    if remaining.is_empty() {
        return Err(OpsError::precondition(
            "can't remove the last manager of the cluster",
        ));
    }
    let reachable = remaining
        .iter()
        .filter(|v| status.reachable.contains(v))
        .count();
    let needed = remaining.len() / 2 + 1;
    if reachable < needed {
        return Err(OpsError::precondition(format!(
            "can't remove this manager: the cluster would lose quorum ({reachable} of the {} remaining managers reachable, {needed} needed)",
            remaining.len()
        )));
    }
    Ok(())
}

/// The Raft status once removing `raft_id` keeps quorum. A leader learns
/// which peers are reachable only as they answer, so a fresh leader gets
/// one election timeout to hear from them before the change is refused.
async fn wait_for_quorum_after_removal(m: &Manager, raft_id: u64) -> OpsResult<RaftStatus> {
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

/// Removes a Raft voter after checking quorum, handing leadership away
/// first if the voter is this leader ([`OpsError::LeaderMoved`]: the
/// caller asks the new leader).
async fn remove_voter(m: &Manager, node_id: &str) -> OpsResult<()> {
    let Some(member) = m.members()?.into_iter().find(|x| x.node_id == node_id) else {
        return Ok(());
    };
    let status = wait_for_quorum_after_removal(m, member.raft_id).await?;
    if member.raft_id == status.raft_id {
        let Some(next) = status
            .voters
            .iter()
            .copied()
            .find(|v| *v != status.raft_id && status.reachable.contains(v))
        else {
            return Err(OpsError::precondition(
                "no other reachable manager to take over",
            ));
        };
        m.raft.transfer_leader(next);
        let mut rx = m.raft.watch_status();
        let moved = rx.wait_for(|s| s.leader_id != 0 && s.leader_id != status.raft_id);
        tokio::time::timeout(Duration::from_secs(5), moved)
            .await
            .map_err(|_| OpsError::Unavailable("leadership transfer timed out; retry".into()))?
            .map_err(|_| OpsError::Unavailable("raft stopped".into()))?;
        return Err(OpsError::LeaderMoved);
    }
    let ctx = ConfChangeContext {
        node_id: node_id.to_string(),
        ..Default::default()
    };
    m.raft
        .remove_voter(member.raft_id, ctx.encode_to_vec())
        .await?;
    Ok(())
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
