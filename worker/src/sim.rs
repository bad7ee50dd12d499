//! The simulated executor (`swarmd --executor sim`): runs no containers. A
//! task "starts" after a configurable latency and runs until stopped.
//! Images inject failures: `sim/reject…` fails to start, `sim/exit…` exits
//! with code 1 right after starting, `sim/unhealthy…` starts and then fails
//! its health check.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use swarmlet_proto::objects::Task;
use tokio::sync::watch;

use futures::StreamExt;

use crate::executor::{ExecError, Executor, FileMount, LogStream, Sandbox};

/// Settings of the simulated executor.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// How long a start takes.
    pub start_latency: Duration,
}

struct SimContainer {
    exit: watch::Sender<Option<i32>>,
    exits_at_start: bool,
    unhealthy: bool,
}

/// An executor that runs no containers.
#[derive(Default)]
pub struct SimExecutor {
    cfg: SimConfig,
    containers: Mutex<HashMap<String, SimContainer>>,
}

impl SimExecutor {
    /// A simulated executor with `cfg`.
    pub fn new(cfg: SimConfig) -> Self {
        SimExecutor {
            cfg,
            containers: Mutex::new(HashMap::new()),
        }
    }

    fn exit(&self, id: &str, code: i32) {
        if let Ok(c) = self.containers.lock() {
            if let Some(c) = c.get(id) {
                c.exit.send_replace(Some(code));
            }
        }
    }
}

impl Executor for SimExecutor {
    fn mounts_files(&self) -> bool {
        false
    }

    async fn prepare(&self, task: &Task, _files: &[FileMount]) -> Result<String, ExecError> {
        let image = task.spec.as_ref().map(|s| s.image.as_str()).unwrap_or("");
        if image.starts_with("sim/reject") {
            return Err(ExecError::Start(format!(
                "simulated start failure for image {image}"
            )));
        }
        let id = format!("sim-{}", task.id);
        let (exit, _) = watch::channel(None);
        if let Ok(mut c) = self.containers.lock() {
            c.insert(
                id.clone(),
                SimContainer {
                    exit,
                    exits_at_start: image.starts_with("sim/exit"),
                    unhealthy: image.starts_with("sim/unhealthy"),
                },
            );
        }
        Ok(id)
    }

    async fn start_network(&self, _container_id: &str) -> Result<Option<u32>, ExecError> {
        Ok(None)
    }

    async fn start(&self, container_id: &str) -> Result<(), ExecError> {
        tokio::time::sleep(self.cfg.start_latency).await;
        let exits = self
            .containers
            .lock()
            .ok()
            .and_then(|c| c.get(container_id).map(|c| c.exits_at_start))
            .ok_or_else(|| ExecError::NotFound(container_id.to_string()))?;
        if exits {
            self.exit(container_id, 1);
        }
        Ok(())
    }

    async fn wait(&self, container_id: &str) -> Result<i32, ExecError> {
        let (mut rx, unhealthy) = self
            .containers
            .lock()
            .ok()
            .and_then(|c| {
                c.get(container_id)
                    .map(|c| (c.exit.subscribe(), c.unhealthy))
            })
            .ok_or_else(|| ExecError::NotFound(container_id.to_string()))?;
        if unhealthy {
            return Err(ExecError::Unhealthy(
                "simulated health check failure".to_string(),
            ));
        }
        rx.wait_for(Option::is_some)
            .await
            .map(|c| c.unwrap_or(0))
            .map_err(|_| ExecError::NotFound(container_id.to_string()))
    }

    async fn stop(&self, container_id: &str, _grace: Duration) -> Result<(), ExecError> {
        self.exit(container_id, 0);
        if let Ok(mut c) = self.containers.lock() {
            c.remove(container_id);
        }
        Ok(())
    }

    async fn ready(&self, _container_id: &str) -> Result<(), ExecError> {
        Ok(())
    }

    async fn sandbox(&self, _container_id: &str) -> Option<Sandbox> {
        None
    }

    async fn release_network(&self, _container_id: &str) {}

    async fn remove_task(&self, task_id: &str) {
        if let Ok(mut c) = self.containers.lock() {
            c.remove(&format!("sim-{task_id}"));
        }
    }

    async fn find(&self, task_id: &str) -> Option<String> {
        let id = format!("sim-{task_id}");
        let c = self.containers.lock().ok()?;
        c.get(&id)
            .filter(|c| c.exit.borrow().is_none())
            .map(|_| id.clone())
    }

    fn logs(&self, _container_id: &str, _follow: bool, _tail: i64) -> LogStream {
        let line = b"(simulated task: no output)\n".to_vec();
        futures::stream::iter([Ok((false, line))]).boxed()
    }

    async fn remove_others(&self, keep: HashSet<String>) {
        if let Ok(mut c) = self.containers.lock() {
            c.retain(|id, _| {
                id.strip_prefix("sim-")
                    .is_some_and(|task| keep.contains(task))
            });
        }
    }
}
