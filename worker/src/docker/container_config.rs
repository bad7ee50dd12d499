//! A task's containers as Docker creates them: the task's own container
//! (image, command, environment, limits, health check, secret and config
//! files) and its network sandbox, with the labels that tie both to this
//! node and task. Pure: the executor ([`super::DockerExecutor`]) sends
//! these bodies.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, Mount, MountType};
use swarmlet_common::task_name::task_name;
use swarmlet_proto::objects::Task;

use crate::executor::FileMount;

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
    /// On a network sandbox container: `sandbox` (task containers have
    /// no such label).
    pub const ROLE: &str = "com.swarmlet.role";
}

/// The value of [`labels::ROLE`] on a network sandbox.
pub(super) const SANDBOX_ROLE: &str = "sandbox";

/// The labels of a task's containers.
pub fn task_labels(node_id: &str, task: &Task) -> HashMap<String, String> {
    let spec_labels = task.spec.as_ref().map(|s| s.labels.clone());
    let mut labels: HashMap<String, String> = spec_labels.unwrap_or_default().into_iter().collect();
    labels.insert(labels::NODE.into(), node_id.to_string());
    labels.insert(labels::SERVICE.into(), task.service_id.clone());
    labels.insert(labels::SERVICE_NAME.into(), task.service_name.clone());
    labels.insert(labels::TASK.into(), task.id.clone());
    labels.insert(labels::SLOT.into(), task.slot.to_string());
    labels
}

/// The network sandbox of a task on networks: the pause program on
/// `none`, with the task's hostname and the node's DNS (the task's
/// container, joining it, takes both).
pub fn sandbox_body(node_id: &str, task: &Task, image: &str) -> ContainerCreateBody {
    let mut labels = task_labels(node_id, task);
    labels.insert(labels::ROLE.into(), SANDBOX_ROLE.into());
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(labels),
        hostname: Some(task_name(task)),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            // The node's embedded DNS answers there, inside the
            // namespace (service discovery).
            dns: Some(vec![crate::dns::RESOLVER_IP.to_string()]),
            // A search domain of our own: a short name is looked up as
            // `<name>.swarmlet` first (answered here), never with the
            // hostname's domain (a task's hostname is its name, `web.1`).
            dns_search: Some(vec![crate::dns::records::SEARCH_DOMAIN.to_string()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The task's own container; in the namespace of `sandbox` when it has
/// one (hostname and DNS then come from there), else on `none`.
pub fn container_body(
    node_id: &str,
    task: &Task,
    files: &[FileMount],
    sandbox: Option<&str>,
) -> ContainerCreateBody {
    let spec = task.spec.clone().unwrap_or_default();
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
    let network_mode = match sandbox {
        Some(id) => format!("container:{id}"),
        None => "none".into(),
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!cmd.is_empty()).then_some(cmd),
        env: Some(spec.env.clone()),
        labels: Some(task_labels(node_id, task)),
        hostname: sandbox.is_none().then(|| task_name(task)),
        healthcheck,
        host_config: Some(HostConfig {
            network_mode: Some(network_mode),
            nano_cpus: (spec.limit_nano_cpus > 0).then_some(spec.limit_nano_cpus),
            memory: (spec.limit_memory_bytes > 0).then_some(spec.limit_memory_bytes),
            memory_reservation: (spec.reserve_memory_bytes > 0)
                .then_some(spec.reserve_memory_bytes),
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
        let body = container_body("node1", &task(), &[], None);
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

    #[test]
    fn a_task_on_networks_joins_its_sandbox() {
        let sandbox = sandbox_body("node1", &task(), "swarmlet-pause:abc");
        assert_eq!(sandbox.image.as_deref(), Some("swarmlet-pause:abc"));
        assert_eq!(sandbox.hostname.as_deref(), Some("web.2"));
        let labels = sandbox.labels.expect("labels");
        assert_eq!(labels.get(labels::TASK).map(String::as_str), Some("t1"));
        assert_eq!(
            labels.get(labels::ROLE).map(String::as_str),
            Some("sandbox")
        );
        let host = sandbox.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.dns, Some(vec![crate::dns::RESOLVER_IP.to_string()]));

        let body = container_body("node1", &task(), &[], Some("sb1"));
        // Docker refuses a hostname or DNS settings with another
        // container's network: they come from the sandbox.
        assert_eq!(body.hostname, None);
        let labels = body.labels.expect("labels");
        assert_eq!(labels.get(labels::ROLE), None);
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("container:sb1"));
        assert_eq!(host.dns, None);
        assert_eq!(host.memory, Some(64 << 20));
    }
}
