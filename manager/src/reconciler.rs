//! The leader's reconcile loop: after every applied change (and at least
//! once a second) it reads one snapshot of the store, plans the pass on it
//! (orchestrators, network allocator, scheduler: [`crate::reconcile_plan`])
//! and proposes the changed rows, each written once. Each row is its own
//! proposal (the Raft loop batches them into few entries), so one conflict
//! does not void the rest; a conflicting change is simply recomputed on the
//! next pass.

use std::time::Duration;

use futures::future::join_all;
use swarmlet_proto::objects::{Network, Node, Service, Task};

use crate::core::Core;
use crate::reconcile_plan::{plan, Snapshot};
use crate::store::{StoreError, Tx};

const IDLE_PASS: Duration = Duration::from_secs(1);
/// Most tasks one pass creates.
const MAX_CREATES_PER_PASS: usize = 8192;

/// Runs while the Raft loop does; acts only while this manager leads.
pub async fn run(core: Core) {
    let mut applied = core.raft.watch_applied();
    loop {
        if let Ok(Err(_)) = tokio::time::timeout(IDLE_PASS, applied.changed()).await {
            return;
        }
        if core.is_leader() {
            if let Err(e) = pass(&core).await {
                tracing::debug!("reconcile pass: {e}");
            }
        }
    }
}

/// Runs `work` on a blocking thread: a pass over 100,000 tasks takes long
/// enough to starve the runtime's few workers, which carry the Raft
/// messages and heartbeats (leadership flapped under load before).
async fn off_runtime<T: Send + 'static>(
    m: &Core,
    work: impl FnOnce(&Core) -> Result<T, StoreError> + Send + 'static,
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

async fn pass(m: &Core) -> Result<(), StoreError> {
    let txs = off_runtime(m, |m| Ok(plan(&snapshot(m)?))).await?;
    if !txs.is_empty() {
        propose_all(m, txs).await;
    }
    Ok(())
}

/// What the pass works on: one read of every table it may change.
fn snapshot(m: &Core) -> Result<Snapshot, StoreError> {
    let history = m
        .cluster()
        .map(|(_, c)| c.task_history_limit.max(0) as usize)
        .unwrap_or(5);
    Ok(Snapshot {
        services: m.store.list::<Service>()?,
        tasks: m.store.list_shared::<Task>()?,
        nodes: m.store.list::<Node>()?,
        networks: m.store.objects::<Network>()?,
        history,
        max_creates: MAX_CREATES_PER_PASS,
        now_ms: swarmlet_common::clock::now_ms(),
    })
}

async fn propose_all(m: &Core, txs: Vec<Tx>) {
    for chunk in txs.chunks(4096) {
        join_all(chunk.iter().cloned().map(|tx| m.raft.propose(tx))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{eventually, one_manager};
    use swarmlet_common::task_state::{desired, observed};
    use swarmlet_proto::objects::{NodeAvailability, NodeStatus, ServiceSpec, TaskState};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_gets_its_tasks_placed_on_a_ready_node_and_scaled_down() {
        let core = one_manager().await;
        let mut node = Node {
            id: "w1".into(),
            hostname: "w1".into(),
            ..Default::default()
        };
        node.set_status(NodeStatus::Ready);
        node.set_availability(NodeAvailability::Active);
        let mut service = Service {
            id: "s1".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                image: "nginx".into(),
                replicas: 3,
                ..Default::default()
            }),
            spec_version: 1,
            ..Default::default()
        };
        core.propose(Tx::new().create(&node).create(&service))
            .await
            .expect("rows");
        let looping = tokio::spawn(run(core.clone()));
        let wanted = |core: &Core| -> Vec<Task> {
            core.store
                .list::<Task>()
                .unwrap_or_default()
                .into_iter()
                .map(|(_, t)| t)
                .filter(|t| desired(t) == TaskState::Running)
                .collect()
        };
        eventually("3 tasks assigned to w1", || {
            let tasks = wanted(&core);
            tasks.len() == 3
                && tasks
                    .iter()
                    .all(|t| t.node_id == "w1" && observed(t) == TaskState::Assigned)
        })
        .await;
        let (version, _) = core
            .store
            .get::<Service>("s1")
            .ok()
            .flatten()
            .expect("service");
        if let Some(spec) = service.spec.as_mut() {
            spec.replicas = 1;
        }
        core.propose(Tx::new().put(&service, Some(version)))
            .await
            .expect("scale");
        eventually("one task left running", || wanted(&core).len() == 1).await;
        core.raft.stop();
        tokio::time::timeout(Duration::from_secs(5), looping)
            .await
            .expect("the loop ended with Raft")
            .expect("no panic");
    }
}
