//! The worker's task manager: turns assignment diffs into one controller per
//! task, and reports each task's progress through the state machine
//! (`accepted → preparing → starting → running → complete|failed|shutdown`,
//! or `rejected` when it cannot start).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use swarmlet_common::clock::now_ms;
use swarmlet_proto::dispatcher::AssignmentsMessage;
use swarmlet_proto::objects::{Task, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch};

use crate::executor::{ExecError, Executor};

/// Where controllers send status changes: (task ID, status).
pub type StatusTx = mpsc::UnboundedSender<(String, TaskStatus)>;

struct Controller {
    desired: watch::Sender<i32>,
    handle: tokio::task::JoinHandle<()>,
}

/// Runs the tasks assigned to this node.
pub struct TaskManager<E: Executor> {
    exec: Arc<E>,
    controllers: Mutex<HashMap<String, Controller>>,
    status: StatusTx,
}

fn status(state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        message: message.to_string(),
        timestamp_ms: now_ms(),
        ..Default::default()
    }
}

impl<E: Executor> TaskManager<E> {
    /// A task manager using `exec`, reporting to `status`.
    pub fn new(exec: Arc<E>, status: StatusTx) -> Self {
        TaskManager {
            exec,
            controllers: Mutex::new(HashMap::new()),
            status,
        }
    }

    /// Applies one assignments message from the session.
    pub fn apply(&self, msg: AssignmentsMessage) {
        let Ok(mut controllers) = self.controllers.lock() else {
            return;
        };
        if msg.full {
            let keep: std::collections::HashSet<&str> =
                msg.updated.iter().map(|t| t.id.as_str()).collect();
            let gone: Vec<String> = controllers
                .keys()
                .filter(|id| !keep.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                if let Some(c) = controllers.remove(&id) {
                    let _ = c.desired.send(TaskState::Remove as i32);
                }
            }
        }
        for id in msg.removed {
            if let Some(c) = controllers.remove(&id) {
                let _ = c.desired.send(TaskState::Remove as i32);
            }
        }
        controllers.retain(|_, c| !c.handle.is_finished());
        for task in msg.updated {
            if let Some(c) = controllers.get(&task.id) {
                let _ = c.desired.send(task.desired_state);
                continue;
            }
            let observed = task.status.as_ref().map(|s| s.state).unwrap_or(0);
            if observed >= TaskState::Complete as i32 {
                continue;
            }
            if observed > TaskState::Assigned as i32 {
                // Assigned here before, but this process has no controller for
                // it: its container was lost (e.g. the node restarted).
                let mut st = status(TaskState::Failed, "task lost");
                st.err = "the node restarted and the task's container is gone".into();
                let _ = self.status.send((task.id.clone(), st));
                continue;
            }
            let (desired, rx) = watch::channel(task.desired_state);
            let handle = tokio::spawn(run(
                self.exec.clone(),
                task.clone(),
                rx,
                self.status.clone(),
            ));
            controllers.insert(task.id, Controller { desired, handle });
        }
    }

    /// Number of tasks with a live controller.
    pub fn running(&self) -> usize {
        self.controllers
            .lock()
            .map(|c| c.values().filter(|c| !c.handle.is_finished()).count())
            .unwrap_or(0)
    }
}

async fn run<E: Executor>(
    exec: Arc<E>,
    task: Task,
    mut desired: watch::Receiver<i32>,
    out: StatusTx,
) {
    let id = task.id.clone();
    let report = |s: TaskStatus| {
        let _ = out.send((id.clone(), s));
    };
    if *desired.borrow() > TaskState::Running as i32 {
        report(status(TaskState::Shutdown, "shut down before it started"));
        return;
    }
    report(status(TaskState::Accepted, "accepted"));
    report(status(TaskState::Preparing, "preparing"));
    report(status(TaskState::Starting, "starting"));
    let container = match exec.start(&task).await {
        Ok(c) => c,
        Err(e) => {
            let mut st = status(TaskState::Rejected, "failed to start");
            st.err = e.to_string();
            report(st);
            return;
        }
    };
    let mut st = status(TaskState::Running, "started");
    st.container_id = container.clone();
    report(st);
    let outcome = tokio::select! {
        code = exec.wait(&container) => Some(code),
        _ = desired.wait_for(|d| *d > TaskState::Running as i32) => None,
    };
    let mut st = match outcome {
        Some(Ok(0)) => status(TaskState::Complete, "finished"),
        Some(Ok(code)) => {
            let mut st = status(TaskState::Failed, "task exited");
            st.err = format!("task: non-zero exit ({code})");
            st.exit_code = code;
            st
        }
        Some(Err(ExecError::NotFound(c))) | Some(Err(ExecError::Start(c))) => {
            let mut st = status(TaskState::Failed, "container lost");
            st.err = c;
            st
        }
        None => {
            let _ = exec.stop(&container).await;
            status(TaskState::Shutdown, "shut down")
        }
    };
    st.container_id = container;
    report(st);
}
