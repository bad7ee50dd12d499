//! The network calls of the control API (on the leader): create with IPAM
//! (subnet from the request or the cluster's default pool, gateway, VNI),
//! list, inspect, and remove (refused while a service uses the network).

use std::collections::HashSet;

use super::{OpsError, OpsResult};
use swarmlet_proto::objects::{
    Network, NetworkSpec, Service, ServiceSpec, Task, TaskState, TaskStatus,
};

use crate::ipam::{self, Subnet};
use crate::manager::Manager;
use crate::resolve::resolve_network;
use crate::store::Tx;
use swarmlet_common::task_state::holds_addresses;

/// The `ingress` network every cluster starts with (the routing mesh's).
pub fn ingress_network() -> Network {
    Network {
        id: swarmlet_common::ids::new_id(),
        spec: Some(NetworkSpec {
            name: "ingress".into(),
            driver: "overlay".into(),
            ingress: true,
            ..Default::default()
        }),
        vni: ipam::FIRST_VNI,
        subnet: "10.255.0.0/16".into(),
        gateway: "10.255.0.1".into(),
        created_at_ms: swarmlet_common::clock::now_ms(),
    }
}

fn bad(e: impl ToString) -> OpsError {
    OpsError::invalid(e)
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// All networks.
pub fn networks(m: &Manager) -> OpsResult<Vec<(u64, Network)>> {
    Ok(m.store.list::<Network>()?)
}

/// Creates an overlay network.
pub async fn create(m: &Manager, mut spec: NetworkSpec) -> OpsResult<Network> {
    if !name_ok(&spec.name) {
        return Err(bad(format!(
            "invalid network name {:?}: use letters, digits, '-', '_' and '.'",
            spec.name
        )));
    }
    if spec.driver.is_empty() {
        spec.driver = "overlay".into();
    }
    if spec.driver != "overlay" {
        return Err(bad(format!(
            "unsupported network driver {:?}: only overlay",
            spec.driver
        )));
    }
    if spec.ingress {
        return Err(bad("the ingress network is created with the cluster"));
    }
    if spec.subnet.is_empty() && !spec.gateway.is_empty() {
        return Err(bad("--gateway needs --subnet"));
    }
    let asked = (!spec.subnet.is_empty())
        .then(|| Subnet::parse(&spec.subnet))
        .transpose()
        .map_err(bad)?;
    m.read_barrier().await?;
    let existing = networks(m)?;
    if existing
        .iter()
        .any(|(_, n)| n.spec.as_ref().is_some_and(|s| s.name == spec.name))
    {
        return Err(OpsError::NameTaken {
            kind: "network",
            name: spec.name,
        });
    }
    let taken: Vec<(Subnet, String)> = existing
        .iter()
        .filter_map(|(_, n)| {
            let s = Subnet::parse(&n.subnet).ok()?;
            Some((
                s,
                n.spec.as_ref().map(|x| x.name.clone()).unwrap_or_default(),
            ))
        })
        .collect();
    let subnet = match asked {
        Some(s) => {
            if let Some((t, name)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
                return Err(bad(ipam::IpamError::Overlap(
                    s.display(),
                    format!("{name} ({})", t.display()),
                )));
            }
            s
        }
        None => {
            let (_, c) = m.cluster()?;
            let pool = if c.default_addr_pool.is_empty() {
                "10.0.0.0/8".to_string()
            } else {
                c.default_addr_pool.clone()
            };
            let len = if c.default_addr_pool_mask_len == 0 {
                24
            } else {
                c.default_addr_pool_mask_len
            };
            let subnets: Vec<Subnet> = taken.iter().map(|(s, _)| *s).collect();
            ipam::next_subnet(&pool, len, &subnets)
                .map_err(|e| OpsError::Exhausted(e.to_string()))?
        }
    };
    let gateway = if spec.gateway.is_empty() {
        subnet.first_host()
    } else {
        ipam::parse_gateway(&subnet, &spec.gateway).map_err(bad)?
    };
    let vnis: HashSet<u32> = existing.iter().map(|(_, n)| n.vni).collect();
    let network = Network {
        id: swarmlet_common::ids::new_id(),
        vni: ipam::next_vni(&vnis),
        subnet: subnet.display(),
        gateway: std::net::Ipv4Addr::from(gateway).to_string(),
        created_at_ms: swarmlet_common::clock::now_ms(),
        spec: Some(spec),
    };
    m.propose(Tx::new().create(&network)).await?;
    Ok(network)
}

/// One network by reference.
pub async fn inspect(m: &Manager, reference: &str) -> OpsResult<Network> {
    m.read_barrier().await?;
    Ok(resolve_network(&networks(m)?, reference)?.1)
}

/// All networks, by name.
pub async fn list(m: &Manager) -> OpsResult<Vec<Network>> {
    m.read_barrier().await?;
    let mut all: Vec<Network> = networks(m)?.into_iter().map(|(_, n)| n).collect();
    all.sort_by(|a, b| {
        let name = |n: &Network| n.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        name(a).cmp(&name(b))
    });
    Ok(all)
}

/// Removes a network no service, task or `run` container uses.
pub async fn remove(m: &Manager, reference: &str) -> OpsResult<()> {
    m.read_barrier().await?;
    let (version, n) = resolve_network(&networks(m)?, reference)?;
    let spec = n.spec.clone().unwrap_or_default();
    let services = m.store.list::<Service>()?;
    let users: Vec<String> = services
        .iter()
        .filter_map(|(_, s)| s.spec.as_ref())
        .filter(|s| {
            s.networks.contains(&spec.name)
                || s.networks.contains(&n.id)
                || (spec.ingress && s.ports.iter().any(|p| p.mode == "ingress"))
        })
        .map(|s| s.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(OpsError::precondition(format!(
            "network {} is in use by service {}",
            spec.name,
            users.join(", ")
        )));
    }
    // Tasks still stopping and `swarmctl run` containers hold addresses.
    let tasks = m.store.list::<Task>()?;
    let active: Vec<&Task> = tasks
        .iter()
        .map(|(_, t)| t)
        .filter(|t| holds_addresses(t) && t.networks.iter().any(|a| a.network_id == n.id))
        .collect();
    if let Some(t) = active.first() {
        let what = if t.attachment {
            format!(
                "container {}",
                t.spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default()
            )
        } else {
            format!("a task of service {}", t.service_name)
        };
        return Err(OpsError::precondition(format!(
            "network {} is in use by {what} ({} active endpoint{})",
            spec.name,
            active.len(),
            if active.len() == 1 { "" } else { "s" }
        )));
    }
    m.propose(Tx::new().delete::<Network>(&n.id, Some(version)))
        .await?;
    Ok(())
}

/// Checks that a service's networks exist and may be used by services.
pub fn check_service_networks(m: &Manager, names: &[String]) -> OpsResult<()> {
    let all = networks(m)?;
    for name in names {
        let (_, n) = resolve_network(&all, name)?;
        if n.spec.as_ref().is_some_and(|s| s.ingress) {
            return Err(bad(
                "a service cannot be attached to the ingress network explicitly; publish a port instead",
            ));
        }
    }
    Ok(())
}

/// Records a standalone container of `node_id` on attachable networks
/// (`swarmctl run`): a pending attachment task whose addresses the leader's
/// allocator gives it, assigned to that node once it has them.
pub async fn attach(
    m: &Manager,
    node_id: &str,
    req: swarmlet_proto::dispatcher::AttachRequest,
) -> OpsResult<Task> {
    if req.image.trim().is_empty() {
        return Err(bad("an image is required"));
    }
    m.read_barrier().await?;
    let all = networks(m)?;
    let mut names = Vec::new();
    for r in &req.networks {
        let (_, n) = resolve_network(&all, r)?;
        let spec = n.spec.clone().unwrap_or_default();
        if spec.ingress || !spec.attachable {
            return Err(bad(format!(
                "network {} is not attachable (create it with --attachable)",
                spec.name
            )));
        }
        names.push(spec.name);
    }
    let now = swarmlet_common::clock::now_ms();
    let id = swarmlet_common::ids::new_id();
    let name = if req.name.is_empty() {
        format!("run-{}", &id[..10])
    } else {
        req.name.clone()
    };
    let task = Task {
        id,
        node_id: node_id.to_string(),
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Pending as i32,
            message: "allocating addresses".into(),
            timestamp_ms: now,
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            name,
            image: req.image,
            command: req.command,
            args: req.args,
            networks: names,
            ..Default::default()
        }),
        created_at_ms: now,
        attachment: true,
        ..Default::default()
    };
    m.propose(Tx::new().put(&task, None)).await?;
    Ok(task)
}
