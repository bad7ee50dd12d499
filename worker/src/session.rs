//! The worker's two streams with the managers: the assignments session
//! (diffs pushed by the leader, through whichever manager the worker holds)
//! and task status reports, batched. Both fail over to the next manager.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use swarmlet_common::grpc::tls_channel;
use swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient;
use swarmlet_proto::dispatcher::{AssignmentsRequest, TaskStatusUpdate, UpdateTaskStatusRequest};
use swarmlet_proto::objects::TaskStatus;
use tokio::sync::{mpsc, watch};

use crate::executor::Executor;
use crate::tasks::TaskManager;

const RETRY: Duration = Duration::from_millis(250);
const BATCH_WINDOW: Duration = Duration::from_millis(50);

fn client(
    addr: &str,
    tls: &Arc<ClientConfig>,
) -> Option<DispatcherClient<tonic::transport::Channel>> {
    tls_channel(addr, tls.clone())
        .ok()
        .map(DispatcherClient::new)
}

fn pick(managers: &watch::Receiver<Vec<String>>, turn: usize) -> Option<String> {
    let list = managers.borrow();
    (!list.is_empty()).then(|| list[turn % list.len()].clone())
}

/// Holds an assignments session until `shutdown`, feeding `tasks`.
pub async fn run_assignments<E: Executor>(
    tls: Arc<ClientConfig>,
    managers: watch::Receiver<Vec<String>>,
    tasks: Arc<TaskManager<E>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut turn = 0usize;
    while !*shutdown.borrow() {
        if let Some(mut c) = pick(&managers, turn).and_then(|a| client(&a, &tls)) {
            match c.assignments(AssignmentsRequest {}).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        tokio::select! {
                            msg = stream.message() => match msg {
                                Ok(Some(m)) => tasks.apply(m),
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
    mut rx: mpsc::UnboundedReceiver<(String, TaskStatus)>,
) {
    let mut pending: HashMap<String, TaskStatus> = HashMap::new();
    let mut clients: HashMap<String, DispatcherClient<tonic::transport::Channel>> = HashMap::new();
    let mut turn = 0usize;
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some((id, st)) => {
                    pending.insert(id, st);
                }
                None => return,
            }
        }
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while let Ok(Some((id, st))) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if pending.get(&id).is_none_or(|old| old.state <= st.state) {
                pending.insert(id, st);
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
