//! The Docker executor: one container per task through the Docker API
//! (bollard, over `--docker-host`).
//!
//! Containers are named `<service>.<slot or node>.<task id>` and labelled
//! with the node, service, task and slot, so that several `swarmd` sharing
//! one Docker daemon only ever touch their own. They start on Docker's
//! `none` network (the overlay data plane plugs them in). A task is running
//! once its container runs and, with a health check, once it is healthy;
//! an unhealthy container fails the task. Docker errors become the task's
//! error, worded for the user (missing image, daemon down, bad settings).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig, Mount, MountType,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures::StreamExt;
use std::sync::Mutex;
use swarmlet_proto::objects::Task;

use crate::executor::{ExecError, Executor, FileMount, LogStream, Sandbox};

/// Label keys on every container Swarmlet creates.
pub mod labels {
    /// The node that owns the container.
    pub const NODE: &str = "com.swarmlet.node.id";
    /// The service ID.
    pub const SERVICE: &str = "com.swarmlet.service.id";
    /// The service name.
    pub const SERVICE_NAME: &str = "com.swarmlet.service.name";
    /// The task ID.
    pub const TASK: &str = "com.swarmlet.task.id";
    /// The task's slot (0 for a global service).
    pub const SLOT: &str = "com.swarmlet.task.slot";
}

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
    /// This node's ID (container labels).
    pub node_id: String,
    /// Pull an image that is not present locally (else reject the task).
    pub pull_missing: bool,
}

/// Runs tasks as Docker containers.
pub struct DockerExecutor {
    cfg: DockerConfig,
    client: Mutex<Option<Docker>>,
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
    /// An executor for the daemon at `cfg.host` (connected on first use, so
    /// a daemon started later is found).
    pub fn new(cfg: DockerConfig) -> Self {
        DockerExecutor {
            cfg,
            client: Mutex::new(None),
        }
    }

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
            DockerError::HyperResponseError { .. } | DockerError::IOError { .. } => {
                self.unreachable(&e.to_string())
            }
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

    fn container_body(&self, task: &Task, files: &[FileMount]) -> ContainerCreateBody {
        let spec = task.spec.clone().unwrap_or_default();
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(labels::NODE.into(), self.cfg.node_id.clone());
        labels.insert(labels::SERVICE.into(), task.service_id.clone());
        labels.insert(labels::SERVICE_NAME.into(), task.service_name.clone());
        labels.insert(labels::TASK.into(), task.id.clone());
        labels.insert(labels::SLOT.into(), task.slot.to_string());
        let mut cmd = spec.command.clone();
        cmd.extend(spec.args.iter().cloned());
        let ms_to_ns = |ms: u64| (ms as i64).saturating_mul(1_000_000);
        let healthcheck = spec.health.as_ref().map(|h| HealthConfig {
            test: (!h.test.is_empty()).then(|| h.test.clone()),
            interval: (h.interval_ms > 0).then(|| ms_to_ns(h.interval_ms)),
            timeout: (h.timeout_ms > 0).then(|| ms_to_ns(h.timeout_ms)),
            retries: (h.retries > 0).then_some(h.retries as i64),
            start_period: (h.start_period_ms > 0).then(|| ms_to_ns(h.start_period_ms)),
            start_interval: None,
        });
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!cmd.is_empty()).then_some(cmd),
            env: Some(spec.env.clone()),
            labels: Some(labels),
            hostname: Some(task_name(task)),
            healthcheck,
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                nano_cpus: (spec.limit_nano_cpus > 0).then_some(spec.limit_nano_cpus),
                memory: (spec.limit_memory_bytes > 0).then_some(spec.limit_memory_bytes),
                memory_reservation: (spec.reserve_memory_bytes > 0)
                    .then_some(spec.reserve_memory_bytes),
                // The node's embedded DNS answers there, inside the
                // container's namespace (service discovery).
                dns: (!task.networks.is_empty()).then(|| vec![crate::dns::RESOLVER_IP.to_string()]),
                // A search domain of our own: a short name is looked up as
                // `<name>.swarmlet` first (answered here), never with the
                // hostname's domain (a task's hostname is its name, `web.1`).
                dns_search: (!task.networks.is_empty())
                    .then(|| vec![crate::dns::records::SEARCH_DOMAIN.to_string()]),
                // Secrets and configs: tmpfs files, read-only.
                mounts: (!files.is_empty()).then(|| {
                    files
                        .iter()
                        .map(|f| Mount {
                            target: Some(f.target.clone()),
                            source: Some(f.source.to_string_lossy().to_string()),
                            typ: Some(MountType::BIND),
                            read_only: Some(true),
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            }),
            ..Default::default()
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
    ) -> Result<Vec<(String, String)>, ExecError> {
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
                let task = c.labels.as_ref()?.get(labels::TASK)?.clone();
                Some((task, c.id?))
            })
            .collect())
    }
}

enum Health {
    NoCheck,
    Starting,
    Healthy,
    Unhealthy(String),
    Exited,
}

/// `<service>.<slot>` or `<service>.<node id>` (global services).
pub fn task_name(task: &Task) -> String {
    if task.attachment {
        return task
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
    }
    if task.slot > 0 {
        format!("{}.{}", task.service_name, task.slot)
    } else {
        format!("{}.{}", task.service_name, task.node_id)
    }
}

impl Executor for DockerExecutor {
    async fn prepare(&self, task: &Task, files: &[FileMount]) -> Result<String, ExecError> {
        let d = self.docker().await?;
        let image = task
            .spec
            .as_ref()
            .map(|s| s.image.clone())
            .unwrap_or_default();
        self.ensure_image(&d, &image).await?;
        // `swarmctl run --name N` names the container N, as `docker run`.
        let name = if task.attachment {
            task_name(task)
        } else {
            format!("{}.{}", task_name(task), task.id)
        };
        let created = d
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                self.container_body(task, files),
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

    async fn start(&self, container_id: &str) -> Result<(), ExecError> {
        let d = self.docker().await?;
        d.start_container(container_id, None::<StartContainerOptions>)
            .await
            .map_err(|e| match e {
                DockerError::DockerResponseServerError { .. } => ExecError::Start(message(&e)),
                other => self.runtime(other),
            })?;
        Ok(())
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
        let t = grace.as_secs().min(i32::MAX as u64) as i32;
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
        match d
            .remove_container(
                container_id,
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

    async fn find(&self, task_id: &str) -> Option<String> {
        let d = self.docker().await.ok()?;
        self.containers(&d, Some((labels::TASK, task_id)), false)
            .await
            .ok()?
            .into_iter()
            .map(|(_, id)| id)
            .next()
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
        for (task, id) in list {
            if !keep.contains(&task) {
                tracing::info!(
                    task,
                    container = id,
                    "removing the container of a task this node no longer has"
                );
                let _ = self.stop(&id, Duration::from_secs(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{HealthConfig as SpecHealth, ServiceSpec};

    fn task() -> Task {
        Task {
            id: "t1".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            slot: 2,
            spec: Some(ServiceSpec {
                image: "demo".into(),
                command: vec!["httpd".into(), "-f".into()],
                env: vec!["A=1".into()],
                limit_memory_bytes: 64 << 20,
                limit_nano_cpus: 500_000_000,
                health: Some(SpecHealth {
                    test: vec!["CMD-SHELL".into(), "true".into()],
                    interval_ms: 1000,
                    retries: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn container_settings_follow_the_spec() {
        let exec = DockerExecutor::new(DockerConfig {
            host: "unix:///nonexistent.sock".into(),
            node_id: "node1".into(),
            pull_missing: false,
        });
        let body = exec.container_body(&task(), &[]);
        assert_eq!(body.hostname.as_deref(), Some("web.2"));
        assert_eq!(body.cmd, Some(vec!["httpd".to_string(), "-f".to_string()]));
        let labels = body.labels.expect("labels");
        assert_eq!(labels.get(labels::NODE).map(String::as_str), Some("node1"));
        assert_eq!(labels.get(labels::TASK).map(String::as_str), Some("t1"));
        assert_eq!(labels.get(labels::SLOT).map(String::as_str), Some("2"));
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        let hc = body.healthcheck.expect("health");
        assert_eq!(hc.interval, Some(1_000_000_000));
        assert_eq!(hc.retries, Some(2));
    }

    #[tokio::test]
    async fn daemon_down_is_a_clear_error() {
        let exec = DockerExecutor::new(DockerConfig {
            host: "unix:///nonexistent/docker.sock".into(),
            node_id: "node1".into(),
            pull_missing: false,
        });
        let err = exec.prepare(&task(), &[]).await.expect_err("no daemon");
        assert!(
            err.to_string()
                .starts_with("cannot reach the Docker daemon at unix:///nonexistent/docker.sock"),
            "{err}"
        );
    }
}
