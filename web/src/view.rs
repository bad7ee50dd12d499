//! What the page shows, built from the control API's listings (pure, so
//! it is unit-tested at scale): nodes as columns with their tasks as cards,
//! services with their progress, networks with their load-balancer
//! addresses. Nothing secret is in it: no environment, secret or config
//! payloads, no join tokens.
//!
//! A node with more tasks than [`CARDS_PER_NODE`] shows them grouped per
//! service and state instead (a count each), so that 1,000 nodes and
//! 10,000 tasks stay a page a browser renders at once.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use swarmlet_common::task_state::{desired, observed, state_name};
use swarmlet_proto::control::{NodeInfo, ServiceInfo, TaskInfo};
use swarmlet_proto::objects::{Network, ServiceMode, Task, TaskState, UpdateState};

/// Cards a node column shows before it groups them.
pub const CARDS_PER_NODE: usize = 24;

/// How long a failed or rejected task stays on the page (its error shown).
pub const FAILED_SHOWN_MS: i64 = 60_000;

/// The whole page's data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct View {
    /// When it was built (ms since the epoch).
    pub at_ms: i64,
    /// Cluster name and ID.
    pub cluster: ClusterView,
    /// Nodes by hostname.
    pub nodes: Vec<NodeView>,
    /// Services by name.
    pub services: Vec<ServiceView>,
    /// Networks by name.
    pub networks: Vec<NetworkView>,
}

/// The cluster.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClusterView {
    /// Cluster ID.
    pub id: String,
    /// The leader's node ID.
    pub leader: String,
}

/// One node column.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    /// Node ID.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// Whether it leads the Raft group.
    pub leader: bool,
    /// `ready`, `down`, …
    pub status: String,
    /// Why it is in that status (an engine that does not answer, say).
    pub status_message: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    /// Its address.
    pub addr: String,
    /// CPUs (nano) and memory it offers, and what its tasks reserve.
    pub nano_cpus: i64,
    /// Memory it offers (bytes).
    pub memory_bytes: i64,
    /// CPUs its current tasks reserve (nano).
    pub reserved_nano_cpus: i64,
    /// Memory its current tasks reserve (bytes).
    pub reserved_memory_bytes: i64,
    /// Its tasks, one card each (empty when grouped).
    pub cards: Vec<Card>,
    /// Its tasks grouped per service and state (when there are too many
    /// for cards).
    pub groups: Vec<Group>,
    /// How many tasks it shows, cards or grouped.
    pub task_count: usize,
}

/// One task.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Card {
    /// Task ID.
    pub id: String,
    /// Service name.
    pub service: String,
    /// `<service>.<slot>` (or `.<node>` for global tasks).
    pub name: String,
    /// Observed state.
    pub state: String,
    /// Desired state.
    pub desired: String,
    /// Since when it is in that state (ms since the epoch).
    pub since_ms: i64,
    /// Its error, if it failed.
    pub error: String,
}

/// Tasks of one service in one state on one node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Group {
    /// Service name.
    pub service: String,
    /// Observed state.
    pub state: String,
    /// How many.
    pub count: usize,
}

/// One service.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceView {
    /// Service ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// `replicated`, `global`, `replicated-job`, `global-job`.
    pub mode: String,
    /// Image.
    pub image: String,
    /// Tasks running.
    pub running: u64,
    /// Tasks wanted.
    pub desired: u64,
    /// Published ports, `8080:80/tcp`.
    pub ports: Vec<String>,
    /// The rolling update's state (`updating`, `completed`, …; empty: none).
    pub update_state: String,
    /// Its message.
    pub update_message: String,
    /// Whether it has not reached its desired tasks yet.
    pub converging: bool,
}

/// One network.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetworkView {
    /// Network ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Subnet.
    pub subnet: String,
    /// Whether it is the routing mesh's.
    pub ingress: bool,
    /// Services attached to it, by name.
    pub services: Vec<String>,
    /// Each node's load-balancer address on it: hostname → address.
    pub lb: BTreeMap<String, String>,
}

fn update_name(s: UpdateState) -> &'static str {
    match s {
        UpdateState::None => "",
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

/// Whether a task belongs on the page: meant to run (or to complete, for
/// jobs) and not ended, or failed in the last minute (to show why). A task
/// being stopped (a down node's, a replaced one) is not: its slot shows the
/// task that takes over.
fn shown(t: &Task, now_ms: i64) -> bool {
    if t.node_id.is_empty() {
        return false;
    }
    let state = observed(t);
    let since = t.status.as_ref().map(|s| s.timestamp_ms).unwrap_or(0);
    if desired(t) <= TaskState::Running && state < TaskState::Complete {
        return true;
    }
    matches!(state, TaskState::Failed | TaskState::Rejected) && now_ms - since < FAILED_SHOWN_MS
}

fn card(t: &Task) -> Card {
    let st = t.status.clone().unwrap_or_default();
    let slot = if t.slot > 0 {
        t.slot.to_string()
    } else {
        t.node_id.chars().take(12).collect()
    };
    Card {
        id: t.id.clone(),
        service: t.service_name.clone(),
        name: format!("{}.{slot}", t.service_name),
        state: state_name(st.state()).into(),
        desired: state_name(t.desired_state()).into(),
        since_ms: st.timestamp_ms.max(t.created_at_ms),
        error: st.err.clone(),
    }
}

/// Builds the page's data.
pub fn build(
    nodes: &[NodeInfo],
    services: &[ServiceInfo],
    tasks: &[TaskInfo],
    networks: &[Network],
    cluster: ClusterView,
    now_ms: i64,
) -> View {
    let mut per_node: HashMap<&str, Vec<&Task>> = HashMap::new();
    for t in tasks.iter().filter_map(|i| i.task.as_ref()) {
        if !t.attachment && shown(t, now_ms) {
            per_node.entry(t.node_id.as_str()).or_default().push(t);
        }
    }
    let mut node_views: Vec<NodeView> = nodes
        .iter()
        .map(|n| {
            let mut mine = per_node.remove(n.id.as_str()).unwrap_or_default();
            mine.sort_by(|a, b| {
                (&a.service_name, a.slot, &a.id).cmp(&(&b.service_name, b.slot, &b.id))
            });
            let (mut cpu, mut mem) = (0, 0);
            for t in &mine {
                if desired(t) <= TaskState::Running && observed(t) < TaskState::Complete {
                    let spec = t.spec.clone().unwrap_or_default();
                    cpu += spec.reserve_nano_cpus;
                    mem += spec.reserve_memory_bytes;
                }
            }
            let res = n.resources.unwrap_or_default();
            let (cards, groups) = if mine.len() <= CARDS_PER_NODE {
                (mine.iter().map(|t| card(t)).collect(), Vec::new())
            } else {
                let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
                for t in &mine {
                    *counts
                        .entry((t.service_name.clone(), state_name(observed(t)).to_string()))
                        .or_default() += 1;
                }
                let groups = counts
                    .into_iter()
                    .map(|((service, state), count)| Group {
                        service,
                        state,
                        count,
                    })
                    .collect();
                (Vec::new(), groups)
            };
            NodeView {
                id: n.id.clone(),
                hostname: n.hostname.clone(),
                role: n.role.clone(),
                leader: n.manager_status == "leader",
                status: n.status.clone(),
                status_message: n.status_message.clone(),
                availability: n.availability.clone(),
                addr: n.addr.clone(),
                nano_cpus: res.nano_cpus,
                memory_bytes: res.memory_bytes,
                reserved_nano_cpus: cpu,
                reserved_memory_bytes: mem,
                task_count: mine.len(),
                cards,
                groups,
            }
        })
        .collect();
    node_views.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    let mut service_views: Vec<ServiceView> = services
        .iter()
        .map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            let endpoint = s.endpoint.clone().unwrap_or_default();
            let ports = if endpoint.ports.is_empty() {
                &spec.ports
            } else {
                &endpoint.ports
            };
            let update = s.update_status.clone().unwrap_or_default();
            let job = matches!(
                spec.mode(),
                ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
            );
            ServiceView {
                id: s.id.clone(),
                name: spec.name.clone(),
                mode: swarmlet_common::names::mode_name(spec.mode()).into(),
                image: spec.image.clone(),
                running: if job {
                    s.jobs_completed
                } else {
                    s.replicas_running
                },
                desired: s.replicas_desired,
                ports: ports
                    .iter()
                    .map(|p| format!("{}:{}/{}", p.published, p.target, p.protocol))
                    .collect(),
                update_state: update_name(update.state()).into(),
                update_message: update.message.clone(),
                converging: (if job {
                    s.jobs_completed
                } else {
                    s.replicas_running
                }) != s.replicas_desired
                    || matches!(
                        update.state(),
                        UpdateState::Updating | UpdateState::RollbackStarted
                    ),
            }
        })
        .collect();
    service_views.sort_by(|a, b| a.name.cmp(&b.name));
    let mut network_views: Vec<NetworkView> = networks
        .iter()
        .map(|net| {
            let spec = net.spec.clone().unwrap_or_default();
            let services = services
                .iter()
                .filter_map(|s| s.spec.as_ref())
                .filter(|s| {
                    s.networks.contains(&spec.name)
                        || (spec.ingress && s.ports.iter().any(|p| p.mode == "ingress"))
                })
                .map(|s| s.name.clone())
                .collect();
            let lb = nodes
                .iter()
                .filter_map(|n| {
                    n.lb_addresses
                        .iter()
                        .find(|a| a.network_id == net.id)
                        .map(|a| (n.hostname.clone(), a.address.clone()))
                })
                .collect();
            NetworkView {
                id: net.id.clone(),
                name: spec.name.clone(),
                subnet: net.subnet.clone(),
                ingress: spec.ingress,
                services,
                lb,
            }
        })
        .collect();
    network_views.sort_by(|a, b| a.name.cmp(&b.name));
    View {
        at_ms: now_ms,
        cluster,
        nodes: node_views,
        services: service_views,
        networks: network_views,
    }
}

#[cfg(test)]
mod tests;
