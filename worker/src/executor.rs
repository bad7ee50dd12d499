//! The executor boundary: how a worker runs one task's container.
//!
//! [`SimExecutor`] runs nothing (scale tests, `swarmd --executor sim`): a
//! task "starts" after a configurable latency and runs until stopped. Images
//! inject failures: `sim/reject…` fails to start, `sim/exit…` exits with
//! code 1 right after starting. The Docker executor arrives with issue 4.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use swarmlet_proto::objects::Task;
use tokio::sync::watch;

/// Why the executor could not do something; becomes the task's error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    /// The task could not be started (the task is rejected).
    #[error("{0}")]
    Start(String),
    /// The container is unknown (e.g. lost when the node restarted).
    #[error("container {0} not found")]
    NotFound(String),
}

/// Runs containers for tasks.
pub trait Executor: Send + Sync + 'static {
    /// Prepares and starts the task's container; returns its ID.
    fn start(&self, task: &Task) -> impl Future<Output = Result<String, ExecError>> + Send;
    /// Waits until the container exits; returns its exit code.
    fn wait(&self, container_id: &str) -> impl Future<Output = Result<i32, ExecError>> + Send;
    /// Stops and removes the container.
    fn stop(&self, container_id: &str) -> impl Future<Output = Result<(), ExecError>> + Send;
}

/// Settings of the simulated executor.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// How long a start takes.
    pub start_latency: Duration,
}

/// An executor that runs no containers.
#[derive(Default)]
pub struct SimExecutor {
    cfg: SimConfig,
    running: Mutex<HashMap<String, watch::Sender<Option<i32>>>>,
}

impl SimExecutor {
    /// A simulated executor with `cfg`.
    pub fn new(cfg: SimConfig) -> Self {
        SimExecutor {
            cfg,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn exit(&self, id: &str, code: i32) {
        if let Ok(r) = self.running.lock() {
            if let Some(tx) = r.get(id) {
                tx.send_replace(Some(code));
            }
        }
    }
}

impl Executor for SimExecutor {
    async fn start(&self, task: &Task) -> Result<String, ExecError> {
        let image = task.spec.as_ref().map(|s| s.image.as_str()).unwrap_or("");
        tokio::time::sleep(self.cfg.start_latency).await;
        if image.starts_with("sim/reject") {
            return Err(ExecError::Start(format!(
                "simulated start failure for image {image}"
            )));
        }
        let id = format!("sim-{}", task.id);
        let (tx, _) = watch::channel(None);
        if let Ok(mut r) = self.running.lock() {
            r.insert(id.clone(), tx);
        }
        if image.starts_with("sim/exit") {
            self.exit(&id, 1);
        }
        Ok(id)
    }

    async fn wait(&self, container_id: &str) -> Result<i32, ExecError> {
        let mut rx = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(container_id).map(|tx| tx.subscribe()))
            .ok_or_else(|| ExecError::NotFound(container_id.to_string()))?;
        let code = rx
            .wait_for(Option::is_some)
            .await
            .map(|c| c.unwrap_or(0))
            .map_err(|_| ExecError::NotFound(container_id.to_string()))?;
        Ok(code)
    }

    async fn stop(&self, container_id: &str) -> Result<(), ExecError> {
        self.exit(container_id, 0);
        if let Ok(mut r) = self.running.lock() {
            r.remove(container_id);
        }
        Ok(())
    }
}

/// The executor a daemon was started with.
pub enum NodeExecutor {
    /// Simulated containers.
    Sim(SimExecutor),
    /// No executor available; every task is rejected with this reason.
    Unavailable(String),
}

impl Executor for NodeExecutor {
    async fn start(&self, task: &Task) -> Result<String, ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.start(task).await,
            NodeExecutor::Unavailable(why) => Err(ExecError::Start(why.clone())),
        }
    }

    async fn wait(&self, container_id: &str) -> Result<i32, ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.wait(container_id).await,
            NodeExecutor::Unavailable(_) => Err(ExecError::NotFound(container_id.to_string())),
        }
    }

    async fn stop(&self, container_id: &str) -> Result<(), ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.stop(container_id).await,
            NodeExecutor::Unavailable(_) => Ok(()),
        }
    }
}
