//! The scheduler: assigns pending tasks to nodes.
//!
//! Filters (ready and active node, constraints, max replicas per node,
//! resource reservations, host-mode published ports, a global task's own
//! node), placement preferences (spread over the values of node labels),
//! then spread: fewest tasks of the same service, then fewest tasks overall.
//! Pending tasks are grouped by service version, so the filters run once per
//! group and each placement is a heap pop: O(nodes + tasks·log nodes).
//! A task that fits nowhere stays `pending` with the reason in its error,
//! e.g. `no suitable node (1 node drained, 2 nodes with insufficient
//! memory)`. Pure functions here; [`crate::reconciler`] runs them on the
//! leader and proposes the result.

pub mod constraint;

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use swarmlet_proto::objects::{Node, NodeAvailability, NodeStatus, ServiceSpec, Task};

use constraint::Constraint;
use swarmlet_common::task_state::{is_pending, occupies_node};

/// What the scheduler decided for one pending task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Assign to this node.
    Assign(String),
    /// Leave pending, with this reason.
    Unschedulable(String),
}

#[derive(Default, Clone)]
struct Rejections(BTreeMap<&'static str, usize>);

impl Rejections {
    fn add(&mut self, why: &'static str) {
        *self.0.entry(why).or_default() += 1;
    }

    fn merged(&self, other: &Rejections) -> Rejections {
        let mut all = self.clone();
        for (why, n) in &other.0 {
            *all.0.entry(why).or_default() += n;
        }
        all
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

/// Parses `spread=node.labels.KEY` into the label key.
pub fn parse_placement_pref(pref: &str) -> Result<&str, String> {
    match pref.trim().strip_prefix("spread=node.labels.") {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(format!(
            "invalid placement preference {pref:?}: expected spread=node.labels.KEY"
        )),
    }
}

/// What is already placed on one node.
#[derive(Default)]
struct NodeLoad {
    tasks: usize,
    nano_cpus: i64,
    memory_bytes: i64,
    host_ports: HashSet<(u32, String)>,
}

/// The cluster as the scheduler sees it: nodes and what runs on them.
struct ClusterView<'a> {
    /// Sorted by ID, so that ties go to the lowest ID.
    nodes: Vec<&'a Node>,
    index: HashMap<&'a str, usize>,
    load: Vec<NodeLoad>,
    /// (service ID, node index) → active tasks of that service there.
    per_service: HashMap<(&'a str, usize), usize>,
}

fn host_ports(spec: &ServiceSpec) -> impl Iterator<Item = (u32, String)> + '_ {
    spec.ports
        .iter()
        .filter(|p| p.mode == "host" && p.published != 0)
        .map(|p| (p.published, p.protocol.clone()))
}

impl<'a> ClusterView<'a> {
    fn new(nodes: &'a [Node], tasks: &[&'a Task]) -> Self {
        let mut sorted: Vec<&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let index: HashMap<&str, usize> = sorted
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut view = ClusterView {
            load: (0..sorted.len()).map(|_| NodeLoad::default()).collect(),
            nodes: sorted,
            index,
            per_service: HashMap::new(),
        };
        for t in tasks.iter().filter(|t| occupies_node(t)) {
            if let Some(&i) = view.index.get(t.node_id.as_str()) {
                let spec = t.spec.as_ref();
                view.place(t.service_id.as_str(), i, spec);
            }
        }
        view
    }

    fn place(&mut self, service: &'a str, node: usize, spec: Option<&ServiceSpec>) {
        *self.per_service.entry((service, node)).or_default() += 1;
        let load = &mut self.load[node];
        load.tasks += 1;
        if let Some(spec) = spec {
            load.nano_cpus += spec.reserve_nano_cpus;
            load.memory_bytes += spec.reserve_memory_bytes;
            load.host_ports.extend(host_ports(spec));
        }
    }

    fn service_count(&self, service: &'a str, node: usize) -> usize {
        self.per_service.get(&(service, node)).copied().unwrap_or(0)
    }

    /// Why `node` cannot take a task of `spec` (static reasons only).
    fn static_rejection(&self, node: usize, constraints: &[Constraint]) -> Option<&'static str> {
        let n = self.nodes[node];
        if n.status() != NodeStatus::Ready {
            Some("not ready")
        } else if n.availability() == NodeAvailability::Drain {
            Some("drained")
        } else if n.availability() == NodeAvailability::Pause {
            Some("paused")
        } else if !constraints.iter().all(|c| c.matches(n)) {
            Some("do not satisfy constraints")
        } else {
            None
        }
    }

    /// Why `node` cannot take one more task of `spec` now.
    fn dynamic_rejection(
        &self,
        node: usize,
        service_count: usize,
        spec: &ServiceSpec,
    ) -> Option<&'static str> {
        let load = &self.load[node];
        if spec.max_replicas_per_node > 0 && service_count >= spec.max_replicas_per_node as usize {
            return Some("reached max replicas per node");
        }
        // A node that has not yet reported what it offers (the first
        // manager, before its first heartbeat lands) offers nothing to a
        // task that reserves, as in swarmkit.
        let r = self.nodes[node].resources.unwrap_or_default();
        if spec.reserve_memory_bytes > 0
            && load.memory_bytes + spec.reserve_memory_bytes > r.memory_bytes
        {
            return Some("with insufficient memory");
        }
        if spec.reserve_nano_cpus > 0 && load.nano_cpus + spec.reserve_nano_cpus > r.nano_cpus {
            return Some("with insufficient cpu");
        }
        if host_ports(spec).any(|p| load.host_ports.contains(&p)) {
            return Some("with the host-mode port already in use");
        }
        None
    }
}

/// Nodes by (tasks of the service, tasks overall, node index), smallest first.
type NodeHeap = BinaryHeap<Reverse<(usize, usize, usize)>>;

/// Candidate nodes of one group of tasks, bucketed by their values of the
/// placement-preference labels; within a bucket a min-heap on
/// (tasks of the service, tasks overall, node).
struct Candidates {
    buckets: BTreeMap<Vec<String>, NodeHeap>,
    /// Tasks of the service per bucket, for spreading over label values.
    bucket_tasks: HashMap<Vec<String>, usize>,
}

impl Candidates {
    /// The bucket to place in: level by level, the label value holding the
    /// fewest tasks of the service (ties: the smallest value).
    fn choose_bucket(&self, levels: usize) -> Option<Vec<String>> {
        let mut prefix: Vec<String> = Vec::new();
        for level in 0..levels {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for path in self.buckets.keys().filter(|p| p.starts_with(&prefix)) {
                let c = self.bucket_tasks.get(path).copied().unwrap_or(0);
                *counts.entry(path[level].as_str()).or_default() += c;
            }
            let value = counts
                .iter()
                .min_by_key(|(v, c)| (**c, **v))
                .map(|(v, _)| v.to_string())?;
            prefix.push(value);
        }
        self.buckets
            .keys()
            .find(|p| p.starts_with(&prefix))
            .cloned()
    }
}

/// Decides a node for every pending task in `tasks`, spreading them.
pub fn schedule<T: Borrow<Task>>(
    nodes: &[Node],
    tasks: &[T],
    now_ms: i64,
) -> Vec<(String, Decision)> {
    let tasks: Vec<&Task> = tasks.iter().map(Borrow::borrow).collect();
    let mut view = ClusterView::new(nodes, &tasks);
    // A restart delay keeps a task pending until its time.
    let mut pending: Vec<&Task> = tasks
        .iter()
        .copied()
        .filter(|t| is_pending(t) && t.not_before_ms <= now_ms)
        .collect();
    pending.sort_by(|a, b| {
        (&a.service_id, a.service_version, &a.node_id, a.slot, &a.id).cmp(&(
            &b.service_id,
            b.service_version,
            &b.node_id,
            b.slot,
            &b.id,
        ))
    });
    let mut out = Vec::with_capacity(pending.len());
    // Tasks of one service version (and, for global tasks, one node) share
    // their spec, so filters run once per group.
    for group in pending.chunk_by(|a, b| {
        a.service_id == b.service_id
            && a.service_version == b.service_version
            && a.node_id == b.node_id
    }) {
        schedule_group(&mut view, group, &mut out);
    }
    out
}

fn schedule_group<'a>(
    view: &mut ClusterView<'a>,
    group: &[&'a Task],
    out: &mut Vec<(String, Decision)>,
) {
    let first = group[0];
    let spec = first.spec.clone().unwrap_or_default();
    let unschedulable = |out: &mut Vec<(String, Decision)>, reason: String| {
        for t in group {
            out.push((t.id.clone(), Decision::Unschedulable(reason.clone())));
        }
    };
    let constraints: Result<Vec<Constraint>, _> = spec
        .constraints
        .iter()
        .map(|c| Constraint::parse(c))
        .collect();
    let constraints = match constraints {
        Ok(c) => c,
        Err(e) => return unschedulable(out, e.to_string()),
    };
    let prefs: Result<Vec<&str>, String> = spec
        .placement_spread
        .iter()
        .map(|p| parse_placement_pref(p))
        .collect();
    let prefs = match prefs {
        Ok(p) => p,
        Err(e) => return unschedulable(out, e),
    };
    let service = first.service_id.as_str();
    let mut rejected = Rejections::default();
    let mut candidates = Candidates {
        buckets: BTreeMap::new(),
        bucket_tasks: HashMap::new(),
    };
    let pinned = (!first.node_id.is_empty()).then(|| view.index.get(first.node_id.as_str()));
    let eligible: Vec<usize> = match pinned {
        Some(Some(&i)) => vec![i],
        Some(None) => Vec::new(),
        None => (0..view.nodes.len()).collect(),
    };
    for i in eligible {
        if let Some(why) = view.static_rejection(i, &constraints) {
            rejected.add(why);
            continue;
        }
        let path: Vec<String> = prefs
            .iter()
            .map(|k| view.nodes[i].labels.get(*k).cloned().unwrap_or_default())
            .collect();
        let count = view.service_count(service, i);
        *candidates.bucket_tasks.entry(path.clone()).or_default() += count;
        candidates
            .buckets
            .entry(path)
            .or_default()
            .push(Reverse((count, view.load[i].tasks, i)));
    }
    for task in group {
        let mut placed = None;
        while let Some(path) = candidates.choose_bucket(prefs.len()) {
            let heap = candidates.buckets.get_mut(&path);
            let Some(Reverse((count, _, i))) = heap.and_then(|h| h.pop()) else {
                candidates.buckets.remove(&path);
                continue;
            };
            if let Some(why) = view.dynamic_rejection(i, count, &spec) {
                // Loads only grow within a pass: the node stays out.
                rejected.add(why);
                continue;
            }
            view.place(service, i, Some(&spec));
            *candidates.bucket_tasks.entry(path.clone()).or_default() += 1;
            if let Some(h) = candidates.buckets.get_mut(&path) {
                h.push(Reverse((count + 1, view.load[i].tasks, i)));
            }
            placed = Some(i);
            break;
        }
        match placed {
            Some(i) => out.push((task.id.clone(), Decision::Assign(view.nodes[i].id.clone()))),
            None => out.push((
                task.id.clone(),
                Decision::Unschedulable(Rejections::default().merged(&rejected).reason()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{ServiceSpec, TaskState, TaskStatus};

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

    fn sized(id: &str, cpus: i64, mem: i64) -> Node {
        let mut n = node(id);
        n.resources = Some(swarmlet_proto::objects::Resources {
            nano_cpus: cpus * 1_000_000_000,
            memory_bytes: mem,
        });
        n
    }

    #[test]
    fn reservations_fill_nodes_then_explain() {
        let nodes = vec![sized("a", 2, 1000), sized("b", 2, 1000), sized("c", 1, 100)];
        let spec = ServiceSpec {
            reserve_memory_bytes: 400,
            ..Default::default()
        };
        let tasks: Vec<Task> = (0..5)
            .map(|i| pending(&format!("t{i}"), "s", spec.clone()))
            .collect();
        let d = schedule(&nodes, &tasks, 0);
        let counts = assigned(&d);
        assert_eq!(counts.get("a"), Some(&2));
        assert_eq!(counts.get("b"), Some(&2));
        assert_eq!(counts.get("c"), None);
        assert_eq!(
            d[4].1,
            Decision::Unschedulable("no suitable node (3 nodes with insufficient memory)".into())
        );
        let cpu = ServiceSpec {
            reserve_nano_cpus: 3_000_000_000,
            ..Default::default()
        };
        let d = schedule(&nodes, &[pending("big", "s2", cpu)], 0);
        assert!(matches!(&d[0].1, Decision::Unschedulable(r) if r.contains("insufficient cpu")));
    }

    #[test]
    fn a_node_that_has_not_reported_its_resources_takes_no_reserving_task() {
        // The first manager is ready before its first heartbeat lands.
        let nodes = vec![node("unreported"), sized("a", 1, 100)];
        let reserving = ServiceSpec {
            reserve_memory_bytes: 400,
            ..Default::default()
        };
        let d = schedule(&nodes, &[pending("t", "s", reserving)], 0);
        assert_eq!(
            d[0].1,
            Decision::Unschedulable("no suitable node (2 nodes with insufficient memory)".into())
        );
        // Tasks that reserve nothing still go there.
        let d = schedule(
            &nodes[..1],
            &[pending("u", "s2", ServiceSpec::default())],
            0,
        );
        assert_eq!(d[0].1, Decision::Assign("unreported".into()));
    }

    #[test]
    fn host_mode_ports_never_share_a_node() {
        let nodes = vec![node("a"), node("b")];
        let spec = ServiceSpec {
            ports: vec![swarmlet_proto::objects::PortConfig {
                published: 8080,
                target: 80,
                protocol: "tcp".into(),
                mode: "host".into(),
            }],
            ..Default::default()
        };
        let tasks: Vec<Task> = (0..3)
            .map(|i| pending(&format!("t{i}"), "s", spec.clone()))
            .collect();
        let d = schedule(&nodes, &tasks, 0);
        assert_eq!(assigned(&d).values().copied().max(), Some(1));
        assert!(
            matches!(&d[2].1, Decision::Unschedulable(r) if r.contains("host-mode port already in use"))
        );
    }

    #[test]
    fn placement_preference_spreads_over_label_values() {
        // Zone east has 3 nodes, west 1: tasks still split half and half.
        let mut nodes = Vec::new();
        for (id, zone) in [
            ("e1", "east"),
            ("e2", "east"),
            ("e3", "east"),
            ("w1", "west"),
        ] {
            let mut n = node(id);
            n.labels.insert("zone".into(), zone.into());
            nodes.push(n);
        }
        let spec = ServiceSpec {
            placement_spread: vec!["spread=node.labels.zone".into()],
            ..Default::default()
        };
        let tasks: Vec<Task> = (0..8)
            .map(|i| pending(&format!("t{i}"), "s", spec.clone()))
            .collect();
        let counts = assigned(&schedule(&nodes, &tasks, 0));
        assert_eq!(counts.get("w1"), Some(&4));
        let east: usize = ["e1", "e2", "e3"]
            .iter()
            .filter_map(|n| counts.get(*n))
            .sum();
        assert_eq!(east, 4);
        assert!(parse_placement_pref("spread=node.labels.").is_err());
        assert!(parse_placement_pref("binpack=x").is_err());
    }

    #[test]
    fn global_task_goes_only_to_its_node() {
        let nodes = vec![node("a"), node("b")];
        let mut t = pending("g", "s", ServiceSpec::default());
        t.node_id = "b".into();
        let d = schedule(&nodes, &[t], 0);
        assert_eq!(d[0].1, Decision::Assign("b".into()));
    }

    #[test]
    fn large_batches_schedule_quickly() {
        let nodes: Vec<Node> = (0..1000).map(|i| node(&format!("n{i:04}"))).collect();
        let tasks: Vec<Task> = (0..100_000)
            .map(|i| pending(&format!("t{i}"), "s", ServiceSpec::default()))
            .collect();
        let started = std::time::Instant::now();
        let d = schedule(&nodes, &tasks, 0);
        let counts = assigned(&d);
        assert_eq!(counts.len(), 1000);
        assert!(counts.values().all(|c| *c == 100));
        // Generous even for debug builds; the old O(tasks × nodes) pass took minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}
