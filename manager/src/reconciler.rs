//! The leader's reconcile loop: after every applied change (and at least
//! once a second) it runs the orchestrators, the network allocator, then the
//! scheduler, and
//! proposes what they decide. Each change is its own proposal (the Raft loop
//! batches them into few entries), so one conflict does not void the rest;
//! a conflicting change is simply recomputed on the next pass.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use futures::future::join_all;
use swarmlet_proto::objects::{Network, Node, Service, Task, TaskState};

use crate::allocator::{allocate, has_addresses, Allocation};
use crate::manager::Manager;
use crate::orchestrator::{reconcile, Change};
use crate::scheduler::{is_pending, schedule, Decision};
use crate::store::Tx;

const IDLE_PASS: Duration = Duration::from_secs(1);

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

async fn pass(m: &Manager) -> Result<(), crate::store::StoreError> {
    let history = m
        .cluster()
        .map(|(_, c)| c.task_history_limit.max(0) as usize)
        .unwrap_or(5);
    let services = m.store.list::<Service>()?;
    let tasks = m.store.list::<Task>()?;
    let nodes: Vec<Node> = m
        .store
        .list::<Node>()?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let now = swarmlet_common::clock::now_ms();
    let changes = reconcile(&services, &tasks, &nodes, history, now);
    if !changes.is_empty() {
        propose_all(m, changes.into_iter().map(change_tx).collect()).await;
    }
    // Addresses before scheduling: a task is placed only once it has them.
    let networks: Vec<Network> = m
        .store
        .list::<Network>()?
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    if !networks.is_empty() {
        let services = m.store.list::<Service>()?;
        let tasks = m.store.list::<Task>()?;
        let versioned_nodes = m.store.list::<Node>()?;
        let allocations = allocate(&networks, &services, &tasks, &versioned_nodes);
        if !allocations.is_empty() {
            let txs = allocations
                .into_iter()
                .map(|a| match a {
                    Allocation::Service(v, s) => Tx::new().put(s.as_ref(), Some(v)),
                    Allocation::Task(v, t) => Tx::new().put(t.as_ref(), Some(v)),
                    Allocation::Node(v, n) => Tx::new().put(n.as_ref(), Some(v)),
                })
                .collect();
            propose_all(m, txs).await;
        }
    }
    // Schedule against the state the orchestrators just produced.
    let tasks = m.store.list::<Task>()?;
    let by_id: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (t.id.as_str(), i))
        .collect();
    let plain: Vec<&Task> = tasks
        .iter()
        .map(|(_, t)| t)
        .filter(|t| !t.attachment)
        .filter(|t| !is_pending(t) || networks.is_empty() || has_addresses(t, &networks))
        .collect();
    let mut txs = Vec::new();
    // Attachments belong to the node that asked: assigned there once they
    // have their addresses (or failed, when a subnet is full).
    for (version, t) in tasks.iter().filter(|(_, t)| t.attachment && is_pending(t)) {
        let mut t = t.clone();
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
        let mut t = task.clone();
        let status = t.status.get_or_insert_with(Default::default);
        match decision {
            Decision::Assign(node) => {
                t.node_id = node;
                status.state = TaskState::Assigned as i32;
                status.message = "scheduled".into();
                status.err.clear();
                status.timestamp_ms = now;
            }
            Decision::Unschedulable(reason) => {
                if status.err == reason {
                    continue;
                }
                status.err = reason;
            }
        }
        txs.push(Tx::new().put(&t, Some(*version)));
    }
    if !txs.is_empty() {
        propose_all(m, txs).await;
    }
    Ok(())
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
