//! Which tasks each node runs, computed once per burst of changes for all
//! worker sessions (instead of one scan of the task table per session).
//!
//! The publisher scans the task table after applied changes (coalesced over
//! a few milliseconds), groups assigned tasks by node, computes each node's
//! overlay view ([`crate::overlay_view`]), and updates one watch channel per
//! node that has a session; a session turns what it sees into diffs for its
//! worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use swarmlet_proto::dispatcher::OverlayNetwork;
use swarmlet_proto::objects::{Network, Node, Service, Task, TaskState};
use tokio::sync::{watch, Notify};

use crate::manager::Manager;

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
        let mut by_node: HashMap<String, NodeTasks> = HashMap::new();
        for (v, t) in tasks {
            let assigned = t
                .status
                .as_ref()
                .is_some_and(|s| s.state >= TaskState::Assigned as i32);
            if assigned && !t.node_id.is_empty() {
                by_node
                    .entry(t.node_id.clone())
                    .or_default()
                    .insert(t.id.clone(), (v, t));
            }
        }
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        nodes.retain(|_, tx| tx.receiver_count() > 0);
        for (node, tx) in nodes.iter() {
            let now = NodeAssignments {
                tasks: by_node.remove(node).unwrap_or_default(),
                networks: views.remove(node).unwrap_or_default(),
            };
            tx.send_if_modified(move |old| {
                let same = old.as_ref().is_some_and(|old| {
                    old.networks == now.networks
                        && old.tasks.len() == now.tasks.len()
                        && now
                            .tasks
                            .iter()
                            .all(|(id, (v, _))| old.tasks.get(id).is_some_and(|(ov, _)| ov == v))
                });
                if !same {
                    *old = Some(Arc::new(now));
                }
                !same
            });
        }
    }
}

/// Publishes assignments while the manager lives (only while it leads).
pub async fn run(manager: Weak<Manager>) {
    let Some(mut applied) = manager.upgrade().map(|m| m.raft.watch_applied()) else {
        return;
    };
    loop {
        {
            let Some(m) = manager.upgrade() else { return };
            let hub = m.assignments.clone();
            drop(m);
            tokio::select! {
                _ = applied.changed() => {}
                _ = hub.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tokio::time::sleep(COALESCE).await;
        let Some(m) = manager.upgrade() else { return };
        if m.is_leader() {
            // A scan of every task: on a blocking thread, so that the
            // runtime's workers keep carrying Raft messages meanwhile.
            let _ = tokio::task::spawn_blocking(move || publish_from_store(&m)).await;
        }
    }
}

fn publish_from_store(m: &Manager) {
    let tasks = m.store.list_shared::<Task>();
    let nodes = m.store.list::<Node>().unwrap_or_default();
    let nodes: Vec<Node> = nodes.into_iter().map(|(_, n)| n).collect();
    let networks = m.store.list::<Network>().unwrap_or_default();
    let networks: Vec<Network> = networks.into_iter().map(|(_, n)| n).collect();
    let services = m.store.list::<Service>().unwrap_or_default();
    let services: Vec<Service> = services.into_iter().map(|(_, s)| s).collect();
    m.assignments.publish(tasks, &nodes, &networks, &services);
}
