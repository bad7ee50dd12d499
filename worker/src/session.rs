//! The worker's two streams with the managers: the assignments session
//! (diffs pushed by the leader, through whichever manager the worker holds)
//! and task status reports, batched. Both fail over to the next manager.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use swarmlet_common::grpc::{tls_channel, WithLimits};
use swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient;
use swarmlet_proto::dispatcher::{
    AssignmentsMessage, AssignmentsRequest, TaskStatusUpdate, UpdateTaskStatusRequest,
};
use swarmlet_proto::objects::TaskStatus;
use tokio::sync::{mpsc, watch};

use crate::executor::Executor;
use crate::tasks::TaskManager;

const RETRY: Duration = Duration::from_millis(250);
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// How often statuses the managers have not taken are sent again.
const RESEND: Duration = Duration::from_secs(3);

/// The state the managers hold for each of this node's tasks, as the
/// assignments say. A status report can be lost on the way (a manager that
/// stops leading, a proposal that times out) and nothing else would ever
/// repeat it: the task would look stuck. The status reporter compares its
/// last report of each task with this and sends it again while it lags.
#[derive(Clone, Default)]
pub struct ManagerStates(Arc<Mutex<HashMap<String, i32>>>);

impl ManagerStates {
    fn observe(&self, msg: &AssignmentsMessage) {
        let Ok(mut states) = self.0.lock() else {
            return;
        };
        if msg.full {
            states.clear();
        }
        for t in &msg.updated {
            states.insert(t.id.clone(), t.status.as_ref().map_or(0, |s| s.state));
        }
        for ack in &msg.states {
            states.insert(ack.task_id.clone(), ack.state);
        }
        for id in &msg.removed {
            states.remove(id);
        }
    }

    /// Whether the managers know task `id`.
    fn knows(&self, id: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains_key(id))
    }

    /// Whether the managers hold an older state of task `id` than `state`.
    fn lags(&self, id: &str, state: i32) -> bool {
        self.0
            .lock()
            .is_ok_and(|s| s.get(id).is_some_and(|known| *known < state))
    }
}

fn client(
    addr: &str,
    tls: &Arc<ClientConfig>,
) -> Option<DispatcherClient<tonic::transport::Channel>> {
    tls_channel(addr, tls.clone())
        .ok()
        .map(|c| DispatcherClient::new(c).with_limits())
}

fn pick(managers: &watch::Receiver<Vec<String>>, turn: usize) -> Option<String> {
    let list = managers.borrow();
    (!list.is_empty()).then(|| list[turn % list.len()].clone())
}

/// Adds chunk `m` to the update being put together in `partial`; the whole
/// update once its last chunk arrived.
fn reassemble(
    partial: &mut Option<AssignmentsMessage>,
    m: AssignmentsMessage,
) -> Option<AssignmentsMessage> {
    let whole = match partial.take() {
        None => m,
        Some(mut acc) => {
            acc.updated.extend(m.updated);
            acc.removed.extend(m.removed);
            acc.files.extend(m.files);
            acc.states.extend(m.states);
            if m.networks_changed {
                acc.networks_changed = true;
                acc.networks = m.networks;
            }
            acc.more = m.more;
            acc
        }
    };
    if whole.more {
        *partial = Some(whole);
        None
    } else {
        Some(whole)
    }
}

/// Holds an assignments session until `shutdown`, feeding `tasks`.
pub async fn run_assignments<E: Executor>(
    tls: Arc<ClientConfig>,
    managers: watch::Receiver<Vec<String>>,
    tasks: Arc<TaskManager<E>>,
    states: ManagerStates,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut turn = 0usize;
    while !*shutdown.borrow() {
        if let Some(mut c) = pick(&managers, turn).and_then(|a| client(&a, &tls)) {
            match c.assignments(AssignmentsRequest {}).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    // The chunks of one update, until its last one.
                    let mut partial: Option<AssignmentsMessage> = None;
                    loop {
                        tokio::select! {
                            msg = stream.message() => match msg {
                                Ok(Some(m)) => {
                                    let Some(m) = reassemble(&mut partial, m) else {
                                        continue;
                                    };
                                    states.observe(&m);
                                    tasks.apply(m);
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::debug!("assignments session ended: {}", e.message());
                                    break;
                                }
                            },
                            _ = shutdown.changed() => return,
                        }
                    }
                }
                Err(e) => tracing::debug!("assignments session refused: {}", e.message()),
            }
        }
        turn = turn.wrapping_add(1);
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends task status changes to the managers in batches.
pub async fn run_status_reports(
    tls: Arc<ClientConfig>,
    managers: watch::Receiver<Vec<String>>,
    states: ManagerStates,
    mut rx: mpsc::UnboundedReceiver<(String, TaskStatus)>,
) {
    let mut pending: HashMap<String, TaskStatus> = HashMap::new();
    // The last status reported of each task the managers know.
    let mut last: HashMap<String, TaskStatus> = HashMap::new();
    let mut clients: HashMap<String, DispatcherClient<tonic::transport::Channel>> = HashMap::new();
    let mut turn = 0usize;
    let mut resend = tokio::time::interval(RESEND);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let newer = |map: &HashMap<String, TaskStatus>, id: &str, st: &TaskStatus| {
        map.get(id).is_none_or(|old| old.state <= st.state)
    };
    loop {
        if pending.is_empty() {
            tokio::select! {
                got = rx.recv() => match got {
                    Some((id, st)) => {
                        pending.insert(id, st);
                    }
                    None => return,
                },
                _ = resend.tick() => {
                    last.retain(|id, _| states.knows(id));
                    for (id, st) in &last {
                        if states.lags(id, st.state) {
                            pending.insert(id.clone(), st.clone());
                        }
                    }
                    if pending.is_empty() {
                        continue;
                    }
                    tracing::debug!(tasks = pending.len(), "sending task statuses again");
                }
            }
        }
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while let Ok(Some((id, st))) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if newer(&pending, &id, &st) {
                pending.insert(id, st);
            }
        }
        for (id, st) in &pending {
            if newer(&last, id, st) {
                last.insert(id.clone(), st.clone());
            }
        }
        let updates: Vec<TaskStatusUpdate> = pending
            .iter()
            .map(|(id, st)| TaskStatusUpdate {
                task_id: id.clone(),
                status: Some(st.clone()),
            })
            .collect();
        let target = pick(&managers, turn);
        let c = target.as_ref().and_then(|a| match clients.get(a) {
            Some(c) => Some(c.clone()),
            None => client(a, &tls).inspect(|c| {
                clients.insert(a.clone(), c.clone());
            }),
        });
        let sent = match c {
            Some(mut c) => c
                .update_task_status(UpdateTaskStatusRequest { updates })
                .await
                .is_ok(),
            None => false,
        };
        // A failed call keeps its client: the channel reconnects by itself.
        if sent {
            pending.clear();
        } else {
            turn = turn.wrapping_add(1);
            tokio::time::sleep(RETRY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::Task;

    fn task(id: &str) -> Task {
        Task {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn chunks_are_acted_on_only_as_a_whole() {
        let mut partial = None;
        let first = AssignmentsMessage {
            full: true,
            updated: vec![task("a")],
            removed: vec!["old".into()],
            more: true,
            ..Default::default()
        };
        assert!(reassemble(&mut partial, first).is_none());
        let middle = AssignmentsMessage {
            updated: vec![task("b")],
            more: true,
            ..Default::default()
        };
        assert!(reassemble(&mut partial, middle).is_none());
        let last = AssignmentsMessage {
            updated: vec![task("c")],
            ..Default::default()
        };
        let whole = reassemble(&mut partial, last).expect("complete");
        assert!(whole.full && !whole.more && partial.is_none());
        let ids: Vec<&str> = whole.updated.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(whole.removed, ["old"]);
        // A message on its own passes straight through.
        let single = AssignmentsMessage {
            updated: vec![task("d")],
            ..Default::default()
        };
        assert_eq!(reassemble(&mut partial, single.clone()), Some(single));
    }
}
