//! The Docker executor: one container per task through the Docker API
//! (bollard, over `--docker-host`).
//!
//! Containers are named `<service>.<slot or node>.<task id>` and labelled
//! with the node, service, task and slot, so that several `swarmd` sharing
//! one Docker daemon only ever touch their own. A task on networks gets a
//! second container first, its network sandbox (`<name>.sandbox`, the
//! [`crate::pause_image`] program on Docker's `none` network, holding the
//! hostname and DNS settings): the overlay data plane plugs the sandbox in,
//! then the task's container starts inside its namespace
//! (`container:<sandbox>`), so the task's process never sees a network
//! without its interfaces. A task without networks runs on `none`. A task is running
//! once its container runs and, with a health check, once it is healthy;
//! an unhealthy container fails the task. Docker errors become the task's
//! error, worded for the user (missing image, daemon down, bad settings).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures::StreamExt;
use std::sync::Mutex;
use swarmlet_common::task_name::container_name;
use swarmlet_proto::objects::Task;

use crate::executor::{ExecError, Executor, FileMount, LogStream, Sandbox};

pub mod container_config;

pub use container_config::labels;
use container_config::SANDBOX_ROLE;

/// dockerd 20.10 speaks API 1.41; newer daemons accept it too.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// Settings of the Docker executor.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// `unix:///var/run/docker.sock` or `tcp://host:port`.
    pub host: String,
    /// This node's ID (container labels, templates).
    pub node_id: String,
    /// This node's hostname (templates: `{{.Node.Hostname}}`).
    pub node_hostname: String,
    /// Pull an image that is not present locally (else reject the task).
    pub pull_missing: bool,
}

/// Runs tasks as Docker containers.
pub struct DockerExecutor {
    cfg: DockerConfig,
    client: Mutex<Option<Docker>>,
    /// The network sandbox of each task container that has one (also found
    /// by inspecting the container; this also knows it once the task's
    /// container is gone).
    sandboxes: Mutex<HashMap<String, String>>,
    /// The sandbox image's reference, once it is known to be present.
    pause_image: tokio::sync::Mutex<Option<String>>,
}

/// One of this node's containers.
struct Listed {
    task: String,
    id: String,
    sandbox: bool,
}

fn not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The server's message without bollard's wrapping.
fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

impl DockerExecutor {
    /// This node as task templates name it.
    fn node_names(&self) -> container_config::NodeNames<'_> {
        container_config::NodeNames {
            id: &self.cfg.node_id,
            hostname: &self.cfg.node_hostname,
        }
    }

    /// An executor for the daemon at `cfg.host` (connected on first use, so
    /// a daemon started later is found).
    pub fn new(cfg: DockerConfig) -> Self {
        DockerExecutor {
            cfg,
            client: Mutex::new(None),
            sandboxes: Mutex::new(HashMap::new()),
            pause_image: tokio::sync::Mutex::new(None),
        }
    }

    /// How long a liveness check of the engine may take.
    const PING_TIMEOUT: Duration = Duration::from_secs(2);

    fn unreachable(&self, why: &str) -> ExecError {
        ExecError::Runtime(format!(
            "cannot reach the Docker daemon at {}: {why}",
            self.cfg.host
        ))
    }

    async fn docker(&self) -> Result<Docker, ExecError> {
        self.connect()
    }

    /// The client, connecting on first use (connecting does no I/O).
    fn connect(&self) -> Result<Docker, ExecError> {
        let mut slot = self
            .client
            .lock()
            .map_err(|_| ExecError::Runtime("docker client lock poisoned".into()))?;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let host = self.cfg.host.as_str();
        let connected = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, &API_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(host, 120, &API_VERSION)
        } else {
            return Err(ExecError::Runtime(format!(
                "unsupported --docker-host {host:?}: expected unix:// or tcp://"
            )));
        };
        let d = connected.map_err(|e| match e {
            DockerError::SocketNotFoundError(_) => {
                self.unreachable("no socket (is dockerd running?)")
            }
            other => self.unreachable(&other.to_string()),
        })?;
        *slot = Some(d.clone());
        Ok(d)
    }

    /// Maps a failed call: a refused connection means the daemon is down.
    fn runtime(&self, e: DockerError) -> ExecError {
        match e {
            DockerError::HyperResponseError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError => self.unreachable(&e.to_string()),
            other => ExecError::Runtime(message(&other)),
        }
    }

    async fn ensure_image(&self, d: &Docker, image: &str) -> Result<(), ExecError> {
        match d.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(self.runtime(e)),
        }
        if !self.cfg.pull_missing {
            return Err(ExecError::Start(format!(
                "image {image} not found on this node (pulling is off; build or load it first)"
            )));
        }
        let mut pull = d.create_image(
            Some(CreateImageOptions {
                from_image: Some(image.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(step) = pull.next().await {
            if let Err(e) = step {
                return Err(ExecError::Start(format!(
                    "image {image} not found on this node and could not be pulled ({}); no registry may be reachable: build or load the image on every node",
                    message(&e)
                )));
            }
        }
        Ok(())
    }

    /// The sandbox image, imported on first use.
    async fn pause_image(&self, d: &Docker) -> Result<String, ExecError> {
        let mut known = self.pause_image.lock().await;
        if let Some(reference) = known.as_ref() {
            return Ok(reference.clone());
        }
        let reference = crate::pause_image::ensure(d)
            .await
            .map_err(ExecError::Runtime)?;
        *known = Some(reference.clone());
        Ok(reference)
    }

    /// Creates a container; a refusal of its settings rejects the task.
    async fn create(
        &self,
        d: &Docker,
        name: String,
        body: ContainerCreateBody,
    ) -> Result<String, ExecError> {
        let created = d
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await;
        match created {
            Ok(c) => Ok(c.id),
            Err(
                e @ DockerError::DockerResponseServerError {
                    status_code: 400..=499,
                    ..
                },
            ) => Err(ExecError::Start(message(&e))),
            Err(e) => Err(self.runtime(e)),
        }
    }

    /// The network sandbox of task container `container_id`, if it has one.
    async fn sandbox_of(&self, d: &Docker, container_id: &str) -> Option<String> {
        if let Some(id) = self.sandboxes.lock().ok()?.get(container_id) {
            return Some(id.clone());
        }
        let info = d
            .inspect_container(container_id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let mode = info.host_config?.network_mode?;
        let id = mode.strip_prefix("container:")?.to_string();
        self.sandboxes
            .lock()
            .ok()?
            .insert(container_id.to_string(), id.clone());
        Some(id)
    }

    /// Removes the network sandbox of task container `container_id`, if
    /// it has one, and forgets it.
    async fn remove_sandbox_of(&self, d: &Docker, container_id: &str) -> Result<(), ExecError> {
        let Some(sandbox) = self.sandbox_of(d, container_id).await else {
            return Ok(());
        };
        self.remove(d, &sandbox).await?;
        if let Ok(mut known) = self.sandboxes.lock() {
            known.remove(container_id);
        }
        Ok(())
    }

    /// Kills and removes a container (sandboxes hold no state worth a
    /// graceful stop).
    async fn remove(&self, d: &Docker, id: &str) -> Result<(), ExecError> {
        match d
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(self.runtime(e)),
        }
    }

    async fn health(&self, d: &Docker, id: &str) -> Result<Health, ExecError> {
        let info = d
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| {
                if not_found(&e) {
                    ExecError::NotFound(id.to_string())
                } else {
                    self.runtime(e)
                }
            })?;
        let state = info.state.unwrap_or_default();
        if state.running != Some(true) {
            return Ok(Health::Exited);
        }
        let health = state.health.unwrap_or_default();
        Ok(match health.status {
            Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => {
                let output = health
                    .log
                    .and_then(|l| l.last().and_then(|r| r.output.clone()))
                    .unwrap_or_default();
                Health::Unhealthy(output.trim().to_string())
            }
            Some(HealthStatusEnum::STARTING) => Health::Starting,
            _ => Health::NoCheck,
        })
    }

    async fn containers(
        &self,
        d: &Docker,
        extra: Option<(&str, &str)>,
        all: bool,
    ) -> Result<Vec<Listed>, ExecError> {
        let mut label = vec![format!("{}={}", labels::NODE, self.cfg.node_id)];
        if let Some((k, v)) = extra {
            label.push(format!("{k}={v}"));
        }
        let filters = HashMap::from([("label".to_string(), label)]);
        let list = d
            .list_containers(Some(ListContainersOptions {
                all,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.runtime(e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.as_ref()?;
                Some(Listed {
                    task: labels.get(labels::TASK)?.clone(),
                    sandbox: labels.get(labels::ROLE).map(String::as_str) == Some(SANDBOX_ROLE),
                    id: c.id?,
                })
            })
            .collect())
    }
}

/// Docker's stop timeout is whole seconds: a grace period is rounded up,
/// so that 500 ms still gives the process its SIGTERM before the SIGKILL.
fn grace_seconds(grace: Duration) -> i32 {
    let secs = grace
        .as_secs()
        .saturating_add(u64::from(grace.subsec_nanos() > 0));
    secs.min(i32::MAX as u64) as i32
}

enum Health {
    NoCheck,
    Starting,
    Healthy,
    Unhealthy(String),
    Exited,
}

impl Executor for DockerExecutor {
    async fn engine_error(&self) -> Option<String> {
        let d = match self.docker().await {
            Ok(d) => d,
            Err(e) => return Some(e.to_string()),
        };
        match tokio::time::timeout(Self::PING_TIMEOUT, d.ping()).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(self.runtime(e).to_string()),
            Err(_) => Some(self.unreachable("no answer within 2s").to_string()),
        }
    }

    async fn prepare(&self, task: &Task, files: &[FileMount]) -> Result<String, ExecError> {
        let d = self.docker().await?;
        let image = task
            .spec
            .as_ref()
            .map(|s| s.image.clone())
            .unwrap_or_default();
        self.ensure_image(&d, &image).await?;
        let name = container_name(task);
        if task.networks.is_empty() {
            return self
                .create(
                    &d,
                    name,
                    container_config::container_body(self.node_names(), task, files, None)?,
                )
                .await;
        }
        let pause = self.pause_image(&d).await?;
        let sandbox = self
            .create(
                &d,
                format!("{name}.sandbox"),
                container_config::sandbox_body(self.node_names(), task, &pause)?,
            )
            .await?;
        match self
            .create(
                &d,
                name,
                container_config::container_body(self.node_names(), task, files, Some(&sandbox))?,
            )
            .await
        {
            Ok(id) => {
                if let Ok(mut known) = self.sandboxes.lock() {
                    known.insert(id.clone(), sandbox);
                }
                Ok(id)
            }
            Err(e) => {
                let _ = self.remove(&d, &sandbox).await;
                Err(e)
            }
        }
    }

    async fn start_network(&self, container_id: &str) -> Result<Option<u32>, ExecError> {
        let d = self.docker().await?;
        let Some(sandbox) = self.sandbox_of(&d, container_id).await else {
            return Ok(None);
        };
        self.start(&sandbox).await?;
        Ok(self.sandbox(&sandbox).await.map(|s| s.pid))
    }

    async fn start(&self, container_id: &str) -> Result<(), ExecError> {
        let d = self.docker().await?;
        match d
            .start_container(container_id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e @ DockerError::DockerResponseServerError { .. }) => {
                Err(ExecError::Start(message(&e)))
            }
            Err(other) => Err(self.runtime(other)),
        }
    }

    async fn ready(&self, container_id: &str) -> Result<(), ExecError> {
        let d = self.docker().await?;
        loop {
            match self.health(&d, container_id).await? {
                Health::Starting => tokio::time::sleep(HEALTH_POLL).await,
                Health::Unhealthy(out) => return Err(ExecError::Unhealthy(out)),
                Health::NoCheck | Health::Healthy | Health::Exited => return Ok(()),
            }
        }
    }

    async fn sandbox(&self, container_id: &str) -> Option<Sandbox> {
        let d = self.docker().await.ok()?;
        let info = d
            .inspect_container(container_id, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let pid = info
            .state
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)?;
        let key = info
            .network_settings
            .and_then(|n| n.sandbox_key)
            .filter(|k| !k.is_empty() && std::path::Path::new(k).exists());
        Some(Sandbox {
            pid,
            path: key.unwrap_or_else(|| format!("/proc/{pid}/ns/net")),
        })
    }

    async fn wait(&self, container_id: &str) -> Result<i32, ExecError> {
        let d = self.docker().await?;
        let exited = async {
            let mut stream = d.wait_container(container_id, None::<WaitContainerOptions>);
            match stream.next().await {
                Some(Ok(r)) => Ok(r.status_code as i32),
                Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code as i32),
                Some(Err(e)) if not_found(&e) => Err(ExecError::NotFound(container_id.into())),
                Some(Err(e)) => Err(self.runtime(e)),
                None => Err(ExecError::NotFound(container_id.into())),
            }
        };
        let unhealthy = async {
            loop {
                tokio::time::sleep(HEALTH_POLL * 4).await;
                if let Ok(Health::Unhealthy(out)) = self.health(&d, container_id).await {
                    return ExecError::Unhealthy(out);
                }
            }
        };
        tokio::select! {
            r = exited => r,
            e = unhealthy => Err(e),
        }
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> Result<(), ExecError> {
        let d = self.docker().await?;
        // Known before the container is gone.
        let _ = self.sandbox_of(&d, container_id).await;
        let t = grace_seconds(grace);
        match d
            .stop_container(
                container_id,
                Some(StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(self.runtime(e)),
        }
        self.remove(&d, container_id).await?;
        // Its network sandbox goes with it.
        self.remove_sandbox_of(&d, container_id).await
    }

    async fn release_network(&self, container_id: &str) {
        let Ok(d) = self.docker().await else { return };
        let _ = self.remove_sandbox_of(&d, container_id).await;
    }

    async fn remove_task(&self, task_id: &str) {
        let Ok(d) = self.docker().await else { return };
        let Ok(list) = self
            .containers(&d, Some((labels::TASK, task_id)), true)
            .await
        else {
            return;
        };
        for c in list {
            if self.remove(&d, &c.id).await.is_ok() {
                if let Ok(mut known) = self.sandboxes.lock() {
                    known.remove(&c.id);
                }
            }
        }
    }

    async fn find(&self, task_id: &str) -> Option<String> {
        let d = self.docker().await.ok()?;
        self.containers(&d, Some((labels::TASK, task_id)), false)
            .await
            .ok()?
            .into_iter()
            .find(|c| !c.sandbox)
            .map(|c| c.id)
    }

    fn logs(&self, container_id: &str, follow: bool, tail: i64) -> LogStream {
        let d = match self.connect() {
            Ok(d) => d,
            Err(e) => return futures::stream::iter([Err(e)]).boxed(),
        };
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: if tail < 0 {
                "all".into()
            } else {
                tail.to_string()
            },
            ..Default::default()
        };
        d.logs(container_id, Some(options))
            .map(|chunk| match chunk {
                Ok(LogOutput::StdErr { message }) => Ok((true, message.to_vec())),
                Ok(
                    LogOutput::StdOut { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdIn { message },
                ) => Ok((false, message.to_vec())),
                Err(e) => Err(ExecError::Runtime(message(&e))),
            })
            .boxed()
    }

    async fn remove_others(&self, keep: HashSet<String>) {
        let Ok(d) = self.docker().await else { return };
        let Ok(list) = self.containers(&d, None, true).await else {
            return;
        };
        // Task containers first: a sandbox goes with its task's container,
        // and one left alone (its task's container removed) after them.
        let (sandboxes, tasks): (Vec<Listed>, Vec<Listed>) = list
            .into_iter()
            .filter(|c| !keep.contains(&c.task))
            .partition(|c| c.sandbox);
        for c in tasks.into_iter().chain(sandboxes) {
            tracing::info!(
                task = c.task,
                container = c.id,
                sandbox = c.sandbox,
                "removing the container of a task this node no longer has"
            );
            let _ = self.stop(&c.id, Duration::from_secs(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use container_config::tests::task;

    #[test]
    fn a_grace_period_rounds_up_to_whole_seconds() {
        assert_eq!(grace_seconds(Duration::ZERO), 0);
        assert_eq!(grace_seconds(Duration::from_millis(500)), 1);
        assert_eq!(grace_seconds(Duration::from_secs(10)), 10);
        assert_eq!(grace_seconds(Duration::from_millis(10_001)), 11);
        assert_eq!(grace_seconds(Duration::MAX), i32::MAX);
    }

    #[tokio::test]
    async fn daemon_down_is_a_clear_error() {
        let exec = DockerExecutor::new(DockerConfig {
            host: "unix:///nonexistent/docker.sock".into(),
            node_id: "node1".into(),
            node_hostname: "host1".into(),
            pull_missing: false,
        });
        let err = exec.prepare(&task(), &[]).await.expect_err("no daemon");
        assert!(
            err.to_string()
                .starts_with("cannot reach the Docker daemon at unix:///nonexistent/docker.sock"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_engine_that_is_down_is_named_with_its_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let exec = DockerExecutor::new(DockerConfig {
            host: host.clone(),
            node_id: "n1".into(),
            node_hostname: "h1".into(),
            pull_missing: false,
        });
        let err = exec.engine_error().await.expect("no engine there");
        assert!(
            err.contains(&format!("cannot reach the Docker daemon at {host}")),
            "{err}"
        );
        // A task's error names it the same way.
        let e = exec.prepare(&task(), &[]).await.expect_err("no engine");
        assert!(e.to_string().contains(&host), "{e}");
    }
}
