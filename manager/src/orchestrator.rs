//! The orchestrators: from services to the tasks that should exist.
//!
//! A pure reconcile pass over (services, tasks, nodes) returns the changes:
//! replicated services get one active task per slot `1..=replicas`; global
//! services one per eligible node. Tasks whose node is down or drained, that
//! ended while they should run, or that run an older spec are shut down and
//! replaced; tasks of removed services are marked `remove` and deleted once
//! finished; old finished tasks beyond the history limit are deleted.
//! [`crate::reconciler`] runs this on the leader and proposes the changes.
//!
//! Not here yet (issue 3 continues): restart policy options, rolling updates
//! with parallelism/delay/monitor/rollback, placement preferences.

use std::collections::{HashMap, HashSet};

use swarmlet_common::task_state::is_terminal;
use swarmlet_proto::objects::{
    Node, NodeAvailability, NodeStatus, Service, ServiceMode, Task, TaskState, TaskStatus,
};

use crate::scheduler::constraint::Constraint;

/// One change to the task table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new task.
    Create(Task),
    /// A task changed from the given version.
    Update(u64, Task),
    /// A task deleted at the given version.
    Delete(u64, String),
}

fn state(t: &Task) -> TaskState {
    t.status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::New)
}

fn desired(t: &Task) -> TaskState {
    TaskState::try_from(t.desired_state).unwrap_or(TaskState::New)
}

/// A new pending task for `service` in `slot` (or on `node_id` for global services).
pub fn new_task(service: &Service, slot: u64, node_id: &str, now_ms: i64) -> Task {
    let spec = service.spec.clone().unwrap_or_default();
    Task {
        id: swarmlet_common::ids::new_id(),
        service_id: service.id.clone(),
        service_name: spec.name.clone(),
        slot,
        node_id: node_id.to_string(),
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Pending as i32,
            message: "pending task scheduling".into(),
            timestamp_ms: now_ms,
            ..Default::default()
        }),
        spec: Some(spec),
        service_version: service.spec_version,
        created_at_ms: now_ms,
    }
}

fn node_eligible(node: &Node, service: &Service) -> bool {
    let spec = service.spec.clone().unwrap_or_default();
    node.status() != NodeStatus::Down
        && node.availability() != NodeAvailability::Drain
        && spec.constraints.iter().all(|c| {
            Constraint::parse(c)
                .map(|c| c.matches(node))
                .unwrap_or(false)
        })
}

/// A task's place in its service: (service, slot, node for global services).
type SlotKey<'a> = (&'a str, u64, &'a str);

/// Computes the changes that bring the tasks in line with the services.
pub fn reconcile(
    services: &[(u64, Service)],
    tasks: &[(u64, Task)],
    nodes: &[Node],
    history_limit: usize,
    now_ms: i64,
) -> Vec<Change> {
    let services: HashMap<&str, &Service> =
        services.iter().map(|(_, s)| (s.id.as_str(), s)).collect();
    let nodes_by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut changes = Vec::new();
    // Tasks that should run after this pass, per service.
    let mut active: HashMap<&str, Vec<&Task>> = HashMap::new();
    let mut finished: HashMap<SlotKey, Vec<(u64, &Task)>> = HashMap::new();

    for (version, task) in tasks {
        let Some(service) = services.get(task.service_id.as_str()) else {
            // The service is gone: stop the task, forget it once it ended.
            let node_gone = nodes_by_id
                .get(task.node_id.as_str())
                .is_none_or(|n| n.status() == NodeStatus::Down);
            if is_terminal(state(task)) || task.node_id.is_empty() || node_gone {
                changes.push(Change::Delete(*version, task.id.clone()));
            } else if desired(task) < TaskState::Remove {
                let mut t = task.clone();
                t.desired_state = TaskState::Remove as i32;
                changes.push(Change::Update(*version, t));
            }
            continue;
        };
        if desired(task) > TaskState::Running {
            if is_terminal(state(task)) || !nodes_by_id.contains_key(task.node_id.as_str()) {
                let key = (task.service_id.as_str(), task.slot, task.node_id.as_str());
                finished.entry(key).or_default().push((*version, task));
            }
            continue;
        }
        let node = nodes_by_id.get(task.node_id.as_str());
        let global = service
            .spec
            .as_ref()
            .is_some_and(|s| s.mode() == ServiceMode::Global);
        let stop = if is_terminal(state(task)) {
            Some("task ended; replaced")
        } else if task.service_version < service.spec_version {
            Some("service updated")
        } else if !task.node_id.is_empty() && node.is_none_or(|n| n.status() == NodeStatus::Down) {
            Some("node is down")
        } else if node.is_some_and(|n| n.availability() == NodeAvailability::Drain) {
            Some("node is drained")
        } else if global && node.is_some_and(|n| !node_eligible(n, service)) {
            Some("node no longer satisfies the service's constraints")
        } else {
            None
        };
        match stop {
            Some(why) => {
                let mut t = task.clone();
                t.desired_state = TaskState::Shutdown as i32;
                if let Some(s) = t.status.as_mut() {
                    if !is_terminal(state(task)) && s.err.is_empty() {
                        s.message = why.to_string();
                    }
                }
                changes.push(Change::Update(*version, t));
            }
            None => active
                .entry(task.service_id.as_str())
                .or_default()
                .push(task),
        }
    }

    for service in services.values() {
        let spec = service.spec.clone().unwrap_or_default();
        let running = active.remove(service.id.as_str()).unwrap_or_default();
        match spec.mode() {
            ServiceMode::Replicated => {
                let mut by_slot: HashMap<u64, &Task> = HashMap::new();
                for t in running {
                    if t.slot == 0 || t.slot > spec.replicas || by_slot.contains_key(&t.slot) {
                        let mut t = t.clone();
                        t.desired_state = TaskState::Shutdown as i32;
                        let version = tasks
                            .iter()
                            .find(|(_, x)| x.id == t.id)
                            .map(|(v, _)| *v)
                            .unwrap_or(0);
                        changes.push(Change::Update(version, t));
                    } else {
                        by_slot.insert(t.slot, t);
                    }
                }
                for slot in 1..=spec.replicas {
                    if !by_slot.contains_key(&slot) {
                        changes.push(Change::Create(new_task(service, slot, "", now_ms)));
                    }
                }
            }
            ServiceMode::Global => {
                let covered: HashSet<&str> = running.iter().map(|t| t.node_id.as_str()).collect();
                for node in nodes {
                    if node_eligible(node, service) && !covered.contains(node.id.as_str()) {
                        changes.push(Change::Create(new_task(service, 0, &node.id, now_ms)));
                    }
                }
            }
        }
    }

    // Task history: keep the newest `history_limit` finished tasks per slot.
    for (_, mut old) in finished {
        old.sort_by_key(|(_, t)| std::cmp::Reverse(t.created_at_ms));
        for (version, t) in old.into_iter().skip(history_limit) {
            changes.push(Change::Delete(version, t.id.clone()));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::ServiceSpec;

    fn service(replicas: u64, mode: ServiceMode) -> Service {
        let mut spec = ServiceSpec {
            name: "web".into(),
            replicas,
            ..Default::default()
        };
        spec.set_mode(mode);
        Service {
            id: "s1".into(),
            spec: Some(spec),
            spec_version: 1,
            ..Default::default()
        }
    }

    fn node(id: &str, status: NodeStatus) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.set_status(status);
        n
    }

    fn created(changes: &[Change]) -> Vec<&Task> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Create(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn apply(tasks: &mut Vec<(u64, Task)>, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Create(t) => tasks.push((1, t)),
                Change::Update(_, t) => {
                    if let Some(x) = tasks.iter_mut().find(|(_, x)| x.id == t.id) {
                        x.1 = t;
                    }
                }
                Change::Delete(_, id) => tasks.retain(|(_, t)| t.id != id),
            }
        }
    }

    #[test]
    fn replicated_fills_slots_scales_down_and_settles() {
        let s = service(3, ServiceMode::Replicated);
        let nodes = vec![node("a", NodeStatus::Ready)];
        let mut tasks = Vec::new();
        let c = reconcile(&[(1, s.clone())], &tasks, &nodes, 5, 0);
        let slots: HashSet<u64> = created(&c).iter().map(|t| t.slot).collect();
        assert_eq!(slots, HashSet::from([1, 2, 3]));
        apply(&mut tasks, c);
        assert!(
            reconcile(&[(1, s.clone())], &tasks, &nodes, 5, 0).is_empty(),
            "settled"
        );
        let mut smaller = s.clone();
        smaller.spec.as_mut().expect("spec").replicas = 1;
        let c = reconcile(&[(1, smaller)], &tasks, &nodes, 5, 0);
        let stopped = c
            .iter()
            .filter(|c| matches!(c, Change::Update(_, t) if t.desired_state == TaskState::Shutdown as i32))
            .count();
        assert_eq!(stopped, 2);
    }

    #[test]
    fn tasks_on_a_down_node_are_replaced() {
        let s = service(1, ServiceMode::Replicated);
        let mut t = new_task(&s, 1, "", 0);
        t.node_id = "a".into();
        t.status = Some(TaskStatus {
            state: TaskState::Running as i32,
            ..Default::default()
        });
        let nodes = vec![node("a", NodeStatus::Down), node("b", NodeStatus::Ready)];
        let c = reconcile(&[(1, s)], &[(1, t)], &nodes, 5, 0);
        assert!(c.iter().any(
            |c| matches!(c, Change::Update(_, t) if t.desired_state == TaskState::Shutdown as i32)
        ));
        assert_eq!(created(&c).len(), 1);
        assert_eq!(created(&c)[0].slot, 1);
    }

    #[test]
    fn global_follows_nodes() {
        let s = service(0, ServiceMode::Global);
        let mut drained = node("c", NodeStatus::Ready);
        drained.set_availability(NodeAvailability::Drain);
        let nodes = vec![
            node("a", NodeStatus::Ready),
            node("b", NodeStatus::Ready),
            drained,
        ];
        let c = reconcile(&[(1, s)], &[], &nodes, 5, 0);
        let on: HashSet<String> = created(&c).iter().map(|t| t.node_id.clone()).collect();
        assert_eq!(on, HashSet::from(["a".to_string(), "b".to_string()]));
    }

    #[test]
    fn removed_service_tasks_are_stopped_then_deleted() {
        let s = service(1, ServiceMode::Replicated);
        let mut t = new_task(&s, 1, "", 0);
        t.node_id = "a".into();
        t.status = Some(TaskStatus {
            state: TaskState::Running as i32,
            ..Default::default()
        });
        let nodes = vec![node("a", NodeStatus::Ready)];
        let c = reconcile(&[], &[(3, t.clone())], &nodes, 5, 0);
        assert!(
            matches!(&c[..], [Change::Update(3, x)] if x.desired_state == TaskState::Remove as i32)
        );
        t.status = Some(TaskStatus {
            state: TaskState::Shutdown as i32,
            ..Default::default()
        });
        let c = reconcile(&[], &[(4, t)], &nodes, 5, 0);
        assert!(matches!(&c[..], [Change::Delete(4, _)]));
    }
}
