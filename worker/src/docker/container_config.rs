//! A task's containers as Docker creates them: the task's own container
//! (image, command, environment, limits, health check, secret and config
//! files) and its network sandbox, with the labels that tie both to this
//! node and task. Pure: the executor ([`super::DockerExecutor`]) sends
//! these bodies.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountTmpfsOptions, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    ResourcesUlimits,
};
use swarmlet_common::task_name::{container_name, task_name};
use swarmlet_common::template::{expand, TaskContext};
use swarmlet_proto::objects::{Mount as SpecMount, Task};

use crate::executor::{ExecError, FileMount};

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
    /// On a named volume Swarmlet made for a task's mount: `true`.
    pub const VOLUME: &str = "com.swarmlet.volume";
}

/// The value of [`labels::ROLE`] on a network sandbox.
pub(super) const SANDBOX_ROLE: &str = "sandbox";

/// The node a task's containers are made on, as templates name it.
#[derive(Debug, Clone, Copy)]
pub struct NodeNames<'a> {
    /// Its ID (container labels, `{{.Node.ID}}`).
    pub id: &'a str,
    /// Its hostname (`{{.Node.Hostname}}`).
    pub hostname: &'a str,
}

/// The template values of `task` on `node`.
fn template_context(node: NodeNames<'_>, task: &Task) -> TaskContext {
    TaskContext {
        service_id: task.service_id.clone(),
        service_name: task.service_name.clone(),
        task_id: task.id.clone(),
        task_name: container_name(task),
        task_slot: task.slot.to_string(),
        node_id: node.id.to_string(),
        node_hostname: node.hostname.to_string(),
    }
}

/// A template of the spec filled in for this task; the managers checked it
/// parses, so a failure here is the task's rejection.
fn fill(template: &str, ctx: &TaskContext) -> Result<String, ExecError> {
    expand(template, ctx).map_err(|e| ExecError::Start(e.to_string()))
}

/// The labels of a task's containers: the service's container labels, then
/// Swarmlet's own (which win).
pub fn task_labels(node_id: &str, task: &Task) -> HashMap<String, String> {
    let spec = task.spec.as_ref();
    let mut labels: HashMap<String, String> = spec
        .map(|s| s.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(spec.map(|s| s.container_labels.clone()).unwrap_or_default());
    labels.insert(labels::NODE.into(), node_id.to_string());
    labels.insert(labels::SERVICE.into(), task.service_id.clone());
    labels.insert(labels::SERVICE_NAME.into(), task.service_name.clone());
    labels.insert(labels::TASK.into(), task.id.clone());
    labels.insert(labels::SLOT.into(), task.slot.to_string());
    labels
}

/// The task's hostname: the service's `--hostname` template filled in, or
/// the task's name.
fn hostname(task: &Task, ctx: &TaskContext) -> Result<String, ExecError> {
    match task.spec.as_ref().map(|s| s.hostname.as_str()) {
        Some(h) if !h.is_empty() => fill(h, ctx),
        _ => Ok(task_name(task)),
    }
}

/// `/etc/hosts` entries as Docker's `ExtraHosts` wants them (`HOST:IP`),
/// from the spec's `IP HOST [ALIAS…]`.
fn extra_hosts(entries: &[String]) -> Option<Vec<String>> {
    let out: Vec<String> = entries
        .iter()
        .flat_map(|e| {
            let mut words = e.split_whitespace();
            let ip = words.next().unwrap_or_default().to_string();
            words.map(move |h| format!("{h}:{ip}")).collect::<Vec<_>>()
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// The network sandbox of a task on networks: the pause program on
/// `none`, with the task's hostname, the node's DNS and the service's name
/// resolution settings (the task's container, joining it, takes them all:
/// Docker refuses them on a container in another's namespace).
pub fn sandbox_body(
    node: NodeNames<'_>,
    task: &Task,
    image: &str,
) -> Result<ContainerCreateBody, ExecError> {
    let ctx = template_context(node, task);
    let spec = task.spec.clone().unwrap_or_default();
    let mut labels = task_labels(node.id, task);
    labels.insert(labels::ROLE.into(), SANDBOX_ROLE.into());
    // A search domain of our own first: a short name is looked up as
    // `<name>.swarmlet` (answered here), never with the hostname's domain
    // (a task's hostname is its name, `web.1`).
    let mut search = vec![crate::dns::records::SEARCH_DOMAIN.to_string()];
    search.extend(spec.dns_search.iter().cloned());
    Ok(ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(labels),
        hostname: Some(hostname(task, &ctx)?),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            // The node's embedded DNS answers there, inside the namespace
            // (service discovery; other names go to the service's `--dns`
            // servers or the node's).
            dns: Some(vec![crate::dns::RESOLVER_IP.to_string()]),
            dns_search: Some(search),
            dns_options: (!spec.dns_options.is_empty()).then(|| spec.dns_options.clone()),
            extra_hosts: extra_hosts(&spec.hosts),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// One of the service's mounts as Docker's.
fn mount(m: &SpecMount, ctx: &TaskContext) -> Result<Mount, ExecError> {
    let typ = match m.r#type.as_str() {
        "bind" => MountType::BIND,
        "tmpfs" => MountType::TMPFS,
        _ => MountType::VOLUME,
    };
    let source = fill(&m.source, ctx)?;
    let volume_options = (typ == MountType::VOLUME).then(|| {
        // Named volumes are made on first use by the engine, labelled as
        // Swarmlet's, with the service's driver and options.
        let mut labels: HashMap<String, String> = m.volume_labels.clone().into_iter().collect();
        labels.insert(labels::VOLUME.into(), "true".into());
        MountVolumeOptions {
            no_copy: m.volume_nocopy.then_some(true),
            labels: Some(labels),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some(if m.volume_driver.is_empty() {
                    "local".into()
                } else {
                    m.volume_driver.clone()
                }),
                options: (!m.volume_options.is_empty())
                    .then(|| m.volume_options.clone().into_iter().collect()),
            }),
            ..Default::default()
        }
    });
    let tmpfs_options = (typ == MountType::TMPFS && (m.tmpfs_size_bytes > 0 || m.tmpfs_mode > 0))
        .then(|| MountTmpfsOptions {
            size_bytes: (m.tmpfs_size_bytes > 0).then_some(m.tmpfs_size_bytes),
            mode: (m.tmpfs_mode > 0).then_some(i64::from(m.tmpfs_mode)),
            ..Default::default()
        });
    let bind_options =
        (typ == MountType::BIND && !m.bind_propagation.is_empty()).then(|| MountBindOptions {
            propagation: m.bind_propagation.parse().ok(),
            ..Default::default()
        });
    Ok(Mount {
        target: Some(m.target.clone()),
        source: (!source.is_empty()).then_some(source),
        typ: Some(typ),
        read_only: m.read_only.then_some(true),
        volume_options,
        tmpfs_options,
        bind_options,
        ..Default::default()
    })
}

/// The task's own container; in the namespace of `sandbox` when it has
/// one (hostname and name resolution then come from there), else on `none`.
pub fn container_body(
    node: NodeNames<'_>,
    task: &Task,
    files: &[FileMount],
    sandbox: Option<&str>,
) -> Result<ContainerCreateBody, ExecError> {
    let ctx = template_context(node, task);
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
    let mut env = Vec::with_capacity(spec.env.len());
    for e in &spec.env {
        env.push(match e.split_once('=') {
            Some((k, v)) => format!("{k}={}", fill(v, &ctx)?),
            None => e.clone(),
        });
    }
    let mut mounts = Vec::with_capacity(spec.mounts.len() + files.len());
    for m in &spec.mounts {
        mounts.push(mount(m, &ctx)?);
    }
    // Secrets and configs: tmpfs files, read-only.
    mounts.extend(files.iter().map(|f| Mount {
        target: Some(f.target.clone()),
        source: Some(f.source.to_string_lossy().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        ..Default::default()
    }));
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let own_namespace = sandbox.is_none();
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!cmd.is_empty()).then_some(cmd),
        entrypoint: list(&spec.entrypoint),
        env: Some(env),
        labels: Some(task_labels(node.id, task)),
        hostname: own_namespace.then(|| hostname(task, &ctx)).transpose()?,
        user: (!spec.user.is_empty()).then(|| spec.user.clone()),
        working_dir: (!spec.workdir.is_empty()).then(|| spec.workdir.clone()),
        tty: spec.tty.then_some(true),
        stop_signal: (!spec.stop_signal.is_empty()).then(|| spec.stop_signal.clone()),
        healthcheck,
        host_config: Some(HostConfig {
            network_mode: Some(network_mode),
            nano_cpus: (spec.limit_nano_cpus > 0).then_some(spec.limit_nano_cpus),
            memory: (spec.limit_memory_bytes > 0).then_some(spec.limit_memory_bytes),
            memory_reservation: (spec.reserve_memory_bytes > 0)
                .then_some(spec.reserve_memory_bytes),
            mounts: (!mounts.is_empty()).then_some(mounts),
            group_add: list(&spec.groups),
            init: spec.init.then_some(true),
            readonly_rootfs: spec.read_only.then_some(true),
            cap_add: list(&spec.cap_add),
            cap_drop: list(&spec.cap_drop),
            sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone().into_iter().collect()),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            // Without a sandbox (no networks) the container resolves and
            // names hosts itself.
            extra_hosts: own_namespace.then(|| extra_hosts(&spec.hosts)).flatten(),
            log_config: (!spec.log_driver.is_empty()).then(|| HostConfigLogConfig {
                typ: Some(spec.log_driver.clone()),
                config: Some(spec.log_options.clone().into_iter().collect()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use swarmlet_proto::objects::{HealthConfig as SpecHealth, ServiceSpec};

    const NODE: NodeNames<'static> = NodeNames {
        id: "node1",
        hostname: "host1",
    };

    /// A task with a command, environment, limits and a health check
    /// (shared with the executor's tests).
    pub(crate) fn task() -> Task {
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
        let body = container_body(NODE, &task(), &[], None).expect("body");
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
        let sandbox = sandbox_body(NODE, &task(), "swarmlet-pause:abc").expect("body");
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

        let body = container_body(NODE, &task(), &[], Some("sb1")).expect("body");
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

    #[test]
    fn mounts_and_container_options_reach_the_container() {
        use swarmlet_proto::objects::Ulimit;
        let mut t = task();
        if let Some(spec) = t.spec.as_mut() {
            spec.mounts = vec![
                SpecMount {
                    r#type: "volume".into(),
                    source: "{{.Service.Name}}-data".into(),
                    target: "/data".into(),
                    volume_options: [("type".to_string(), "tmpfs".to_string())].into(),
                    ..Default::default()
                },
                SpecMount {
                    r#type: "bind".into(),
                    source: "/srv/{{.Node.Hostname}}".into(),
                    target: "/srv".into(),
                    read_only: true,
                    ..Default::default()
                },
                SpecMount {
                    r#type: "tmpfs".into(),
                    target: "/scratch".into(),
                    tmpfs_size_bytes: 1 << 20,
                    ..Default::default()
                },
            ];
            spec.user = "1000:1000".into();
            spec.groups = vec!["audio".into()];
            spec.workdir = "/app".into();
            spec.entrypoint = vec!["/bin/sh".into(), "-c".into()];
            spec.hostname = "{{.Service.Name}}-{{.Task.Slot}}".into();
            spec.env.push("WHERE={{.Node.ID}}".into());
            spec.init = true;
            spec.tty = true;
            spec.read_only = true;
            spec.cap_add = vec!["CAP_NET_ADMIN".into()];
            spec.cap_drop = vec!["CAP_MKNOD".into()];
            spec.sysctls = [("net.core.somaxconn".to_string(), "1024".to_string())].into();
            spec.ulimits = vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048,
            }];
            spec.stop_signal = "SIGUSR1".into();
            spec.hosts = vec!["10.0.0.5 db db.local".into()];
            spec.container_labels = [("team".to_string(), "a".to_string())].into();
            spec.log_driver = "json-file".into();
            spec.log_options = [("max-size".to_string(), "1m".to_string())].into();
        }
        let body = container_body(NODE, &t, &[], None).expect("body");
        assert_eq!(
            body.hostname.as_deref(),
            Some("web-2"),
            "template filled in"
        );
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.working_dir.as_deref(), Some("/app"));
        assert_eq!(
            body.entrypoint,
            Some(vec!["/bin/sh".to_string(), "-c".to_string()])
        );
        assert_eq!(body.tty, Some(true));
        assert_eq!(body.stop_signal.as_deref(), Some("SIGUSR1"));
        assert!(body
            .env
            .as_ref()
            .is_some_and(|e| e.contains(&"WHERE=node1".to_string())));
        let labels = body.labels.clone().expect("labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        let host = body.host_config.expect("host config");
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[0].source.as_deref(), Some("web-data"));
        let vol = mounts[0].volume_options.clone().expect("volume options");
        assert_eq!(
            vol.labels
                .and_then(|l| l.get(labels::VOLUME).cloned())
                .as_deref(),
            Some("true"),
            "labelled as Swarmlet's"
        );
        let driver = vol.driver_config.expect("driver");
        assert_eq!(driver.name.as_deref(), Some("local"));
        assert_eq!(
            driver
                .options
                .and_then(|o| o.get("type").cloned())
                .as_deref(),
            Some("tmpfs")
        );
        assert_eq!(mounts[1].source.as_deref(), Some("/srv/host1"));
        assert_eq!(mounts[1].read_only, Some(true));
        assert_eq!(mounts[2].typ, Some(MountType::TMPFS));
        assert_eq!(
            mounts[2].tmpfs_options.clone().and_then(|o| o.size_bytes),
            Some(1 << 20)
        );
        assert_eq!(host.group_add, Some(vec!["audio".to_string()]));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_add, Some(vec!["CAP_NET_ADMIN".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["CAP_MKNOD".to_string()]));
        assert_eq!(
            host.sysctls
                .and_then(|s| s.get("net.core.somaxconn").cloned())
                .as_deref(),
            Some("1024")
        );
        let ulimit = host.ulimits.expect("ulimits");
        assert_eq!((ulimit[0].soft, ulimit[0].hard), (Some(1024), Some(2048)));
        assert_eq!(
            host.extra_hosts,
            Some(vec![
                "db:10.0.0.5".to_string(),
                "db.local:10.0.0.5".to_string()
            ])
        );
        let log = host.log_config.expect("log config");
        assert_eq!(log.typ.as_deref(), Some("json-file"));

        // On networks, the sandbox holds the hostname and the hosts.
        let sandbox = sandbox_body(NODE, &t, "pause").expect("sandbox");
        assert_eq!(sandbox.hostname.as_deref(), Some("web-2"));
        let sb_host = sandbox.host_config.expect("host config");
        assert!(sb_host.extra_hosts.is_some_and(|h| h.len() == 2));
        let inner = container_body(NODE, &t, &[], Some("sb")).expect("body");
        assert_eq!(inner.hostname, None);
        assert_eq!(inner.host_config.and_then(|h| h.extra_hosts), None);
    }
}
