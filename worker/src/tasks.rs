//! The worker's task manager: turns assignment diffs into one controller per
//! task, and reports each task's progress through the state machine
//! (`accepted → preparing → starting → running → complete|failed|shutdown`,
//! or `rejected` when it cannot start). A task this node ran before the
//! daemon restarted is adopted: its running container is kept, not
//! restarted; the first full assignment set removes containers of other tasks.
//! A finished task's container stays (for its logs) until the managers
//! remove the task; its network sandbox goes when it exits.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmlet_common::clock::now_ms;
use swarmlet_proto::dispatcher::AssignmentsMessage;
use swarmlet_proto::objects::{Task, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch};

use crate::executor::{ExecError, Executor, Sandbox};
use crate::overlay::Overlay;
use crate::secret_files::SecretFiles;

/// Where controllers send status changes: (task ID, status).
pub type StatusTx = mpsc::UnboundedSender<(String, TaskStatus)>;

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

/// How long an exited `swarmctl run` container stays for its output to be read.
const RUN_REMOVAL_DELAY: Duration = Duration::from_secs(3);

/// Last statuses of attachment tasks, by task ID.
type Attachments = Arc<Mutex<HashMap<String, TaskStatus>>>;

fn status(state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        message: message.to_string(),
        timestamp_ms: now_ms(),
        started: state == TaskState::Running,
        ..Default::default()
    }
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
            let observed = task.status.as_ref().map(|s| s.state).unwrap_or(0);
            if observed >= TaskState::Complete as i32 {
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
            let begin = if observed > TaskState::Assigned as i32 {
                Begin::Adopt
            } else {
                Begin::Fresh
            };
            let (desired, rx) = watch::channel(task.desired_state);
            let files = self.files.clone();
            let task_id = task.id.clone();
            let controller = run(
                self.exec.clone(),
                files.clone(),
                self.overlay.clone(),
                task.clone(),
                begin,
                rx,
                self.cleaned.subscribe(),
                self.status.clone(),
                task.attachment.then(|| self.attachments.clone()),
            );
            let handle = tokio::spawn(async move {
                controller.await;
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

/// Resolves when the desired state moves past `running`. Never resolves
/// when the task manager is gone (the daemon is shutting down): a stopping
/// `swarmd` leaves its containers running, to be adopted on restart.
async fn stop_wanted(desired: &mut watch::Receiver<i32>) {
    if desired
        .wait_for(|d| *d > TaskState::Running as i32)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}

/// How a controller begins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// A new task: create and start its container.
    Fresh,
    /// A task this node ran before this process: adopt its container.
    Adopt,
}

fn failed(message: &str, err: String) -> TaskStatus {
    let mut st = status(TaskState::Failed, message);
    st.err = err;
    st
}

/// A task whose container could not be plugged into its networks: the
/// container (and its sandbox) and the task's endpoints go; the status to
/// report.
async fn network_failed<E: Executor>(
    exec: &E,
    overlay: &Overlay,
    task_id: &str,
    container: &str,
    grace: Duration,
    err: String,
) -> TaskStatus {
    let _ = exec.stop(container, grace).await;
    overlay.detach(task_id).await;
    let st = failed("failed to attach networks", format!("network: {err}"));
    with_sandbox(st, container, &None)
}

/// Notes where the container lives in a status.
fn with_sandbox(mut st: TaskStatus, container: &str, sandbox: &Option<Sandbox>) -> TaskStatus {
    st.container_id = container.to_string();
    if let Some(sb) = sandbox {
        st.pid = sb.pid;
        st.sandbox = sb.path.clone();
    }
    st
}

#[allow(clippy::too_many_arguments)]
async fn run<E: Executor>(
    exec: Arc<E>,
    files: Arc<SecretFiles>,
    overlay: Arc<Overlay>,
    task: Task,
    begin: Begin,
    mut desired: watch::Receiver<i32>,
    mut cleaned: watch::Receiver<bool>,
    out: StatusTx,
    attachments: Option<Attachments>,
) {
    let id = task.id.clone();
    let report = |s: TaskStatus| {
        if let Some(Ok(mut a)) = attachments.as_ref().map(|a| a.lock()) {
            a.insert(id.clone(), s.clone());
        }
        let _ = out.send((id.clone(), s));
    };
    let grace = Duration::from_millis(
        task.spec
            .as_ref()
            .map(|s| s.stop_grace_period_ms)
            .filter(|ms| *ms > 0)
            .unwrap_or(10_000),
    );
    let container = match begin {
        Begin::Adopt => match exec.find(&task.id).await {
            Some(c) => {
                let sandbox = exec.sandbox(&c).await;
                if let Some(sb) = &sandbox {
                    if let Err(e) = overlay.attach(&task, sb.pid).await {
                        tracing::warn!(task = %task.id, error = %e, "re-attaching an adopted task");
                    }
                }
                let st = status(TaskState::Running, "adopted after a restart");
                report(with_sandbox(st, &c, &sandbox));
                c
            }
            None => {
                report(failed(
                    "task lost",
                    "the node restarted and the task's container is gone".into(),
                ));
                return;
            }
        },
        Begin::Fresh => {
            if *desired.borrow() > TaskState::Running as i32 {
                report(status(TaskState::Shutdown, "shut down before it started"));
                return;
            }
            report(status(TaskState::Accepted, "accepted"));
            report(status(TaskState::Preparing, "preparing"));
            let mounts = if exec.mounts_files() {
                files.materialize(&task)
            } else {
                files.check_received(&task).map(|()| Vec::new())
            };
            let mounts = match mounts {
                Ok(m) => m,
                Err(e) => {
                    let mut st = status(TaskState::Rejected, "secrets and configs unavailable");
                    st.err = e;
                    report(st);
                    return;
                }
            };
            if cleaned.wait_for(|done| *done).await.is_err() {
                return;
            }
            let container = match exec.prepare(&task, &mounts).await {
                Ok(c) => c,
                Err(e) => {
                    let mut st = status(TaskState::Rejected, "failed to prepare");
                    st.err = e.to_string();
                    report(st);
                    return;
                }
            };
            let mut st = status(TaskState::Starting, "starting");
            st.container_id = container.clone();
            report(st);
            // The network first, when the container has a sandbox to hold
            // it: the task's process then starts with its interfaces.
            let plugged_first = match exec.start_network(&container).await {
                Ok(Some(pid)) => overlay
                    .attach(&task, pid)
                    .await
                    .map(|()| true)
                    .map_err(|e| e.to_string()),
                Ok(None) => Ok(false),
                Err(e) => Err(e.to_string()),
            };
            let plugged_first = match plugged_first {
                Ok(plugged) => plugged,
                Err(e) => {
                    report(network_failed(&*exec, &overlay, &task.id, &container, grace, e).await);
                    return;
                }
            };
            let started = tokio::select! {
                r = exec.start(&container) => Some(r),
                _ = stop_wanted(&mut desired) => None,
            };
            let sandbox = match started {
                Some(Ok(())) => exec.sandbox(&container).await,
                _ => None,
            };
            if let (Some(Ok(())), Some(sb)) = (&started, &sandbox) {
                if plugged_first {
                    overlay.follow_pid(&task.id, sb.pid);
                } else if let Err(e) = overlay.attach(&task, sb.pid).await {
                    let e = e.to_string();
                    report(network_failed(&*exec, &overlay, &task.id, &container, grace, e).await);
                    return;
                }
            }
            let started = match started {
                Some(Ok(())) => tokio::select! {
                    r = exec.ready(&container) => Some(r),
                    _ = stop_wanted(&mut desired) => None,
                },
                other => other,
            };
            match started {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    overlay.detach(&task.id).await;
                    let _ = exec.stop(&container, grace).await;
                    let mut st = match e {
                        ExecError::Start(_) => {
                            let mut st = status(TaskState::Rejected, "failed to start");
                            st.err = e.to_string();
                            st
                        }
                        _ => failed("failed to start", e.to_string()),
                    };
                    st.container_id = container;
                    report(st);
                    return;
                }
                None => {
                    let _ = exec.stop(&container, grace).await;
                    overlay.detach(&task.id).await;
                    let mut st = status(TaskState::Shutdown, "shut down");
                    st.container_id = container;
                    report(st);
                    return;
                }
            }
            let st = status(TaskState::Running, "started");
            report(with_sandbox(st, &container, &sandbox));
            container
        }
    };
    let outcome = tokio::select! {
        code = exec.wait(&container) => Some(code),
        _ = stop_wanted(&mut desired) => None,
    };
    let mut st = match outcome {
        Some(Ok(0)) => status(TaskState::Complete, "finished"),
        Some(Ok(code)) => {
            let mut st = failed("task exited", format!("task: non-zero exit ({code})"));
            st.exit_code = code;
            st
        }
        Some(Err(e @ ExecError::Unhealthy(_))) => {
            let _ = exec.stop(&container, grace).await;
            failed("unhealthy", e.to_string())
        }
        Some(Err(e)) => {
            // What is left of it (its network sandbox) goes too.
            let _ = exec.stop(&container, grace).await;
            failed("container lost", e.to_string())
        }
        None => {
            let _ = exec.stop(&container, grace).await;
            status(TaskState::Shutdown, "shut down")
        }
    };
    overlay.detach(&task.id).await;
    exec.release_network(&container).await;
    if task.attachment {
        // A `run` container is gone once it exited, as with `docker run
        // --rm`; a moment later, so that `run` without `-d` reads its last
        // output first.
        let (exec, container) = (exec.clone(), container.clone());
        tokio::spawn(async move {
            tokio::time::sleep(RUN_REMOVAL_DELAY).await;
            let _ = exec.stop(&container, grace).await;
        });
    }
    // Every outcome from here on follows a start.
    st.started = true;
    st.container_id = container;
    report(st);
}
