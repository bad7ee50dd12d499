//! The executor boundary: how a worker runs one task's container.
//!
//! Two implementations: [`crate::docker::DockerExecutor`] (real containers
//! through the Docker API) and [`crate::sim::SimExecutor`] (no containers,
//! for scale tests); [`crate::node_executor::NodeExecutor`] is the one a
//! daemon was started with.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::stream::BoxStream;

use swarmlet_proto::objects::Task;

/// Why the executor could not do something; becomes the task's error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    /// The task cannot start (it is rejected): image missing, bad settings.
    #[error("{0}")]
    Start(String),
    /// The container is unknown (e.g. removed behind the node's back).
    #[error("container {0} not found")]
    NotFound(String),
    /// The container's health check failed.
    #[error("task: unhealthy container: {0}")]
    Unhealthy(String),
    /// The container runtime failed or cannot be reached.
    #[error("{0}")]
    Runtime(String),
}

/// A file bind-mounted read-only into a container (a secret or config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    /// The file on the node (on tmpfs).
    pub source: std::path::PathBuf,
    /// Where the container sees it.
    pub target: String,
}

/// Runs containers for tasks.
pub trait Executor: Send + Sync + 'static {
    /// Checks the image and creates the task's container, with `files`
    /// mounted into it; returns its ID.
    fn prepare(
        &self,
        task: &Task,
        files: &[FileMount],
    ) -> impl Future<Output = Result<String, ExecError>> + Send;
    /// Starts the network sandbox of a prepared container, if it has one,
    /// and returns the PID whose network namespace the container will run
    /// in, for the data plane to plug in before the container starts.
    /// `None`: the container gets its namespace when it starts.
    fn start_network(
        &self,
        container_id: &str,
    ) -> impl Future<Output = Result<Option<u32>, ExecError>> + Send;
    /// Starts the container; returns once its process runs.
    fn start(&self, container_id: &str) -> impl Future<Output = Result<(), ExecError>> + Send;
    /// Waits until the started container is ready: healthy when it has a
    /// health check, at once otherwise.
    fn ready(&self, container_id: &str) -> impl Future<Output = Result<(), ExecError>> + Send;
    /// The running container's process and network namespace, if it has
    /// them (simulated containers do not).
    fn sandbox(&self, container_id: &str) -> impl Future<Output = Option<Sandbox>> + Send;
    /// Waits until the container exits (its exit code) or turns unhealthy.
    fn wait(&self, container_id: &str) -> impl Future<Output = Result<i32, ExecError>> + Send;
    /// Stops the container (SIGTERM, SIGKILL after `grace`) and removes it.
    fn stop(
        &self,
        container_id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;
    /// Frees what an exited container holds besides itself (its network
    /// sandbox); the container stays, for its logs, until its task is removed.
    fn release_network(&self, container_id: &str) -> impl Future<Output = ()> + Send;
    /// Removes every container of a task, exited ones too (the task was
    /// removed from the node).
    fn remove_task(&self, task_id: &str) -> impl Future<Output = ()> + Send;
    /// The running container of a task this node ran before (adoption after
    /// a daemon restart).
    fn find(&self, task_id: &str) -> impl Future<Output = Option<String>> + Send;
    /// Removes this node's containers of tasks not in `keep`.
    fn remove_others(&self, keep: HashSet<String>) -> impl Future<Output = ()> + Send;
    /// Whether containers get secrets and configs as files (the simulated
    /// executor only checks that they were received).
    fn mounts_files(&self) -> bool {
        true
    }
    /// The container's output: (from stderr, bytes) chunks; the last `tail`
    /// lines (negative: all), then new output while `follow`.
    fn logs(&self, container_id: &str, follow: bool, tail: i64) -> LogStream;
    /// Why the container engine cannot be reached now, naming it and its
    /// address; `None` when it answers.
    fn engine_error(&self) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }
}

/// Where a running container lives: its main process and the path of its
/// network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// PID of the container's main process (in the node's PID namespace).
    pub pid: u32,
    /// Path of its network namespace, for `nsenter --net=PATH`.
    pub path: String,
}

/// Output chunks of one container.
pub type LogStream = BoxStream<'static, Result<(bool, Vec<u8>), ExecError>>;
