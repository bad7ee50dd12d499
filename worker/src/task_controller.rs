//! One task's controller: performs the steps [`crate::task_step`] decides,
//! through the [`Executor`] (its container) and a [`TaskNetwork`] (its
//! network endpoints), and reports each state the task reaches.
//!
//! A task this node ran before the daemon restarted is adopted: its running
//! container is kept, not restarted. A finished task's container stays (for
//! its logs) until the managers remove the task; its network sandbox goes
//! when it exits.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarmlet_common::clock::now_ms;
use swarmlet_proto::objects::{Task, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch};

use crate::executor::{ExecError, Executor, Sandbox};
use crate::secret_files::SecretFiles;
use crate::task_step::{next_step, Action, Observed};

/// Where controllers send status changes: (task ID, status).
pub type StatusTx = mpsc::UnboundedSender<(String, TaskStatus)>;

/// Last statuses of attachment tasks (`swarmctl run`), by task ID.
pub type Attachments = Arc<Mutex<HashMap<String, TaskStatus>>>;

/// How long an exited `swarmctl run` container stays for its output to be read.
const RUN_REMOVAL_DELAY: Duration = Duration::from_secs(3);

/// Stop grace period of a task whose spec sets none.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How a task's container is plugged into its networks (the overlay data
/// plane on a real node).
pub trait TaskNetwork: Send + Sync + 'static {
    /// Plugs the container of `task`, whose network namespace is held by
    /// process `pid`, into the task's networks.
    fn attach(&self, task: &Task, pid: u32) -> impl Future<Output = Result<(), String>> + Send;
    /// The task's namespace is held by process `pid` from now on.
    fn follow_pid(&self, task_id: &str, pid: u32);
    /// Unplugs the task's container.
    fn detach(&self, task_id: &str) -> impl Future<Output = ()> + Send;
}

impl TaskNetwork for crate::overlay::Overlay {
    async fn attach(&self, task: &Task, pid: u32) -> Result<(), String> {
        crate::overlay::Overlay::attach(self, task, pid)
            .await
            .map_err(|e| e.to_string())
    }

    fn follow_pid(&self, task_id: &str, pid: u32) {
        crate::overlay::Overlay::follow_pid(self, task_id, pid)
    }

    async fn detach(&self, task_id: &str) {
        crate::overlay::Overlay::detach(self, task_id).await
    }
}

/// Where a controller reports: the node's status channel, and for an
/// attachment task the table its `swarmctl run` reads.
pub struct Reporter {
    task_id: String,
    out: StatusTx,
    attachments: Option<Attachments>,
}

impl Reporter {
    /// Reports task `task_id` to `out` (and to `attachments`, if given).
    pub fn new(task_id: &str, out: StatusTx, attachments: Option<Attachments>) -> Self {
        Reporter {
            task_id: task_id.to_string(),
            out,
            attachments,
        }
    }

    fn report(&self, st: TaskStatus) {
        if let Some(Ok(mut a)) = self.attachments.as_ref().map(|a| a.lock()) {
            a.insert(self.task_id.clone(), st.clone());
        }
        let _ = self.out.send((self.task_id.clone(), st));
    }
}

/// What the node shares with every controller.
pub struct NodeParts<E, N> {
    /// Runs the containers.
    pub exec: Arc<E>,
    /// Plugs them into their networks.
    pub network: Arc<N>,
    /// The tasks' secrets and configs.
    pub files: Arc<SecretFiles>,
    /// True once the containers of tasks this node no longer has are gone
    /// (new containers wait for it); closed when the node shuts down.
    pub cleaned: watch::Receiver<bool>,
}

/// What one step did.
enum Outcome {
    /// The task reached a new state.
    Reached(TaskStatus),
    /// The step was cut short because the task is to stop; decide again.
    Interrupted,
    /// The node is shutting down: the controller ends without a word (its
    /// container stays, to be adopted by the next process).
    Abandoned,
}

/// Drives one task through its states.
pub struct TaskController<E, N> {
    node: NodeParts<E, N>,
    task: Task,
    grace: Duration,
    desired: watch::Receiver<i32>,
    reporter: Reporter,
    seen: Observed,
    container: Option<String>,
}

impl<E: Executor, N: TaskNetwork> TaskController<E, N> {
    /// A controller of `task`, which starts from `seen` and follows the
    /// desired state in `desired`.
    pub fn new(
        node: NodeParts<E, N>,
        task: Task,
        seen: Observed,
        desired: watch::Receiver<i32>,
        reporter: Reporter,
    ) -> Self {
        let grace = task
            .spec
            .as_ref()
            .map(|s| s.stop_grace_period_ms)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_GRACE);
        TaskController {
            node,
            task,
            grace,
            desired,
            reporter,
            seen,
            container: None,
        }
    }

    /// Steps until the task has ended (or the node shuts down).
    pub async fn run(mut self) {
        loop {
            let desired = TaskState::try_from(*self.desired.borrow()).unwrap_or(TaskState::Running);
            let action = next_step(desired, &self.seen);
            let outcome = match action {
                Action::Done => return,
                Action::Adopt => self.adopt().await,
                Action::Accept => Outcome::Reached(status(TaskState::Accepted, "accepted")),
                Action::BeginPreparing => {
                    Outcome::Reached(status(TaskState::Preparing, "preparing"))
                }
                Action::Prepare => self.prepare().await,
                Action::Start => self.start().await,
                Action::Wait => self.wait().await,
                Action::Stop => self.stop().await,
                Action::ShutdownUnstarted => {
                    Outcome::Reached(status(TaskState::Shutdown, "shut down before it started"))
                }
            };
            match outcome {
                Outcome::Reached(st) => {
                    self.seen.state = TaskState::try_from(st.state).unwrap_or(self.seen.state);
                    self.reporter.report(st);
                }
                Outcome::Interrupted => {}
                Outcome::Abandoned => return,
            }
        }
    }

    fn container(&self) -> String {
        self.container.clone().unwrap_or_default()
    }

    /// The container left by the previous process, if it still runs.
    async fn adopt(&mut self) -> Outcome {
        self.seen.adopting = false;
        let Some(c) = self.node.exec.find(&self.task.id).await else {
            return Outcome::Reached(failed(
                "task lost",
                "the node restarted and the task's container is gone".into(),
            ));
        };
        let sandbox = self.node.exec.sandbox(&c).await;
        if let Some(sb) = &sandbox {
            if let Err(e) = self.node.network.attach(&self.task, sb.pid).await {
                tracing::warn!(task = %self.task.id, error = %e, "re-attaching an adopted task");
            }
        }
        self.seen.container = true;
        self.container = Some(c.clone());
        let st = status(TaskState::Running, "adopted after a restart");
        Outcome::Reached(with_sandbox(st, &c, &sandbox))
    }

    /// Secrets and configs, then the container.
    async fn prepare(&mut self) -> Outcome {
        let node = &self.node;
        let mounts = if node.exec.mounts_files() {
            node.files.materialize(&self.task)
        } else {
            node.files.check_received(&self.task).map(|()| Vec::new())
        };
        let mounts = match mounts {
            Ok(m) => m,
            Err(e) => {
                let mut st = status(TaskState::Rejected, "secrets and configs unavailable");
                st.err = e;
                return Outcome::Reached(st);
            }
        };
        let mut cleaned = node.cleaned.clone();
        if cleaned.wait_for(|done| *done).await.is_err() {
            return Outcome::Abandoned;
        }
        match node.exec.prepare(&self.task, &mounts).await {
            Ok(c) => {
                self.seen.container = true;
                self.container = Some(c.clone());
                let mut st = status(TaskState::Starting, "starting");
                st.container_id = c;
                Outcome::Reached(st)
            }
            Err(e) => {
                let mut st = status(TaskState::Rejected, "failed to prepare");
                st.err = e.to_string();
                Outcome::Reached(st)
            }
        }
    }

    /// Network, start, readiness.
    async fn start(&mut self) -> Outcome {
        let container = self.container();
        let (exec, network) = (self.node.exec.clone(), self.node.network.clone());
        // The network first, when the container has a sandbox to hold it:
        // the task's process then starts with its interfaces.
        let plugged_first = match exec.start_network(&container).await {
            Ok(Some(pid)) => network.attach(&self.task, pid).await.map(|()| true),
            Ok(None) => Ok(false),
            Err(e) => Err(e.to_string()),
        };
        let plugged_first = match plugged_first {
            Ok(plugged) => plugged,
            Err(e) => return self.network_failed(e).await,
        };
        let started = tokio::select! {
            r = exec.start(&container) => r,
            _ = stop_wanted(&mut self.desired) => return Outcome::Interrupted,
        };
        if let Err(e) = started {
            return self.start_failed(e).await;
        }
        let sandbox = exec.sandbox(&container).await;
        if let Some(sb) = &sandbox {
            if plugged_first {
                network.follow_pid(&self.task.id, sb.pid);
            } else if let Err(e) = network.attach(&self.task, sb.pid).await {
                return self.network_failed(e).await;
            }
        }
        let ready = tokio::select! {
            r = exec.ready(&container) => r,
            _ = stop_wanted(&mut self.desired) => return Outcome::Interrupted,
        };
        if let Err(e) = ready {
            return self.start_failed(e).await;
        }
        let st = status(TaskState::Running, "started");
        Outcome::Reached(with_sandbox(st, &container, &sandbox))
    }

    /// The container could not be plugged into its networks: it goes, with
    /// the task's endpoints.
    async fn network_failed(&self, err: String) -> Outcome {
        let container = self.container();
        let _ = self.node.exec.stop(&container, self.grace).await;
        self.node.network.detach(&self.task.id).await;
        let st = failed("failed to attach networks", format!("network: {err}"));
        Outcome::Reached(with_sandbox(st, &container, &None))
    }

    /// The container did not start or never became ready.
    async fn start_failed(&self, e: ExecError) -> Outcome {
        let container = self.container();
        self.node.network.detach(&self.task.id).await;
        let _ = self.node.exec.stop(&container, self.grace).await;
        let mut st = match e {
            ExecError::Start(_) => {
                let mut st = status(TaskState::Rejected, "failed to start");
                st.err = e.to_string();
                st
            }
            _ => failed("failed to start", e.to_string()),
        };
        st.container_id = container;
        Outcome::Reached(st)
    }

    /// Until the container exits; what it held besides itself goes then.
    async fn wait(&mut self) -> Outcome {
        let container = self.container();
        let exec = self.node.exec.clone();
        let exited = tokio::select! {
            r = exec.wait(&container) => r,
            _ = stop_wanted(&mut self.desired) => return Outcome::Interrupted,
        };
        let mut st = match exited {
            Ok(0) => status(TaskState::Complete, "finished"),
            Ok(code) => {
                let mut st = failed("task exited", format!("task: non-zero exit ({code})"));
                st.exit_code = code;
                st
            }
            Err(e @ ExecError::Unhealthy(_)) => {
                let _ = exec.stop(&container, self.grace).await;
                failed("unhealthy", e.to_string())
            }
            Err(e) => {
                // What is left of it (its network sandbox) goes too.
                let _ = exec.stop(&container, self.grace).await;
                failed("container lost", e.to_string())
            }
        };
        self.node.network.detach(&self.task.id).await;
        exec.release_network(&container).await;
        if self.task.attachment {
            // A `run` container is gone once it exited, as with `docker run
            // --rm`; a moment later, so that `run` without `-d` reads its
            // last output first.
            let (exec, container, grace) = (exec.clone(), container.clone(), self.grace);
            tokio::spawn(async move {
                tokio::time::sleep(RUN_REMOVAL_DELAY).await;
                let _ = exec.stop(&container, grace).await;
            });
        }
        st.started = true;
        st.container_id = container;
        Outcome::Reached(st)
    }

    /// Stops and removes the container.
    async fn stop(&mut self) -> Outcome {
        let container = self.container();
        let _ = self.node.exec.stop(&container, self.grace).await;
        self.node.network.detach(&self.task.id).await;
        let mut st = status(TaskState::Shutdown, "shut down");
        st.started = self.seen.state == TaskState::Running;
        st.container_id = container;
        Outcome::Reached(st)
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

fn status(state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        message: message.to_string(),
        timestamp_ms: now_ms(),
        started: state == TaskState::Running,
        ..Default::default()
    }
}

fn failed(message: &str, err: String) -> TaskStatus {
    let mut st = status(TaskState::Failed, message);
    st.err = err;
    st
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimConfig, SimExecutor};
    use swarmlet_proto::objects::{FileReference, ServiceSpec};
    use tokio::sync::mpsc::UnboundedReceiver;
    use TaskState::*;

    /// Records what the controller asked of the network.
    #[derive(Default)]
    struct FakeNetwork {
        detached: Mutex<Vec<String>>,
    }

    impl TaskNetwork for FakeNetwork {
        async fn attach(&self, _task: &Task, _pid: u32) -> Result<(), String> {
            Ok(())
        }
        fn follow_pid(&self, _task_id: &str, _pid: u32) {}
        async fn detach(&self, task_id: &str) {
            if let Ok(mut d) = self.detached.lock() {
                d.push(task_id.to_string());
            }
        }
    }

    impl FakeNetwork {
        fn detached(&self) -> Vec<String> {
            self.detached.lock().map(|d| d.clone()).unwrap_or_default()
        }
    }

    /// A node with the simulated executor: spawns controllers and reads
    /// what they report.
    struct Node {
        exec: Arc<SimExecutor>,
        network: Arc<FakeNetwork>,
        files: Arc<SecretFiles>,
        cleaned: watch::Sender<bool>,
        out: StatusTx,
        reports: UnboundedReceiver<(String, TaskStatus)>,
    }

    /// A running controller: its desired state and its end.
    struct Running {
        desired: watch::Sender<i32>,
        handle: tokio::task::JoinHandle<()>,
    }

    impl Node {
        fn new(start_latency: Duration) -> Self {
            let (out, reports) = mpsc::unbounded_channel();
            Node {
                exec: Arc::new(SimExecutor::new(SimConfig { start_latency })),
                network: Arc::new(FakeNetwork::default()),
                files: Arc::new(SecretFiles::new("test-node")),
                cleaned: watch::channel(true).0,
                out,
                reports,
            }
        }

        fn spawn(&self, task: &Task, seen: Observed, desired: TaskState) -> Running {
            let (tx, rx) = watch::channel(desired as i32);
            let node = NodeParts {
                exec: self.exec.clone(),
                network: self.network.clone(),
                files: self.files.clone(),
                cleaned: self.cleaned.subscribe(),
            };
            let reporter = Reporter::new(&task.id, self.out.clone(), None);
            let controller = TaskController::new(node, task.clone(), seen, rx, reporter);
            Running {
                desired: tx,
                handle: tokio::spawn(controller.run()),
            }
        }

        /// Reports until one in state `until` (inclusive), within 5 s.
        async fn reports_until(&mut self, until: TaskState) -> Vec<TaskStatus> {
            let mut seen = Vec::new();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(5), self.reports.recv()).await;
                let Ok(Some((_, st))) = next else {
                    panic!("no report in state {until:?}; got {:?}", states(&seen));
                };
                let done = st.state == until as i32;
                seen.push(st);
                if done {
                    return seen;
                }
            }
        }

        async fn has_container(&self, task: &Task) -> bool {
            self.exec.find(&task.id).await.is_some()
        }
    }

    fn task(id: &str, image: &str) -> Task {
        Task {
            id: id.to_string(),
            spec: Some(ServiceSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn states(reports: &[TaskStatus]) -> Vec<TaskState> {
        reports
            .iter()
            .map(|s| TaskState::try_from(s.state).unwrap_or(New))
            .collect()
    }

    async fn ends(running: Running) {
        tokio::time::timeout(Duration::from_secs(5), running.handle)
            .await
            .expect("the controller ended")
            .expect("the controller did not panic");
    }

    #[tokio::test]
    async fn a_task_runs_then_stops_when_told() {
        let mut node = Node::new(Duration::ZERO);
        let t = task("t1", "sim/app");
        let running = node.spawn(&t, Observed::fresh(), Running);
        let reports = node.reports_until(Running).await;
        assert_eq!(
            states(&reports),
            [Accepted, Preparing, Starting, Running],
            "one state per step, in order"
        );
        let container = reports[3].container_id.clone();
        assert_eq!(container, "sim-t1");
        assert!(reports[3].started);
        assert!(node.has_container(&t).await);

        running.desired.send_replace(Shutdown as i32);
        let last = node.reports_until(Shutdown).await;
        assert_eq!(states(&last), [Shutdown]);
        assert_eq!(last[0].container_id, container);
        assert!(last[0].started, "it had started");
        ends(running).await;
        assert!(!node.has_container(&t).await, "the container was removed");
        assert_eq!(node.network.detached(), ["t1"]);
    }

    #[tokio::test]
    async fn a_task_the_executor_refuses_is_rejected_before_it_starts() {
        let mut node = Node::new(Duration::ZERO);
        let t = task("t1", "sim/reject");
        let running = node.spawn(&t, Observed::fresh(), Running);
        let reports = node.reports_until(Rejected).await;
        assert_eq!(states(&reports), [Accepted, Preparing, Rejected]);
        let rejected = &reports[2];
        assert_eq!(rejected.message, "failed to prepare");
        assert!(
            rejected.err.contains("simulated start failure"),
            "{rejected:?}"
        );
        assert!(!rejected.started);
        ends(running).await;
        assert!(!node.has_container(&t).await);
    }

    #[tokio::test]
    async fn a_task_whose_secret_never_arrived_is_rejected() {
        let mut node = Node::new(Duration::ZERO);
        let mut t = task("t1", "sim/app");
        if let Some(spec) = t.spec.as_mut() {
            spec.secrets.push(FileReference {
                id: "s1".into(),
                name: "db-password".into(),
                target: String::new(),
            });
        }
        let running = node.spawn(&t, Observed::fresh(), Running);
        let reports = node.reports_until(Rejected).await;
        let rejected = reports.last().cloned().unwrap_or_default();
        assert_eq!(rejected.message, "secrets and configs unavailable");
        assert!(rejected.err.contains("db-password"), "{rejected:?}");
        ends(running).await;
        assert!(!node.has_container(&t).await, "nothing was created");
    }

    #[tokio::test]
    async fn a_task_shut_down_before_it_started_creates_nothing() {
        let mut node = Node::new(Duration::ZERO);
        let t = task("t1", "sim/app");
        let running = node.spawn(&t, Observed::fresh(), Shutdown);
        let reports = node.reports_until(Shutdown).await;
        assert_eq!(states(&reports), [Shutdown], "no other state on the way");
        assert_eq!(reports[0].message, "shut down before it started");
        assert!(reports[0].container_id.is_empty());
        ends(running).await;
        assert!(!node.has_container(&t).await);
    }

    #[tokio::test]
    async fn a_task_shut_down_while_starting_removes_its_container() {
        // The start takes a minute: the stop arrives while it is under way.
        let mut node = Node::new(Duration::from_secs(60));
        let t = task("t1", "sim/app");
        let running = node.spawn(&t, Observed::fresh(), Running);
        let reports = node.reports_until(Starting).await;
        assert_eq!(
            reports.last().map(|s| s.container_id.as_str()),
            Some("sim-t1")
        );
        running.desired.send_replace(Shutdown as i32);
        let last = node.reports_until(Shutdown).await;
        assert_eq!(states(&last), [Shutdown], "never reported running");
        assert!(!last[0].started);
        ends(running).await;
        assert!(node.exec.find("t1").await.is_none());
        assert_eq!(node.network.detached(), ["t1"]);
    }

    #[tokio::test]
    async fn an_unhealthy_task_fails_and_its_container_goes() {
        let mut node = Node::new(Duration::ZERO);
        let t = task("t1", "sim/unhealthy");
        let running = node.spawn(&t, Observed::fresh(), Running);
        let reports = node.reports_until(Failed).await;
        assert_eq!(
            states(&reports),
            [Accepted, Preparing, Starting, Running, Failed]
        );
        let failed = &reports[4];
        assert_eq!(failed.message, "unhealthy");
        assert!(failed.err.contains("unhealthy container"), "{failed:?}");
        assert!(failed.started);
        ends(running).await;
        assert!(
            !node.has_container(&t).await,
            "the unhealthy container was stopped"
        );
        assert_eq!(node.network.detached(), ["t1"]);
    }

    #[tokio::test]
    async fn a_task_that_exits_reports_its_code_and_its_replacement_starts_afresh() {
        let mut node = Node::new(Duration::ZERO);
        let first = task("t1", "sim/exit");
        let running = node.spawn(&first, Observed::fresh(), Running);
        let reports = node.reports_until(Failed).await;
        let failed = reports.last().cloned().unwrap_or_default();
        assert_eq!(failed.exit_code, 1, "the restart policy reads the code");
        assert_eq!(failed.err, "task: non-zero exit (1)");
        assert!(failed.started);
        ends(running).await;

        // The restart policy's new task for the same slot: a new container.
        let second = task("t2", "sim/app");
        let again = node.spawn(&second, Observed::fresh(), Running);
        let reports = node.reports_until(Running).await;
        assert_eq!(states(&reports), [Accepted, Preparing, Starting, Running]);
        assert_eq!(reports[3].container_id, "sim-t2");
        again.desired.send_replace(Shutdown as i32);
        node.reports_until(Shutdown).await;
        ends(again).await;
    }

    #[tokio::test]
    async fn after_a_daemon_restart_a_running_task_is_adopted_not_restarted() {
        let mut node = Node::new(Duration::ZERO);
        let t = task("t1", "sim/app");
        let before = node.spawn(&t, Observed::fresh(), Running);
        let reports = node.reports_until(Running).await;
        let container = reports[3].container_id.clone();
        // The daemon goes: its controller with it, the container stays.
        before.handle.abort();
        let _ = before.handle.await;
        drop(before.desired);

        let after = node.spawn(&t, Observed::adopted(Running), Running);
        let reports = node.reports_until(Running).await;
        assert_eq!(states(&reports), [Running], "straight back to running");
        assert_eq!(reports[0].message, "adopted after a restart");
        assert_eq!(reports[0].container_id, container, "the same container");

        after.desired.send_replace(Shutdown as i32);
        node.reports_until(Shutdown).await;
        ends(after).await;
        assert!(!node.has_container(&t).await);
    }

    #[tokio::test]
    async fn an_adopted_task_whose_container_is_gone_is_lost() {
        let mut node = Node::new(Duration::ZERO);
        let t = task("t1", "sim/app");
        let running = node.spawn(&t, Observed::adopted(Running), Running);
        let reports = node.reports_until(Failed).await;
        assert_eq!(states(&reports), [Failed]);
        assert_eq!(reports[0].message, "task lost");
        ends(running).await;
    }

    #[tokio::test]
    async fn a_node_shutting_down_leaves_its_tasks_running() {
        let mut node = Node::new(Duration::ZERO);
        let t = task("t1", "sim/app");
        let running = node.spawn(&t, Observed::fresh(), Running);
        node.reports_until(Running).await;
        // The task manager is gone: no desired state will come any more.
        drop(running.desired);
        tokio::task::yield_now().await;
        assert!(!running.handle.is_finished(), "the controller waits on");
        assert!(node.has_container(&t).await, "the container still runs");
        running.handle.abort();
    }
}
