//! The orchestrators: from services to the tasks that should exist.
//!
//! A pure pass over (services, tasks, nodes) at a given time returns the
//! changes. Replicated services keep one task per slot `1..=replicas`,
//! global services one per eligible node (the "slot" is the node). Tasks on
//! a node that is down, drained or no longer satisfies the constraints are
//! shut down and replaced; a task that ended is replaced as its restart
//! policy says ([`restart`]); tasks of an older spec are replaced by the
//! rolling updater ([`update`]); tasks of removed services are marked
//! `remove` and deleted once finished; finished tasks beyond the history
//! limit are deleted. Jobs run to completion instead ([`job`]).
//! [`crate::reconciler`] runs this on the leader.

pub mod job;
pub mod restart;
pub mod update;

use std::collections::{BTreeMap, HashMap, HashSet};

use swarmlet_common::task_state::is_terminal;
use swarmlet_proto::objects::{
    Node, NodeAvailability, NodeStatus, Service, ServiceMode, Task, TaskState, TaskStatus,
};

use crate::scheduler::constraint::Constraint;
use restart::RestartDecision;

/// One change the orchestrators want.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new task.
    Create(Task),
    /// A task changed from the given version.
    Update(u64, Task),
    /// A task deleted at the given version.
    Delete(u64, String),
    /// A service row changed (update progress, rollback) from the given version.
    Service(u64, Box<Service>),
}

/// Tasks holding each slot of a service (slot number, or node ID for global services).
pub(crate) type Slots<'a> = BTreeMap<String, Vec<(u64, &'a Task)>>;

pub(crate) fn task_state(t: &Task) -> TaskState {
    t.status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::New)
}

fn desired(t: &Task) -> TaskState {
    TaskState::try_from(t.desired_state).unwrap_or(TaskState::New)
}

/// Sets a task's desired state to `shutdown`, noting why.
pub(crate) fn shutdown(version: u64, task: &Task, why: &str) -> Change {
    let mut t = task.clone();
    t.desired_state = TaskState::Shutdown as i32;
    let unassigned = t.node_id.is_empty();
    if let Some(s) = t.status.as_mut() {
        if !is_terminal(task_state(task)) && s.err.is_empty() {
            s.message = why.to_string();
        }
        // No node will ever report on a task that was never placed: it
        // ends here.
        if unassigned && !is_terminal(task_state(task)) {
            s.state = TaskState::Shutdown as i32;
        }
    }
    Change::Update(version, t)
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
        ..Default::default()
    }
}

fn satisfies(node: &Node, service: &Service) -> bool {
    service.spec.as_ref().is_none_or(|spec| {
        spec.constraints.iter().all(|c| {
            Constraint::parse(c)
                .map(|c| c.matches(node))
                .unwrap_or(false)
        })
    })
}

fn eligible_for_global(node: &Node, service: &Service) -> bool {
    node.status() != NodeStatus::Down
        && node.availability() != NodeAvailability::Drain
        && satisfies(node, service)
}

fn slot_key(service: &Service, t: &Task) -> String {
    match service.spec.as_ref().map(|s| s.mode()) {
        Some(ServiceMode::Global) => t.node_id.clone(),
        _ => t.slot.to_string(),
    }
}

/// Computes the changes that bring the tasks in line with the services.
/// At most `max_creates` tasks are created for empty slots (a service of
/// 100,000 replicas is filled over several passes: materialising every
/// missing task on each pass, only to propose a few thousand, cost more
/// than the rest of the pass).
pub fn reconcile<T: std::borrow::Borrow<Task>>(
    services: &[(u64, Service)],
    tasks: &[(u64, T)],
    nodes: &[Node],
    history_limit: usize,
    max_creates: usize,
    now_ms: i64,
) -> Vec<Change> {
    let mut budget = max_creates;
    let by_id: HashMap<&str, &Service> = services.iter().map(|(_, s)| (s.id.as_str(), s)).collect();
    let nodes_by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut changes = Vec::new();
    let mut of_service: HashMap<&str, Vec<(u64, &Task)>> = HashMap::new();
    for (version, task) in tasks {
        let task: &Task = task.borrow();
        if task.attachment {
            // A standalone container: its node runs it; it is forgotten once
            // it ended or its node is gone.
            let node_gone = nodes_by_id
                .get(task.node_id.as_str())
                .is_none_or(|n| n.status() == NodeStatus::Down);
            if is_terminal(task_state(task)) || node_gone {
                changes.push(Change::Delete(*version, task.id.clone()));
            }
            continue;
        }
        if by_id.contains_key(task.service_id.as_str()) {
            of_service
                .entry(task.service_id.as_str())
                .or_default()
                .push((*version, task));
            continue;
        }
        // The service is gone: stop the task, forget it once it ended.
        let node_gone = nodes_by_id
            .get(task.node_id.as_str())
            .is_none_or(|n| n.status() == NodeStatus::Down);
        if is_terminal(task_state(task)) || task.node_id.is_empty() || node_gone {
            changes.push(Change::Delete(*version, task.id.clone()));
        } else if desired(task) < TaskState::Remove {
            let mut t = task.clone();
            t.desired_state = TaskState::Remove as i32;
            changes.push(Change::Update(*version, t));
        }
    }
    let pass = Pass {
        nodes,
        nodes_by_id: &nodes_by_id,
        history_limit,
        now_ms,
    };
    for (sv, service) in services {
        let mine = of_service.remove(service.id.as_str()).unwrap_or_default();
        changes.extend(reconcile_service(*sv, service, &mine, &pass, &mut budget));
    }
    changes
}

/// What every service's reconciliation in one pass shares.
struct Pass<'a> {
    nodes: &'a [Node],
    nodes_by_id: &'a HashMap<&'a str, &'a Node>,
    history_limit: usize,
    now_ms: i64,
}

fn reconcile_service(
    sv: u64,
    service: &Service,
    tasks: &[(u64, &Task)],
    pass: &Pass,
    budget: &mut usize,
) -> Vec<Change> {
    let Pass {
        nodes,
        nodes_by_id,
        history_limit,
        now_ms,
    } = *pass;
    if job::is_job(service) {
        let job_pass = job::JobPass {
            nodes,
            nodes_by_id,
            history_limit,
            now_ms,
        };
        return job::reconcile(service, tasks, &job_pass, budget);
    }
    let spec = service.spec.clone().unwrap_or_default();
    let global = spec.mode() == ServiceMode::Global;
    let mut changes = Vec::new();
    let mut slots: Slots = BTreeMap::new();
    let mut finished: HashMap<String, Vec<(u64, &Task)>> = HashMap::new();
    let mut refilled: HashSet<String> = HashSet::new();
    let new_task_for = |key: &str| -> Task {
        if global {
            new_task(service, 0, key, now_ms)
        } else {
            new_task(service, key.parse().unwrap_or(0), "", now_ms)
        }
    };

    for &(version, task) in tasks {
        let key = slot_key(service, task);
        if desired(task) > TaskState::Running {
            if is_terminal(task_state(task)) || !nodes_by_id.contains_key(task.node_id.as_str()) {
                finished.entry(key).or_default().push((version, task));
            }
            continue;
        }
        let node = nodes_by_id.get(task.node_id.as_str());
        let misplaced = if task.node_id.is_empty() {
            None
        } else if node.is_none_or(|n| n.status() == NodeStatus::Down) {
            Some("node is down")
        } else if node.is_some_and(|n| n.availability() == NodeAvailability::Drain) {
            Some("node is drained")
        } else if node.is_some_and(|n| !satisfies(n, service)) {
            Some("node no longer satisfies the service's constraints")
        } else {
            None
        };
        if let Some(why) = misplaced {
            changes.push(shutdown(version, task, why));
            continue;
        }
        let state = task_state(task);
        if is_terminal(state) {
            let policy = spec.restart.unwrap_or_default();
            match restart::decide(&policy, task, state, now_ms) {
                RestartDecision::Stay => {
                    slots.entry(key).or_default().push((version, task));
                }
                RestartDecision::Restart {
                    attempt,
                    window_start_ms,
                    not_before_ms,
                } => {
                    changes.push(shutdown(version, task, "task ended"));
                    if !refilled.contains(&key)
                        && (!global || node.is_some_and(|n| eligible_for_global(n, service)))
                    {
                        let mut t = new_task_for(&key);
                        t.attempt = attempt;
                        t.attempts_window_start_ms = window_start_ms;
                        t.not_before_ms = not_before_ms;
                        changes.push(Change::Create(t));
                        refilled.insert(key);
                    }
                }
            }
            continue;
        }
        slots.entry(key).or_default().push((version, task));
    }

    // The slots that should exist: eligible nodes (global), or 1..=replicas
    // (never materialised: a service can have 100,000).
    let wanted_nodes: Vec<&str> = if global {
        nodes
            .iter()
            .filter(|n| eligible_for_global(n, service))
            .map(|n| n.id.as_str())
            .collect()
    } else {
        Vec::new()
    };
    let wanted_set: HashSet<&str> = wanted_nodes.iter().copied().collect();
    let is_wanted = |key: &str| {
        if global {
            wanted_set.contains(key)
        } else {
            key.parse::<u64>()
                .is_ok_and(|slot| (1..=spec.replicas).contains(&slot))
        }
    };
    // Slots no longer wanted (scaled down, node gone for global).
    let extra: Vec<String> = slots.keys().filter(|k| !is_wanted(k)).cloned().collect();
    for key in extra {
        for (v, t) in slots.remove(&key).unwrap_or_default() {
            if !is_terminal(task_state(t)) {
                changes.push(shutdown(v, t, "service scaled down"));
            }
        }
    }
    let fill = |key: String, changes: &mut Vec<Change>, budget: &mut usize| {
        if *budget > 0 && !slots.contains_key(&key) && !refilled.contains(&key) {
            changes.push(Change::Create(new_task_for(&key)));
            *budget -= 1;
        }
    };
    if global {
        for id in &wanted_nodes {
            fill(id.to_string(), &mut changes, budget);
        }
    } else if (slots.len() as u64) < spec.replicas {
        for slot in 1..=spec.replicas {
            if *budget == 0 {
                break;
            }
            fill(slot.to_string(), &mut changes, budget);
        }
    }
    changes.extend(update::plan(
        sv,
        service,
        tasks,
        &slots,
        &new_task_for,
        now_ms,
    ));

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
mod tests;
