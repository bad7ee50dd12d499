//! One reconcile pass as a pure function of one snapshot of the store: the
//! orchestrators' changes, the network addresses they need and the
//! scheduler's placements are worked out on one in-memory copy, and every
//! row the pass changed is written once (before, a new task on a network
//! was written three times: created pending, given its addresses, then
//! assigned, each a Raft entry and a pass of its own).

use std::collections::HashMap;
use std::sync::Arc;

use swarmlet_common::task_state::is_pending;
use swarmlet_proto::objects::{Network, Node, Service, Task, TaskState};

use crate::allocator::{allocate, has_addresses, Allocation};
use crate::orchestrator::{reconcile, Change};
use crate::scheduler::{schedule, Decision};
use crate::store::Tx;

/// What one pass reads: every row it may change, with the versions read.
pub struct Snapshot {
    /// Services, with versions.
    pub services: Vec<(u64, Service)>,
    /// Tasks, with versions.
    pub tasks: Vec<(u64, Arc<Task>)>,
    /// Nodes, with versions.
    pub nodes: Vec<(u64, Node)>,
    /// Networks.
    pub networks: Vec<Network>,
    /// Finished tasks kept per slot.
    pub history: usize,
    /// Most tasks the pass creates.
    pub max_creates: usize,
    /// The pass's clock.
    pub now_ms: i64,
}

/// A row of the pass's working copy: the version it was read at (`None`:
/// created by this pass) and whether the pass changed it.
struct Row<T> {
    version: Option<u64>,
    object: Arc<T>,
    changed: bool,
}

impl<T: Clone> Row<T> {
    fn read(version: u64, object: Arc<T>) -> Self {
        Row {
            version: Some(version),
            object,
            changed: false,
        }
    }

    fn set(&mut self, object: T) {
        self.object = Arc::new(object);
        self.changed = true;
    }
}

/// The version given to the allocator for rows this pass creates (store
/// versions, log indexes, start at 1).
const CREATED: u64 = 0;

/// The pass's writes: one transaction per changed row.
pub fn plan(s: &Snapshot) -> Vec<Tx> {
    let plain_nodes: Vec<Node> = s.nodes.iter().map(|(_, n)| n.clone()).collect();
    let mut tasks: Vec<Row<Task>> = s
        .tasks
        .iter()
        .map(|(v, t)| Row::read(*v, t.clone()))
        .collect();
    let mut services: Vec<Row<Service>> = s
        .services
        .iter()
        .map(|(v, svc)| Row::read(*v, Arc::new(svc.clone())))
        .collect();
    let mut nodes: Vec<Row<Node>> = s
        .nodes
        .iter()
        .map(|(v, n)| Row::read(*v, Arc::new(n.clone())))
        .collect();
    let mut deleted: Vec<(u64, String)> = Vec::new();

    // 1. The orchestrators.
    let mut task_index: HashMap<String, usize> = index(&tasks, |t| &t.id);
    let service_index: HashMap<String, usize> = index(&services, |s| &s.id);
    let changes = reconcile(
        &s.services,
        &s.tasks,
        &plain_nodes,
        s.history,
        s.max_creates,
        s.now_ms,
    );
    let mut creates = 0;
    for change in changes {
        match change {
            Change::Create(t) => {
                // Restarts and rolling updates create tasks beyond the
                // budget of `reconcile`: the next passes create the rest.
                creates += 1;
                if creates > s.max_creates {
                    continue;
                }
                task_index.insert(t.id.clone(), tasks.len());
                tasks.push(Row {
                    version: None,
                    object: Arc::new(t),
                    changed: true,
                });
            }
            Change::Update(_, t) => {
                if let Some(&i) = task_index.get(&t.id) {
                    tasks[i].set(t);
                }
            }
            Change::Delete(v, id) => {
                if let Some(i) = task_index.remove(&id) {
                    tasks[i].changed = false;
                    tasks[i].version = None;
                }
                deleted.push((v, id));
            }
            Change::Service(_, svc) => {
                if let Some(&i) = service_index.get(&svc.id) {
                    services[i].set(*svc);
                }
            }
        }
    }
    // Deleted tasks hold no addresses and need no placement.
    let live: Vec<usize> = task_index.values().copied().collect();

    // 2. Addresses, for services, tasks and nodes' load balancers.
    if !s.networks.is_empty() {
        let svc_in: Vec<(u64, Service)> = services
            .iter()
            .map(|r| (r.version.unwrap_or(CREATED), Service::clone(&r.object)))
            .collect();
        let task_in: Vec<(u64, Arc<Task>)> = live
            .iter()
            .map(|&i| (tasks[i].version.unwrap_or(CREATED), tasks[i].object.clone()))
            .collect();
        let node_in: Vec<(u64, Node)> = s.nodes.clone();
        let node_index: HashMap<String, usize> = index(&nodes, |n| &n.id);
        for a in allocate(&s.networks, &svc_in, &task_in, &node_in) {
            match a {
                Allocation::Service(_, svc) => {
                    if let Some(&i) = service_index.get(&svc.id) {
                        services[i].set(*svc);
                    }
                }
                Allocation::Task(_, t) => {
                    if let Some(&i) = task_index.get(&t.id) {
                        tasks[i].set(*t);
                    }
                }
                Allocation::Node(_, n) => {
                    if let Some(&i) = node_index.get(&n.id) {
                        nodes[i].set(*n);
                    }
                }
            }
        }
    }

    // 3. Placement of every pending task that holds its addresses.
    if live.iter().any(|&i| is_pending(&tasks[i].object)) {
        place(&plain_nodes, &s.networks, &mut tasks, &live, s.now_ms);
    }

    // 4. One write per changed row.
    let mut txs = Vec::new();
    for (v, id) in deleted {
        txs.push(Tx::new().delete::<Task>(&id, Some(v)));
    }
    for r in services.iter().filter(|r| r.changed) {
        txs.push(Tx::new().put(r.object.as_ref(), r.version));
    }
    for r in nodes.iter().filter(|r| r.changed) {
        txs.push(Tx::new().put(r.object.as_ref(), r.version));
    }
    for &i in &live {
        let r = &tasks[i];
        if !r.changed {
            continue;
        }
        txs.push(match r.version {
            Some(v) => Tx::new().put(r.object.as_ref(), Some(v)),
            None => Tx::new().create(r.object.as_ref()),
        });
    }
    txs
}

fn index<T>(rows: &[Row<T>], id: impl Fn(&T) -> &String) -> HashMap<String, usize> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| (id(&r.object).clone(), i))
        .collect()
}

/// Whether the scheduler may look at `t`: service tasks, and of the pending
/// ones only those that hold their network addresses.
fn schedulable(t: &Task, networks: &[Network]) -> bool {
    !t.attachment && (!is_pending(t) || networks.is_empty() || has_addresses(t, networks))
}

/// The scheduler's placements, and attachments made ready (addresses
/// allocated) or failed (no address left).
fn place(nodes: &[Node], networks: &[Network], tasks: &mut [Row<Task>], live: &[usize], now: i64) {
    for &i in live {
        let t = &tasks[i].object;
        if !(t.attachment && is_pending(t)) {
            continue;
        }
        let mut t = Task::clone(t);
        let addressed = has_addresses(&t, networks);
        let status = t.status.get_or_insert_with(Default::default);
        if !status.err.is_empty() {
            status.state = TaskState::Failed as i32;
        } else if addressed {
            status.state = TaskState::Assigned as i32;
            status.message = "addresses allocated".into();
        } else {
            continue;
        }
        status.timestamp_ms = now;
        tasks[i].set(t);
    }
    let by_id: HashMap<String, usize> = live
        .iter()
        .map(|&i| (tasks[i].object.id.clone(), i))
        .collect();
    let candidates: Vec<Arc<Task>> = live
        .iter()
        .map(|&i| tasks[i].object.clone())
        .filter(|t| schedulable(t, networks))
        .collect();
    let started = std::time::Instant::now();
    let decisions = schedule(nodes, &candidates, now);
    swarmlet_common::metrics::global()
        .scheduler_pass_seconds
        .observe(started.elapsed());
    for (task_id, decision) in decisions {
        let Some(&i) = by_id.get(&task_id) else {
            continue;
        };
        let mut t = Task::clone(&tasks[i].object);
        match decision {
            Decision::Assign(node) => {
                t.node_id = node;
                let status = t.status.get_or_insert_with(Default::default);
                status.state = TaskState::Assigned as i32;
                status.message = "scheduled".into();
                status.err.clear();
                status.timestamp_ms = now;
            }
            Decision::Unschedulable(reason) => {
                let status = t.status.get_or_insert_with(Default::default);
                if status.err == reason {
                    continue;
                }
                status.err = reason;
            }
        }
        tasks[i].set(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use swarmlet_proto::objects::{NetworkSpec, NodeStatus, ServiceSpec};

    fn ready(id: &str) -> (u64, Node) {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.set_status(NodeStatus::Ready);
        (3, n)
    }

    fn service(networks: Vec<String>) -> (u64, Service) {
        (
            2,
            Service {
                id: "s1".into(),
                spec: Some(ServiceSpec {
                    name: "web".into(),
                    replicas: 4,
                    networks,
                    ..Default::default()
                }),
                spec_version: 1,
                ..Default::default()
            },
        )
    }

    fn backend() -> Network {
        Network {
            id: "net1".into(),
            spec: Some(NetworkSpec {
                name: "backend".into(),
                ..Default::default()
            }),
            subnet: "10.0.5.0/24".into(),
            gateway: "10.0.5.1".into(),
            ..Default::default()
        }
    }

    fn snapshot(
        services: Vec<(u64, Service)>,
        nodes: Vec<(u64, Node)>,
        networks: Vec<Network>,
    ) -> Snapshot {
        Snapshot {
            services,
            tasks: Vec::new(),
            nodes,
            networks,
            history: 5,
            max_creates: 100,
            now_ms: 0,
        }
    }

    /// The tasks the transactions write (creates and puts), and how many
    /// times each row is written.
    fn written(txs: &[Tx]) -> (Vec<Task>, HashMap<String, usize>) {
        let mut tasks = Vec::new();
        let mut writes: HashMap<String, usize> = HashMap::new();
        for m in txs.iter().flat_map(|tx| tx.mutations.iter()) {
            *writes.entry(format!("{}/{}", m.table, m.key)).or_default() += 1;
            if m.table == "tasks" && !m.delete {
                tasks.push(Task::decode(m.value.as_slice()).expect("a task"));
            }
        }
        (tasks, writes)
    }

    #[test]
    fn created_tasks_without_networks_are_placed_at_once() {
        let txs = plan(&snapshot(
            vec![service(vec![])],
            vec![ready("a"), ready("b")],
            vec![],
        ));
        let (tasks, writes) = written(&txs);
        assert_eq!(tasks.len(), 4);
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for t in &tasks {
            assert_eq!(
                t.status.as_ref().map(|s| s.state),
                Some(TaskState::Assigned as i32)
            );
            *per_node.entry(t.node_id.clone()).or_default() += 1;
        }
        assert_eq!(per_node.get("a"), Some(&2), "spread evenly: {per_node:?}");
        assert_eq!(per_node.get("b"), Some(&2));
        assert!(writes.values().all(|&n| n == 1), "{writes:?}");
    }

    #[test]
    fn created_tasks_on_a_network_get_addresses_and_a_node_in_one_write() {
        let txs = plan(&snapshot(
            vec![service(vec!["backend".into()])],
            vec![ready("a")],
            vec![backend()],
        ));
        let (tasks, writes) = written(&txs);
        assert_eq!(tasks.len(), 4);
        for t in &tasks {
            assert_eq!(t.node_id, "a");
            assert_eq!(
                t.status.as_ref().map(|s| s.state),
                Some(TaskState::Assigned as i32)
            );
            assert!(
                t.networks
                    .iter()
                    .any(|a| a.network_id == "net1" && !a.address.is_empty()),
                "{t:?}"
            );
        }
        // Each task once, the service once (its VIP). The node's
        // load-balancer address on the network follows in the next pass,
        // once a task of the network is placed there (as before).
        assert!(writes.values().all(|&n| n == 1), "{writes:?}");
        assert_eq!(writes.get("services/s1"), Some(&1));
    }

    #[test]
    fn created_tasks_that_fit_nowhere_carry_the_reason() {
        let txs = plan(&snapshot(vec![service(vec![])], vec![], vec![]));
        let (tasks, _) = written(&txs);
        assert_eq!(tasks.len(), 4);
        for t in &tasks {
            assert!(is_pending(t));
            let err = t.status.as_ref().map(|s| s.err.clone()).unwrap_or_default();
            assert!(err.starts_with("no suitable node"), "{err}");
        }
    }

    #[test]
    fn a_quiet_cluster_writes_nothing() {
        let first = plan(&snapshot(vec![service(vec![])], vec![ready("a")], vec![]));
        let (tasks, _) = written(&first);
        let mut s = snapshot(vec![service(vec![])], vec![ready("a")], vec![]);
        s.tasks = tasks.into_iter().map(|t| (9, Arc::new(t))).collect();
        assert!(plan(&s).is_empty());
    }
}
