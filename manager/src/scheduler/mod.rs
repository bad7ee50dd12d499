//! The scheduler: assigns pending tasks to nodes.
//!
//! Filters (ready and active node, constraints, max replicas per node, a
//! global task's own node), then spread: fewest tasks of the same service,
//! then fewest tasks overall. A task that fits nowhere stays `pending` with
//! the reason in its error, e.g. `no suitable node (1 node drained, 2 nodes
//! do not satisfy constraints)`. Pure functions here; [`crate::reconciler`]
//! runs them on the leader and proposes the result.

pub mod constraint;

use std::collections::{BTreeMap, HashMap};

use swarmlet_proto::objects::{Node, NodeAvailability, NodeStatus, Task, TaskState};

use constraint::Constraint;

/// What the scheduler decided for one pending task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Assign to this node.
    Assign(String),
    /// Leave pending, with this reason.
    Unschedulable(String),
}

/// Whether a task occupies its node (counts toward spread and limits).
pub fn is_active(t: &Task) -> bool {
    !t.node_id.is_empty()
        && t.desired_state <= TaskState::Running as i32
        && t.status
            .as_ref()
            .is_none_or(|s| s.state <= TaskState::Running as i32)
}

/// Whether a task waits for a node.
pub fn is_pending(t: &Task) -> bool {
    t.desired_state == TaskState::Running as i32
        && t.status
            .as_ref()
            .is_some_and(|s| s.state == TaskState::Pending as i32)
}

#[derive(Default)]
struct Rejections(BTreeMap<&'static str, usize>);

impl Rejections {
    fn add(&mut self, why: &'static str) {
        *self.0.entry(why).or_default() += 1;
    }

    fn reason(&self) -> String {
        if self.0.is_empty() {
            return "no suitable node (no nodes in the cluster)".into();
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(why, n)| {
                let noun = if *n == 1 { "node" } else { "nodes" };
                format!("{n} {noun} {why}")
            })
            .collect();
        format!("no suitable node ({})", parts.join(", "))
    }
}

/// Decides a node for every pending task in `tasks`, spreading them.
pub fn schedule(nodes: &[Node], tasks: &[Task], now_ms: i64) -> Vec<(String, Decision)> {
    let mut total: HashMap<&str, usize> = HashMap::new();
    let mut per_service: HashMap<(&str, &str), usize> = HashMap::new();
    for t in tasks.iter().filter(|t| is_active(t)) {
        *total.entry(t.node_id.as_str()).or_default() += 1;
        *per_service
            .entry((t.service_id.as_str(), t.node_id.as_str()))
            .or_default() += 1;
    }
    // A restart delay keeps a task pending until its time.
    let mut pending: Vec<&Task> = tasks
        .iter()
        .filter(|t| is_pending(t) && t.not_before_ms <= now_ms)
        .collect();
    pending.sort_by(|a, b| (&a.service_id, a.slot, &a.id).cmp(&(&b.service_id, b.slot, &b.id)));
    let mut out = Vec::with_capacity(pending.len());
    for task in pending {
        let spec = task.spec.clone().unwrap_or_default();
        let constraints: Result<Vec<Constraint>, _> = spec
            .constraints
            .iter()
            .map(|c| Constraint::parse(c))
            .collect();
        let constraints = match constraints {
            Ok(c) => c,
            Err(e) => {
                out.push((task.id.clone(), Decision::Unschedulable(e.to_string())));
                continue;
            }
        };
        let mut rejections = Rejections::default();
        let mut best: Option<(usize, usize, &str)> = None;
        for node in nodes {
            if !task.node_id.is_empty() && task.node_id != node.id {
                continue;
            }
            let why = if node.status() != NodeStatus::Ready {
                Some("not ready")
            } else if node.availability() == NodeAvailability::Drain {
                Some("drained")
            } else if node.availability() == NodeAvailability::Pause {
                Some("paused")
            } else if !constraints.iter().all(|c| c.matches(node)) {
                Some("do not satisfy constraints")
            } else if spec.max_replicas_per_node > 0
                && per_service
                    .get(&(task.service_id.as_str(), node.id.as_str()))
                    .copied()
                    .unwrap_or(0)
                    >= spec.max_replicas_per_node as usize
            {
                Some("reached max replicas per node")
            } else {
                None
            };
            if let Some(why) = why {
                rejections.add(why);
                continue;
            }
            let key = (
                per_service
                    .get(&(task.service_id.as_str(), node.id.as_str()))
                    .copied()
                    .unwrap_or(0),
                total.get(node.id.as_str()).copied().unwrap_or(0),
                node.id.as_str(),
            );
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        match best {
            Some((_, _, node_id)) => {
                *total.entry(node_id).or_default() += 1;
                *per_service
                    .entry((task.service_id.as_str(), node_id))
                    .or_default() += 1;
                out.push((task.id.clone(), Decision::Assign(node_id.to_string())));
            }
            None => out.push((
                task.id.clone(),
                Decision::Unschedulable(rejections.reason()),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{ServiceSpec, TaskStatus};

    fn node(id: &str) -> Node {
        let mut n = Node {
            id: id.into(),
            hostname: id.into(),
            ..Default::default()
        };
        n.set_status(NodeStatus::Ready);
        n
    }

    fn pending(id: &str, service: &str, spec: ServiceSpec) -> Task {
        Task {
            id: id.into(),
            service_id: service.into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: TaskState::Pending as i32,
                ..Default::default()
            }),
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn assigned(decisions: &[(String, Decision)]) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (_, d) in decisions {
            if let Decision::Assign(n) = d {
                *m.entry(n.clone()).or_default() += 1;
            }
        }
        m
    }

    #[test]
    fn spreads_evenly_and_counts_existing_tasks() {
        let nodes = vec![node("a"), node("b"), node("c")];
        let mut tasks: Vec<Task> = (0..9)
            .map(|i| pending(&format!("t{i}"), "s", ServiceSpec::default()))
            .collect();
        // One running task of the same service already on "a".
        let mut running = pending("r", "s", ServiceSpec::default());
        running.node_id = "a".into();
        running.status = Some(TaskStatus {
            state: TaskState::Running as i32,
            ..Default::default()
        });
        tasks.push(running);
        let d = schedule(&nodes, &tasks, 0);
        let counts = assigned(&d);
        assert_eq!(counts.get("a"), Some(&3));
        assert_eq!(counts.get("b"), Some(&3));
        assert_eq!(counts.get("c"), Some(&3));
    }

    #[test]
    fn filters_explain_why_nothing_fits() {
        let mut drained = node("d");
        drained.set_availability(NodeAvailability::Drain);
        let mut down = node("x");
        down.set_status(NodeStatus::Down);
        let nodes = vec![drained, down, node("a"), node("b")];
        let spec = ServiceSpec {
            constraints: vec!["node.labels.gpu==yes".into()],
            ..Default::default()
        };
        let d = schedule(&nodes, &[pending("t", "s", spec)], 0);
        assert_eq!(
            d[0].1,
            Decision::Unschedulable(
                "no suitable node (2 nodes do not satisfy constraints, 1 node drained, 1 node not ready)".into()
            )
        );
    }

    #[test]
    fn max_replicas_per_node_and_constraints() {
        let mut a = node("a");
        a.labels.insert("zone".into(), "east".into());
        let nodes = vec![a, node("b")];
        let spec = ServiceSpec {
            constraints: vec!["node.labels.zone==east".into()],
            max_replicas_per_node: 1,
            ..Default::default()
        };
        let d = schedule(
            &nodes,
            &[pending("t1", "s", spec.clone()), pending("t2", "s", spec)],
            0,
        );
        assert_eq!(d[0].1, Decision::Assign("a".into()));
        assert!(matches!(&d[1].1, Decision::Unschedulable(r) if r.contains("max replicas")));
    }
}
