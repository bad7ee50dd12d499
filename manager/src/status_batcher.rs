//! Task status updates from workers, batched: updates that arrive within a
//! short window become one round of proposals (which the Raft loop packs
//! into few entries), so 10,000 status changes are not 10,000 Raft rounds.
//! A status only moves forward; stale or out-of-order updates are dropped.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use swarmlet_common::task_state::may_advance;
use swarmlet_proto::objects::{Task, TaskState, TaskStatus};
use tokio::sync::mpsc;

use crate::core::Core;
use crate::raft::ProposeError;
use crate::store::ApplyError;
use crate::store::Tx;

const WINDOW: Duration = Duration::from_millis(50);

/// Where the dispatcher hands status updates.
pub type StatusSender = mpsc::UnboundedSender<(String, TaskStatus)>;

/// Runs the batcher until the manager goes away (its sender is dropped).
pub async fn run(core: Core, mut rx: mpsc::UnboundedReceiver<(String, TaskStatus)>) {
    while let Some(first) = rx.recv().await {
        let mut latest: HashMap<String, TaskStatus> = HashMap::new();
        latest.insert(first.0, first.1);
        let deadline = tokio::time::Instant::now() + WINDOW;
        while let Ok(Some((id, status))) = tokio::time::timeout_at(deadline, rx.recv()).await {
            let keep = latest.get(&id).is_none_or(|s| s.state <= status.state);
            if keep {
                latest.insert(id, status);
            }
        }
        apply(&core, latest).await;
    }
}

/// Rounds of retries for updates that lost a race with another change to
/// the same task (e.g. the reconciler's): a lost status would leave the task
/// looking stuck, since workers report each change once.
const CONFLICT_ROUNDS: usize = 5;

async fn apply(m: &Core, mut updates: HashMap<String, TaskStatus>) {
    for _ in 0..CONFLICT_ROUNDS {
        let mut txs = Vec::new();
        let mut ids = Vec::new();
        for (id, status) in &updates {
            let Ok(Some((version, mut task))) = m.store.get::<Task>(id) else {
                continue;
            };
            let current = task
                .status
                .as_ref()
                .and_then(|s| TaskState::try_from(s.state).ok())
                .unwrap_or(TaskState::New);
            let next = TaskState::try_from(status.state).unwrap_or(TaskState::New);
            let same_state_news = next == current && task.status.as_ref() != Some(status);
            if !may_advance(current, next) && !same_state_news {
                continue;
            }
            task.status = Some(status.clone());
            txs.push(Tx::new().put(&task, Some(version)));
            ids.push(id.clone());
        }
        let results = join_all(txs.into_iter().map(|tx| m.raft.propose(tx))).await;
        let conflicted: Vec<String> = ids
            .into_iter()
            .zip(results)
            .filter(|(_, r)| matches!(r, Err(ProposeError::Rejected(ApplyError::Conflict { .. }))))
            .map(|(id, _)| id)
            .collect();
        if conflicted.is_empty() {
            return;
        }
        updates.retain(|id, _| conflicted.contains(id));
    }
    tracing::debug!(
        tasks = updates.len(),
        "task status updates kept conflicting; dropped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{eventually, one_manager};
    use swarmlet_common::task_state::observed;

    fn status(state: TaskState, message: &str) -> TaskStatus {
        TaskStatus {
            state: state as i32,
            message: message.into(),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_become_the_tasks_status_and_never_go_backwards() {
        let core = one_manager().await;
        for id in ["t1", "t2"] {
            let mut task = Task {
                id: id.into(),
                ..Default::default()
            };
            task.status = Some(status(TaskState::Assigned, "assigned"));
            core.propose(Tx::new().create(&task)).await.expect("task");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let batcher = tokio::spawn(run(core.clone(), rx));
        let state_of = |id: &str| {
            core.store
                .get::<Task>(id)
                .ok()
                .flatten()
                .map(|(_, t)| observed(&t))
        };
        // Two reports of one task in one window: the later state wins; a
        // report of an older state after it is dropped.
        for (id, st) in [
            ("t1", TaskState::Starting),
            ("t1", TaskState::Running),
            ("t1", TaskState::Starting),
            ("t2", TaskState::Failed),
        ] {
            tx.send((id.to_string(), status(st, "reported")))
                .expect("send");
        }
        eventually("both reports applied", || {
            state_of("t1") == Some(TaskState::Running) && state_of("t2") == Some(TaskState::Failed)
        })
        .await;
        tx.send(("t2".into(), status(TaskState::Running, "late")))
            .expect("send");
        tx.send(("t1".into(), status(TaskState::Complete, "done")))
            .expect("send");
        eventually("t1 complete", || {
            state_of("t1") == Some(TaskState::Complete)
        })
        .await;
        assert_eq!(state_of("t2"), Some(TaskState::Failed), "never backwards");
        // The batcher ends with its sender.
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), batcher)
            .await
            .expect("the batcher ended")
            .expect("no panic");
        core.raft.stop();
    }
}
