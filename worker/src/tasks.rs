//! The worker's task manager: turns assignment diffs into one
//! [`TaskController`] per task, which reports the task's progress through
//! the state machine (`accepted → preparing → starting → running →
//! complete|failed|shutdown`, or `rejected` when it cannot start). A task
//! this node ran before the daemon restarted gets a controller that adopts
//! its container; the first full assignment set removes containers of
//! other tasks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use swarmlet_common::task_state::{is_terminal, observed};
use swarmlet_proto::dispatcher::AssignmentsMessage;
use swarmlet_proto::objects::{TaskState, TaskStatus};
use tokio::sync::watch;

use crate::executor::Executor;
use crate::overlay::Overlay;
use crate::secret_files::SecretFiles;
use crate::task_controller::{Attachments, NodeParts, Reporter, TaskController};
use crate::task_step::Observed;

pub use crate::task_controller::StatusTx;

struct Controller {
    desired: watch::Sender<i32>,
    handle: tokio::task::JoinHandle<()>,
}

/// Runs the tasks assigned to this node.
pub struct TaskManager<E: Executor> {
    exec: Arc<E>,
    files: Arc<SecretFiles>,
    overlay: Arc<Overlay>,
    controllers: Mutex<HashMap<String, Controller>>,
    status: StatusTx,
    /// Last status of each attachment (`swarmctl run`) task, for the local API.
    attachments: Attachments,
    /// False while the containers of tasks this node no longer has (left
    /// from before this process) are being removed: new tasks wait, or the
    /// removal, which lists containers first, could take theirs.
    cleaned: watch::Sender<bool>,
    /// Whether that removal ran (once per process: after a session
    /// reconnects, the controllers already stop what is gone).
    cleanup_started: std::sync::atomic::AtomicBool,
}

impl<E: Executor> TaskManager<E> {
    /// A task manager using `exec` and plugging containers into `overlay`,
    /// reporting to `status`.
    pub fn new(exec: Arc<E>, overlay: Arc<Overlay>, status: StatusTx) -> Self {
        TaskManager {
            files: Arc::new(SecretFiles::new(overlay.node_id())),
            exec,
            overlay,
            attachments: Arc::new(Mutex::new(HashMap::new())),
            controllers: Mutex::new(HashMap::new()),
            status,
            cleaned: watch::channel(true).0,
            cleanup_started: Default::default(),
        }
    }

    /// Applies one assignments message from the session.
    pub fn apply(&self, msg: AssignmentsMessage) {
        // The network view first: new tasks' attachments wait for it.
        if msg.networks_changed {
            self.overlay.set_networks(msg.networks);
        }
        self.files.remember(msg.files);
        let Ok(mut controllers) = self.controllers.lock() else {
            return;
        };
        if msg.full {
            let first = !self
                .cleanup_started
                .swap(true, std::sync::atomic::Ordering::SeqCst);
            if first {
                // Containers of tasks this node no longer has go away.
                let all: HashSet<String> = msg.updated.iter().map(|t| t.id.clone()).collect();
                let exec = self.exec.clone();
                let cleaned = self.cleaned.clone();
                cleaned.send_replace(false);
                tokio::spawn(async move {
                    exec.remove_others(all).await;
                    cleaned.send_replace(true);
                });
            }
            self.files.retain(&msg.updated);
            let keep: HashSet<&str> = msg.updated.iter().map(|t| t.id.as_str()).collect();
            let gone: Vec<String> = controllers
                .keys()
                .filter(|id| !keep.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                self.remove(&mut controllers, &id);
            }
        }
        for id in msg.removed {
            self.remove(&mut controllers, &id);
        }
        for task in msg.updated {
            if let Some(c) = controllers.get(&task.id) {
                let _ = c.desired.send(task.desired_state);
                continue;
            }
            let last = observed(&task);
            if is_terminal(last) {
                // An attachment that failed before it reached this node
                // (no address left): its `run` waits for that answer.
                if task.attachment {
                    if let (Ok(mut a), Some(st)) = (self.attachments.lock(), task.status.clone()) {
                        a.entry(task.id.clone()).or_insert(st);
                    }
                }
                continue;
            }
            // Assigned here before, but this process has no controller for
            // it (the daemon restarted): adopt its container if it still runs.
            let seen = if last > TaskState::Assigned {
                Observed::adopted(last)
            } else {
                Observed::fresh()
            };
            let (desired, rx) = watch::channel(task.desired_state);
            let reporter = Reporter::new(
                &task.id,
                self.status.clone(),
                task.attachment.then(|| self.attachments.clone()),
            );
            let node = NodeParts {
                exec: self.exec.clone(),
                network: self.overlay.clone(),
                files: self.files.clone(),
                cleaned: self.cleaned.subscribe(),
            };
            let (files, task_id) = (self.files.clone(), task.id.clone());
            let controller = TaskController::new(node, task.clone(), seen, rx, reporter);
            let handle = tokio::spawn(async move {
                controller.run().await;
                // The task is over: its secrets go from the node.
                files.forget_task(&task_id);
            });
            controllers.insert(task.id, Controller { desired, handle });
        }
    }

    /// A task removed from the node: a running one is stopped (its
    /// controller removes its containers), a finished one's containers go.
    fn remove(&self, controllers: &mut HashMap<String, Controller>, id: &str) {
        let Some(c) = controllers.remove(id) else {
            return;
        };
        if c.handle.is_finished() {
            let (exec, id) = (self.exec.clone(), id.to_string());
            tokio::spawn(async move { exec.remove_task(&id).await });
        } else {
            let _ = c.desired.send(TaskState::Remove as i32);
        }
    }

    /// The last status of attachment task `task_id` (`swarmctl run`).
    pub fn attachment_status(&self, task_id: &str) -> Option<TaskStatus> {
        self.attachments.lock().ok()?.get(task_id).cloned()
    }

    /// The node's secret and config files.
    pub fn files(&self) -> Arc<SecretFiles> {
        self.files.clone()
    }

    /// The node's overlay data plane.
    pub fn overlay(&self) -> Arc<Overlay> {
        self.overlay.clone()
    }

    /// The executor the tasks run on.
    pub fn executor(&self) -> Arc<E> {
        self.exec.clone()
    }

    /// Number of tasks with a live controller.
    pub fn running(&self) -> usize {
        self.controllers
            .lock()
            .map(|c| c.values().filter(|c| !c.handle.is_finished()).count())
            .unwrap_or(0)
    }
}
