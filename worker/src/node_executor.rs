//! The executor a daemon was started with (`swarmd --executor`): Docker or
//! simulated, behind the one [`Executor`] interface.

use std::collections::HashSet;
use std::time::Duration;

use swarmlet_proto::objects::Task;

use crate::docker::DockerExecutor;
use crate::executor::{ExecError, Executor, FileMount, LogStream, Sandbox};
use crate::sim::SimExecutor;

/// The executor a daemon was started with.
// One per node: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum NodeExecutor {
    /// Simulated containers.
    Sim(SimExecutor),
    /// Docker containers.
    Docker(DockerExecutor),
}

impl Executor for NodeExecutor {
    fn mounts_files(&self) -> bool {
        matches!(self, NodeExecutor::Docker(_))
    }

    async fn prepare(&self, task: &Task, files: &[FileMount]) -> Result<String, ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.prepare(task, files).await,
            NodeExecutor::Docker(d) => d.prepare(task, files).await,
        }
    }

    async fn engine_error(&self) -> Option<String> {
        match self {
            NodeExecutor::Sim(_) => None,
            NodeExecutor::Docker(d) => d.engine_error().await,
        }
    }

    async fn start_network(&self, container_id: &str) -> Result<Option<u32>, ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.start_network(container_id).await,
            NodeExecutor::Docker(d) => d.start_network(container_id).await,
        }
    }

    async fn start(&self, container_id: &str) -> Result<(), ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.start(container_id).await,
            NodeExecutor::Docker(d) => d.start(container_id).await,
        }
    }

    async fn ready(&self, container_id: &str) -> Result<(), ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.ready(container_id).await,
            NodeExecutor::Docker(d) => d.ready(container_id).await,
        }
    }

    async fn sandbox(&self, container_id: &str) -> Option<Sandbox> {
        match self {
            NodeExecutor::Sim(s) => s.sandbox(container_id).await,
            NodeExecutor::Docker(d) => d.sandbox(container_id).await,
        }
    }

    async fn wait(&self, container_id: &str) -> Result<i32, ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.wait(container_id).await,
            NodeExecutor::Docker(d) => d.wait(container_id).await,
        }
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<(), ExecError> {
        match self {
            NodeExecutor::Sim(s) => s.stop(container_id, grace).await,
            NodeExecutor::Docker(d) => d.stop(container_id, grace).await,
        }
    }

    async fn release_network(&self, container_id: &str) {
        match self {
            NodeExecutor::Sim(s) => s.release_network(container_id).await,
            NodeExecutor::Docker(d) => d.release_network(container_id).await,
        }
    }

    async fn remove_task(&self, task_id: &str) {
        match self {
            NodeExecutor::Sim(s) => s.remove_task(task_id).await,
            NodeExecutor::Docker(d) => d.remove_task(task_id).await,
        }
    }

    async fn find(&self, task_id: &str) -> Option<String> {
        match self {
            NodeExecutor::Sim(s) => s.find(task_id).await,
            NodeExecutor::Docker(d) => d.find(task_id).await,
        }
    }

    async fn remove_others(&self, keep: HashSet<String>) {
        match self {
            NodeExecutor::Sim(s) => s.remove_others(keep).await,
            NodeExecutor::Docker(d) => d.remove_others(keep).await,
        }
    }

    fn logs(&self, container_id: &str, follow: bool, tail: i64) -> LogStream {
        match self {
            NodeExecutor::Sim(s) => s.logs(container_id, follow, tail),
            NodeExecutor::Docker(d) => d.logs(container_id, follow, tail),
        }
    }
}
