//! The leader's reconcile loop: after every applied change (and at least
//! once a second) it runs the orchestrators, the network allocator, then the
//! scheduler, and
//! proposes what they decide. Each change is its own proposal (the Raft loop
//! batches them into few entries), so one conflict does not void the rest;
//! a conflicting change is simply recomputed on the next pass.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::join_all;
use swarmlet_proto::objects::{Network, Node, Service, Task, TaskState};

use crate::allocator::{allocate, has_addresses, Allocation};
use crate::manager::Manager;
use crate::orchestrator::{reconcile, Change};
use crate::scheduler::{schedule, Decision};
use crate::store::{StoreError, Tx};
use swarmlet_common::task_state::is_pending;

const IDLE_PASS: Duration = Duration::from_secs(1);
/// Most tasks one pass creates.
const MAX_CREATES_PER_PASS: usize = 8192;

/// Runs while the manager lives; acts only while it leads.
pub async fn run(manager: Weak<Manager>) {
    let Some(mut applied) = manager.upgrade().map(|m| m.raft.watch_applied()) else {
        return;
    };
    loop {
        let _ = tokio::time::timeout(IDLE_PASS, applied.changed()).await;
        let Some(m) = manager.upgrade() else { return };
        if m.is_leader() {
            if let Err(e) = pass(&m).await {
                tracing::debug!("reconcile pass: {e}");
            }
        }
    }
}

/// Runs `work` on a blocking thread: a pass over 100,000 tasks takes long
/// enough to starve the runtime's few workers, which carry the Raft
/// messages and heartbeats (leadership flapped under load before).
async fn off_runtime<T: Send + 'static>(
    m: &Arc<Manager>,
    work: impl FnOnce(&Manager) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let m = m.clone();
    match tokio::task::spawn_blocking(move || work(&m)).await {
        Ok(r) => r,
        Err(e) => {
            // A bug, not a lost race: say so where operators look.
            tracing::error!(error = %e, "a reconcile pass panicked; the next pass retries");
            Err(StoreError::Corrupt(format!("reconcile pass aborted: {e}")))
        }
    }
}

async fn pass(m: &Arc<Manager>) -> Result<(), StoreError> {
    let changes = off_runtime(m, orchestrate).await?;
    if !changes.is_empty() {
        propose_all(m, changes).await;
    }
    // Addresses before scheduling: a task is placed only once it has them.
    let allocations = off_runtime(m, allocate_addresses).await?;
    if !allocations.is_empty() {
        propose_all(m, allocations).await;
    }
    // Schedule against the state the orchestrators just produced.
    let placements = off_runtime(m, place).await?;
    if !placements.is_empty() {
        propose_all(m, placements).await;
    }
    Ok(())
}

/// The orchestrators' changes, as transactions; the tasks they create are
/// placed at once when they need no addresses ([`place_created`]).
fn orchestrate(m: &Manager) -> Result<Vec<Tx>, StoreError> {
    let history = m
        .cluster()
        .map(|(_, c)| c.task_history_limit.max(0) as usize)
        .unwrap_or(5);
    let services = m.store.list::<Service>()?;
    let tasks = m.store.list_shared::<Task>()?;
    let nodes = plain_nodes(m)?;
    let now = swarmlet_common::clock::now_ms();
    let mut changes = reconcile(
        &services,
        &tasks,
        &nodes,
        history,
        MAX_CREATES_PER_PASS,
        now,
    );
    // Restarts and rolling updates create tasks beyond the budget of
    // `reconcile`: the rest are created by the next passes, which start as
    // soon as these are applied.
    let mut creates = 0;
    changes.retain(|c| {
        let create = matches!(c, Change::Create(_));
        creates += usize::from(create);
        !create || creates <= MAX_CREATES_PER_PASS
    });
    let networks = plain_networks(m)?;
    place_created(&nodes, &networks, &tasks, &mut changes, now);
    Ok(changes.into_iter().map(change_tx).collect())
}

/// Whether the scheduler may look at `t`: service tasks, and of the pending
/// ones only those that hold their network addresses.
fn schedulable(t: &Task, networks: &[Network]) -> bool {
    !t.attachment && (!is_pending(t) || networks.is_empty() || has_addresses(t, networks))
}

/// Places the tasks `changes` creates that need no network addresses, so
/// each is written once, already assigned, instead of created pending and
/// updated by the scheduler afterwards (half the writes while a large
/// service fills). Tasks that need addresses stay pending for the
/// allocator, then [`place`]. The scheduler sees the existing tasks too;
/// its decisions for those are left to [`place`].
fn place_created(
    nodes: &[Node],
    networks: &[Network],
    tasks: &[(u64, Arc<Task>)],
    changes: &mut [Change],
    now: i64,
) {
    let created: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(
            |(_, c)| matches!(c, Change::Create(t) if is_pending(t) && schedulable(t, networks)),
        )
        .map(|(i, _)| i)
        .collect();
    if created.is_empty() {
        return;
    }
    let decisions = {
        let existing = tasks
            .iter()
            .map(|(_, t)| t.as_ref())
            .filter(|t| schedulable(t, networks));
        let new = created.iter().filter_map(|&i| match &changes[i] {
            Change::Create(t) => Some(t),
            _ => None,
        });
        let all: Vec<&Task> = existing.chain(new).collect();
        schedule(nodes, &all, now)
    };
    let mut by_id: HashMap<String, Decision> = decisions.into_iter().collect();
    for &i in &created {
        let Change::Create(t) = &mut changes[i] else {
            continue;
        };
        let Some(decision) = by_id.remove(&t.id) else {
            continue;
        };
        match decision {
            Decision::Assign(node) => assign(t, node, now),
            Decision::Unschedulable(reason) => {
                t.status.get_or_insert_with(Default::default).err = reason;
            }
        }
    }
}

/// Records the scheduler's choice of `node` for `t`.
fn assign(t: &mut Task, node: String, now: i64) {
    t.node_id = node;
    let status = t.status.get_or_insert_with(Default::default);
    status.state = TaskState::Assigned as i32;
    status.message = "scheduled".into();
    status.err.clear();
    status.timestamp_ms = now;
}

fn plain_nodes(m: &Manager) -> Result<Vec<Node>, StoreError> {
    Ok(m.store
        .list::<Node>()?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

fn plain_networks(m: &Manager) -> Result<Vec<Network>, StoreError> {
    Ok(m.store
        .list::<Network>()?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

/// Network addresses for services, tasks and nodes' load balancers.
fn allocate_addresses(m: &Manager) -> Result<Vec<Tx>, StoreError> {
    let networks = plain_networks(m)?;
    if networks.is_empty() {
        return Ok(Vec::new());
    }
    let services = m.store.list::<Service>()?;
    let tasks = m.store.list_shared::<Task>()?;
    let versioned_nodes = m.store.list::<Node>()?;
    Ok(allocate(&networks, &services, &tasks, &versioned_nodes)
        .into_iter()
        .map(|a| match a {
            Allocation::Service(v, s) => Tx::new().put(s.as_ref(), Some(v)),
            Allocation::Task(v, t) => Tx::new().put(t.as_ref(), Some(v)),
            Allocation::Node(v, n) => Tx::new().put(n.as_ref(), Some(v)),
        })
        .collect())
}

/// The scheduler's placements (and attachments made ready or failed).
fn place(m: &Manager) -> Result<Vec<Tx>, StoreError> {
    let networks = plain_networks(m)?;
    let nodes = plain_nodes(m)?;
    let now = swarmlet_common::clock::now_ms();
    let tasks = m.store.list_shared::<Task>()?;
    // Nothing to place (the usual case: new tasks are placed as they are
    // created): no view of 100,000 tasks to build.
    if !tasks.iter().any(|(_, t)| is_pending(t)) {
        return Ok(Vec::new());
    }
    let by_id: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (t.id.as_str(), i))
        .collect();
    let plain: Vec<&Task> = tasks
        .iter()
        .map(|(_, t)| t.as_ref())
        .filter(|t| schedulable(t, &networks))
        .collect();
    let mut txs = Vec::new();
    // Attachments belong to the node that asked: assigned there once they
    // have their addresses (or failed, when a subnet is full).
    for (version, t) in tasks.iter().filter(|(_, t)| t.attachment && is_pending(t)) {
        let mut t = Task::clone(t);
        let addressed = has_addresses(&t, &networks);
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
        txs.push(Tx::new().put(&t, Some(*version)));
    }
    let started = std::time::Instant::now();
    let decisions = schedule(&nodes, &plain, now);
    swarmlet_common::metrics::global()
        .scheduler_pass_seconds
        .observe(started.elapsed());
    for (task_id, decision) in decisions {
        let Some((version, task)) = by_id.get(task_id.as_str()).map(|&i| &tasks[i]) else {
            continue;
        };
        let mut t = Task::clone(task);
        match decision {
            Decision::Assign(node) => assign(&mut t, node, now),
            Decision::Unschedulable(reason) => {
                let status = t.status.get_or_insert_with(Default::default);
                if status.err == reason {
                    continue;
                }
                status.err = reason;
            }
        }
        txs.push(Tx::new().put(&t, Some(*version)));
    }
    Ok(txs)
}

fn change_tx(c: Change) -> Tx {
    match c {
        Change::Create(t) => Tx::new().create(&t),
        Change::Update(v, t) => Tx::new().put(&t, Some(v)),
        Change::Delete(v, id) => Tx::new().delete::<Task>(&id, Some(v)),
        Change::Service(v, s) => Tx::new().put(s.as_ref(), Some(v)),
    }
}

async fn propose_all(m: &Manager, txs: Vec<Tx>) {
    for chunk in txs.chunks(4096) {
        join_all(chunk.iter().cloned().map(|tx| m.raft.propose(tx))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{NetworkSpec, NodeStatus, ServiceSpec};

    fn ready(id: &str) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.set_status(NodeStatus::Ready);
        n
    }

    fn service(networks: Vec<String>) -> Service {
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
        }
    }

    fn creates(s: &Service) -> Vec<Change> {
        (1..=4)
            .map(|slot| Change::Create(crate::orchestrator::new_task(s, slot, "", 0)))
            .collect()
    }

    #[test]
    fn created_tasks_without_networks_are_placed_at_once() {
        let nodes = vec![ready("a"), ready("b")];
        let mut changes = creates(&service(vec![]));
        place_created(&nodes, &[], &[], &mut changes, 0);
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for c in &changes {
            let Change::Create(t) = c else {
                panic!("only creates")
            };
            assert_eq!(
                t.status.as_ref().map(|s| s.state),
                Some(TaskState::Assigned as i32)
            );
            *per_node.entry(t.node_id.clone()).or_default() += 1;
        }
        assert_eq!(per_node.get("a"), Some(&2), "spread evenly: {per_node:?}");
        assert_eq!(per_node.get("b"), Some(&2));
    }

    #[test]
    fn created_tasks_that_need_addresses_stay_pending() {
        let network = Network {
            id: "net1".into(),
            spec: Some(NetworkSpec {
                name: "backend".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut changes = creates(&service(vec!["backend".into()]));
        place_created(&[ready("a")], &[network], &[], &mut changes, 0);
        assert!(changes
            .iter()
            .all(|c| matches!(c, Change::Create(t) if is_pending(t) && t.node_id.is_empty())));
    }

    #[test]
    fn created_tasks_that_fit_nowhere_carry_the_reason() {
        let mut changes = creates(&service(vec![]));
        place_created(&[], &[], &[], &mut changes, 0);
        for c in &changes {
            let Change::Create(t) = c else {
                panic!("only creates")
            };
            assert!(is_pending(t));
            let err = t.status.as_ref().map(|s| s.err.clone()).unwrap_or_default();
            assert!(err.starts_with("no suitable node"), "{err}");
        }
    }
}
