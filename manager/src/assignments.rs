//! Which tasks each node runs, computed once per burst of changes for all
//! worker sessions (instead of one scan of the task table per session).
//!
//! The publisher scans the task table after applied changes (coalesced over
//! a few milliseconds), groups assigned tasks by node, computes each node's
//! overlay view ([`crate::overlay_view`]), and updates one watch channel per
//! node that has a session; a session turns what it sees into diffs for its
//! worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmlet_common::task_state::observed;
use swarmlet_proto::dispatcher::{OverlayNetwork, TaskStateAck};
use swarmlet_proto::objects::{Network, Node, Service, Task, TaskState};
use tokio::sync::{watch, Notify};

use crate::core::Core;

/// A node's assigned tasks by ID, with their store versions.
pub type NodeTasks = HashMap<String, (u64, Arc<Task>)>;

const COALESCE: Duration = Duration::from_millis(20);

/// Everything a node's session sends: its tasks and its overlay view.
#[derive(Default, Debug)]
pub struct NodeAssignments {
    /// Tasks assigned to the node.
    pub tasks: NodeTasks,
    /// Overlay networks with endpoints on the node, and their remote peers.
    pub networks: Vec<OverlayNetwork>,
}

/// What a node's channel holds: `None` until the first scan after the node
/// subscribed (a session must not mistake "not computed" for "no tasks").
pub type Published = Option<Arc<NodeAssignments>>;

/// The per-node watch channels.
#[derive(Default)]
pub struct AssignmentHub {
    nodes: Mutex<HashMap<String, watch::Sender<Published>>>,
    wake: Notify,
}

impl AssignmentHub {
    /// The tasks assigned to `node_id`, kept current.
    pub fn subscribe(&self, node_id: &str) -> watch::Receiver<Published> {
        let rx = match self.nodes.lock() {
            Ok(mut nodes) => nodes
                .entry(node_id.to_string())
                .or_insert_with(|| watch::channel(None).0)
                .subscribe(),
            Err(_) => watch::channel(None).1,
        };
        self.wake.notify_one();
        rx
    }

    fn publish(
        &self,
        tasks: Vec<(u64, Arc<Task>)>,
        nodes: &[Node],
        networks: &[Network],
        services: &[Service],
    ) {
        let mut views = crate::overlay_view::overlay_views(&tasks, nodes, networks, services);
        // Grouped by reference: a node's map is built only when it changed.
        let mut by_node: HashMap<&str, Vec<&(u64, Arc<Task>)>> = HashMap::new();
        for entry in &tasks {
            let t = &entry.1;
            let assigned = observed(t) >= TaskState::Assigned;
            if assigned && !t.node_id.is_empty() {
                by_node.entry(t.node_id.as_str()).or_default().push(entry);
            }
        }
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        nodes.retain(|_, tx| tx.receiver_count() > 0);
        for (node, tx) in nodes.iter() {
            let mine = by_node.remove(node.as_str()).unwrap_or_default();
            let networks = views.remove(node).unwrap_or_default();
            tx.send_if_modified(move |old| {
                let same = old.as_ref().is_some_and(|old| {
                    old.networks == networks
                        && old.tasks.len() == mine.len()
                        && mine.iter().all(|(v, t)| {
                            old.tasks.get(t.id.as_str()).is_some_and(|(ov, _)| ov == v)
                        })
                });
                if !same {
                    let tasks = mine
                        .iter()
                        .map(|(v, t)| (t.id.clone(), (*v, t.clone())))
                        .collect();
                    *old = Some(Arc::new(NodeAssignments { tasks, networks }));
                }
                !same
            });
        }
    }
}

/// What a session sends when its node's tasks change.
#[derive(Debug, Default)]
pub struct TaskDiff {
    /// Tasks new to the node, or changed in more than their status.
    pub updated: Vec<Task>,
    /// Tasks whose only change is their status: the state the managers hold.
    pub states: Vec<TaskStateAck>,
    /// Tasks no longer assigned to the node.
    pub removed: Vec<String>,
}

/// The changes from `sent` (what the node was sent) to `now`. A status the
/// node reported itself is acknowledged, not sent back with the whole task
/// (while a large service starts, that halved the session traffic).
pub fn diff(sent: &NodeTasks, now: &NodeTasks) -> TaskDiff {
    let mut d = TaskDiff::default();
    for (id, (version, task)) in now {
        match sent.get(id) {
            Some((v, _)) if v == version => {}
            Some((_, old)) if same_apart_from_status(old, task) => d.states.push(TaskStateAck {
                task_id: id.clone(),
                state: task.status.as_ref().map_or(0, |s| s.state),
            }),
            _ => d.updated.push(Task::clone(task)),
        }
    }
    d.removed = sent
        .keys()
        .filter(|id| !now.contains_key(*id))
        .cloned()
        .collect();
    d
}

/// Whether `a` and `b` differ in their status at most. Every field is
/// named, so a new one cannot be forgotten here.
fn same_apart_from_status(a: &Task, b: &Task) -> bool {
    let Task {
        id,
        service_id,
        slot,
        node_id,
        desired_state,
        status: _,
        spec,
        service_version,
        created_at_ms,
        service_name,
        attempt,
        attempts_window_start_ms,
        not_before_ms,
        networks,
        attachment,
    } = a;
    *id == b.id
        && *service_id == b.service_id
        && *slot == b.slot
        && *node_id == b.node_id
        && *desired_state == b.desired_state
        && *spec == b.spec
        && *service_version == b.service_version
        && *created_at_ms == b.created_at_ms
        && *service_name == b.service_name
        && *attempt == b.attempt
        && *attempts_window_start_ms == b.attempts_window_start_ms
        && *not_before_ms == b.not_before_ms
        && *networks == b.networks
        && *attachment == b.attachment
}

/// Publishes assignments into `hub` while the Raft loop runs (only while
/// this manager leads).
/// After a publish that took longer than [`COALESCE`], the next one waits
/// as long: a scan of 100,000 tasks takes a few hundred milliseconds, and
/// back to back they would hold a core that placing and applying need.
pub async fn run(core: Core, hub: Arc<AssignmentHub>) {
    let mut applied = core.raft.watch_applied();
    let mut pause = COALESCE;
    loop {
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = hub.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        tokio::time::sleep(pause).await;
        if core.is_leader() {
            // A scan of every task: on a blocking thread, so that the
            // runtime's workers keep carrying Raft messages meanwhile.
            let started = std::time::Instant::now();
            let (core, hub) = (core.clone(), hub.clone());
            let _ = tokio::task::spawn_blocking(move || publish_from_store(&core, &hub)).await;
            pause = started.elapsed().max(COALESCE);
        }
    }
}

/// Publishes what the store holds now. A store that cannot be read
/// publishes nothing: an empty set would tell every node to stop its tasks.
fn publish_from_store(m: &Core, hub: &AssignmentHub) {
    let read = || -> Result<_, crate::store::StoreError> {
        let tasks = m.store.list_shared::<Task>()?;
        let nodes: Vec<Node> = m.store.objects::<Node>()?;
        let networks: Vec<Network> = m.store.objects::<Network>()?;
        let services: Vec<Service> = m.store.objects::<Service>()?;
        Ok((tasks, nodes, networks, services))
    };
    match read() {
        Ok((tasks, nodes, networks, services)) => hub.publish(tasks, &nodes, &networks, &services),
        Err(e) => tracing::error!("assignments not published: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::TaskStatus;

    fn task(id: &str, state: TaskState, desired: TaskState) -> Arc<Task> {
        Arc::new(Task {
            id: id.into(),
            node_id: "n1".into(),
            desired_state: desired as i32,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn tasks(list: &[(u64, Arc<Task>)]) -> NodeTasks {
        list.iter()
            .map(|(v, t)| (t.id.clone(), (*v, t.clone())))
            .collect()
    }

    #[test]
    fn a_reported_status_is_acknowledged_not_resent() {
        let running = TaskState::Running;
        let sent = tasks(&[
            (1, task("a", TaskState::Assigned, running)),
            (1, task("b", running, running)),
            (1, task("c", running, running)),
        ]);
        let now = tasks(&[
            // Only its status changed (the node reported it).
            (2, task("a", running, running)),
            // Asked to stop: the node needs the task.
            (2, task("b", running, TaskState::Shutdown)),
            // New to the node.
            (1, task("d", TaskState::Assigned, running)),
        ]);
        let d = diff(&sent, &now);
        let mut updated: Vec<&str> = d.updated.iter().map(|t| t.id.as_str()).collect();
        updated.sort_unstable();
        assert_eq!(updated, ["b", "d"]);
        assert_eq!(d.states.len(), 1);
        assert_eq!(
            (d.states[0].task_id.as_str(), d.states[0].state),
            ("a", running as i32)
        );
        assert_eq!(d.removed, ["c"]);
        // Nothing changed: nothing to send.
        let same = diff(&now, &now);
        assert!(same.updated.is_empty() && same.states.is_empty() && same.removed.is_empty());
    }
}
