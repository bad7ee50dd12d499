//! Docker's `ServiceSpec` (JSON, as the CLI sends it) to Swarmlet's spec and
//! back. Fields Swarmlet models are converted; the rest of the client's
//! JSON is kept as [`super::residual`] in `docker_extra_json`, and the
//! fields Swarmlet cannot honour are refused or named in the answer's
//! `Warnings` (see [`unsupported`]).
//!
//! Wire-format care: Docker's Go types and the swagger that `bollard-stubs`
//! is generated from disagree on `ContainerSpec.Healthcheck` (the CLI sends
//! `Healthcheck`, the stubs read `HealthCheck`, and serde, unlike Go, is
//! case-sensitive), so the key is renamed on the way in and out.

use std::collections::HashMap;

use bollard_stubs::models as d;
use serde_json::Value;
use swarmlet_proto::objects::{
    FailureAction, FileReference, HealthConfig, Mount, Network, NetworkAliases, PortConfig,
    RestartCondition, RestartPolicy, ServiceMode, ServiceSpec, Ulimit, UpdateConfig, UpdateOrder,
};

use super::residual::{merge, residual};
use super::time::{ms_to_ns, ns_to_ms};
use crate::error::{ApiError, ApiResult};

/// Go's key for a container's health check.
const GO_HEALTH: &str = "Healthcheck";
/// The swagger's (and `bollard-stubs`') key.
const STUB_HEALTH: &str = "HealthCheck";

/// A client's spec, converted.
#[derive(Debug)]
pub struct Converted {
    /// What Swarmlet runs (with the unmodelled rest in `docker_extra_json`).
    pub spec: ServiceSpec,
    /// Fields ignored, for the answer's `Warnings`.
    pub warnings: Vec<String>,
}

/// Renames the health-check key of `TaskTemplate.ContainerSpec` from one
/// spelling to the other.
fn rename_health(v: &mut Value, from: &str, to: &str) {
    if let Some(cs) = v
        .pointer_mut("/TaskTemplate/ContainerSpec")
        .and_then(Value::as_object_mut)
    {
        if let Some(h) = cs.remove(from) {
            cs.insert(to.into(), h);
        }
    }
}

/// Converts a client's spec. `networks` resolve network references given
/// by ID to names (a reference that matches nothing is left for the
/// control API to refuse).
pub fn from_docker(raw: &Value, networks: &[Network]) -> ApiResult<Converted> {
    let mut canonical = raw.clone();
    rename_health(&mut canonical, STUB_HEALTH, GO_HEALTH);
    let mut stub = canonical.clone();
    rename_health(&mut stub, GO_HEALTH, STUB_HEALTH);
    let parsed: d::ServiceSpec = serde_json::from_value(stub)
        .map_err(|e| ApiError::bad_request(format!("invalid service spec: {e}")))?;
    let mut warnings = Vec::new();
    unsupported(&parsed, &mut warnings)?;
    let mut spec = to_proto(parsed, networks)?;
    let ours = to_docker_value(&spec, networks);
    let left = residual(&canonical, &ours);
    if left.as_object().is_some_and(|o| !o.is_empty()) {
        spec.docker_extra_json = left.to_string();
    }
    Ok(Converted { spec, warnings })
}

/// A spec as Docker shows it: Swarmlet's fields over the kept rest.
pub fn to_docker(spec: &ServiceSpec, networks: &[Network]) -> Value {
    let ours = to_docker_value(spec, networks);
    match serde_json::from_str::<Value>(&spec.docker_extra_json) {
        Ok(extra) if !spec.docker_extra_json.is_empty() => merge(ours, &extra),
        _ => ours,
    }
}

/// The typed Docker spec of a Swarmlet spec (what [`to_docker`] renders).
pub fn to_docker_spec(spec: &ServiceSpec, networks: &[Network]) -> d::ServiceSpec {
    let cs = d::TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(to_hash(&spec.container_labels)),
        command: some_vec(&spec.entrypoint),
        args: some_vec(&[spec.command.clone(), spec.args.clone()].concat()),
        hostname: some_str(&spec.hostname),
        env: some_vec(&spec.env),
        dir: some_str(&spec.workdir),
        user: some_str(&spec.user),
        groups: some_vec(&spec.groups),
        tty: spec.tty.then_some(true),
        read_only: spec.read_only.then_some(true),
        mounts: (!spec.mounts.is_empty()).then(|| spec.mounts.iter().map(mount_out).collect()),
        stop_signal: some_str(&spec.stop_signal),
        stop_grace_period: (spec.stop_grace_period_ms > 0)
            .then(|| ms_to_ns(spec.stop_grace_period_ms)),
        health_check: spec.health.as_ref().map(|h| d::HealthConfig {
            test: some_vec(&h.test),
            interval: nonzero_ns(h.interval_ms),
            timeout: nonzero_ns(h.timeout_ms),
            retries: (h.retries > 0).then_some(h.retries as i64),
            start_period: nonzero_ns(h.start_period_ms),
            start_interval: None,
        }),
        hosts: some_vec(&spec.hosts),
        dns_config: (!spec.dns_servers.is_empty()
            || !spec.dns_search.is_empty()
            || !spec.dns_options.is_empty())
        .then(|| d::TaskSpecContainerSpecDnsConfig {
            nameservers: some_vec(&spec.dns_servers),
            search: some_vec(&spec.dns_search),
            options: some_vec(&spec.dns_options),
        }),
        secrets: (!spec.secrets.is_empty()).then(|| {
            spec.secrets
                .iter()
                .map(|r| d::TaskSpecContainerSpecSecrets {
                    file: Some(d::TaskSpecContainerSpecFile {
                        name: Some(
                            r.target
                                .strip_prefix("/run/secrets/")
                                .unwrap_or(&r.target)
                                .to_string(),
                        ),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(0o444),
                    }),
                    secret_id: some_str(&r.id),
                    secret_name: some_str(&r.name),
                })
                .collect()
        }),
        configs: (!spec.configs.is_empty()).then(|| {
            spec.configs
                .iter()
                .map(|r| d::TaskSpecContainerSpecConfigs {
                    file: Some(d::TaskSpecContainerSpecFile1 {
                        name: Some(r.target.clone()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(0o444),
                    }),
                    runtime: None,
                    config_id: some_str(&r.id),
                    config_name: some_str(&r.name),
                })
                .collect()
        }),
        init: spec.init.then_some(true),
        sysctls: (!spec.sysctls.is_empty()).then(|| to_hash(&spec.sysctls)),
        capability_add: some_vec(&spec.cap_add),
        capability_drop: some_vec(&spec.cap_drop),
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|u| d::ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        ..Default::default()
    };
    let limits = (spec.limit_nano_cpus > 0 || spec.limit_memory_bytes > 0).then(|| d::Limit {
        nano_cpus: positive(spec.limit_nano_cpus),
        memory_bytes: positive(spec.limit_memory_bytes),
        pids: None,
    });
    let reservations =
        (spec.reserve_nano_cpus > 0 || spec.reserve_memory_bytes > 0).then(|| d::ResourceObject {
            nano_cpus: positive(spec.reserve_nano_cpus),
            memory_bytes: positive(spec.reserve_memory_bytes),
            generic_resources: None,
        });
    let placement = (!spec.constraints.is_empty()
        || !spec.placement_spread.is_empty()
        || spec.max_replicas_per_node > 0)
        .then(|| d::TaskSpecPlacement {
            constraints: some_vec(&spec.constraints),
            preferences: (!spec.placement_spread.is_empty()).then(|| {
                spec.placement_spread
                    .iter()
                    .map(|p| d::TaskSpecPlacementPreferences {
                        spread: Some(d::TaskSpecPlacementSpread {
                            spread_descriptor: Some(
                                p.trim().strip_prefix("spread=").unwrap_or(p).to_string(),
                            ),
                        }),
                    })
                    .collect()
            }),
            max_replicas: (spec.max_replicas_per_node > 0)
                .then_some(spec.max_replicas_per_node as i64),
            platforms: None,
        });
    let task_networks = (!spec.networks.is_empty()).then(|| {
        spec.networks
            .iter()
            .map(|name| d::NetworkAttachmentConfig {
                target: Some(network_id(name, networks)),
                aliases: Some(
                    spec.network_aliases
                        .iter()
                        .filter(|a| &a.network == name)
                        .flat_map(|a| a.aliases.iter().cloned())
                        .collect::<Vec<_>>(),
                )
                .filter(|a| !a.is_empty()),
                driver_opts: None,
            })
            .collect()
    });
    let task = d::TaskSpec {
        container_spec: Some(cs),
        resources: (limits.is_some() || reservations.is_some()).then(|| d::TaskSpecResources {
            limits,
            reservations,
            ..Default::default()
        }),
        restart_policy: spec.restart.as_ref().map(|r| d::TaskSpecRestartPolicy {
            condition: Some(match r.condition() {
                RestartCondition::Any => d::TaskSpecRestartPolicyConditionEnum::ANY,
                RestartCondition::None => d::TaskSpecRestartPolicyConditionEnum::NONE,
                RestartCondition::OnFailure => d::TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            }),
            delay: Some(ms_to_ns(r.delay_ms)),
            max_attempts: Some(r.max_attempts as i64),
            window: nonzero_ns(r.window_ms),
        }),
        placement,
        force_update: (spec.force_update > 0).then_some(spec.force_update),
        networks: task_networks,
        log_driver: (!spec.log_driver.is_empty()).then(|| d::TaskSpecLogDriver {
            name: Some(spec.log_driver.clone()),
            options: (!spec.log_options.is_empty()).then(|| to_hash(&spec.log_options)),
        }),
        ..Default::default()
    };
    let mode = match spec.mode() {
        ServiceMode::Replicated => d::ServiceSpecMode {
            replicated: Some(d::ServiceSpecModeReplicated {
                replicas: Some(spec.replicas as i64),
            }),
            ..Default::default()
        },
        ServiceMode::Global => d::ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        ServiceMode::ReplicatedJob => d::ServiceSpecMode {
            replicated_job: Some(d::ServiceSpecModeReplicatedJob {
                max_concurrent: Some(if spec.max_concurrent > 0 {
                    spec.max_concurrent as i64
                } else {
                    spec.replicas as i64
                }),
                total_completions: Some(spec.replicas as i64),
            }),
            ..Default::default()
        },
        ServiceMode::GlobalJob => d::ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
    };
    d::ServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(to_hash(&spec.labels)),
        task_template: Some(task),
        mode: Some(mode),
        update_config: spec.update.as_ref().map(update_out),
        rollback_config: spec.rollback.as_ref().map(|u| {
            let x = update_out(u);
            d::ServiceSpecRollbackConfig {
                parallelism: x.parallelism,
                delay: x.delay,
                failure_action: Some(match u.failure_action() {
                    FailureAction::Continue => {
                        d::ServiceSpecRollbackConfigFailureActionEnum::CONTINUE
                    }
                    _ => d::ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
                }),
                monitor: x.monitor,
                max_failure_ratio: x.max_failure_ratio,
                order: Some(match u.order() {
                    UpdateOrder::StartFirst => d::ServiceSpecRollbackConfigOrderEnum::START_FIRST,
                    UpdateOrder::StopFirst => d::ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
                }),
            }
        }),
        networks: None,
        endpoint_spec: Some(d::EndpointSpec {
            mode: Some(if spec.endpoint_mode == "dnsrr" {
                d::EndpointSpecModeEnum::DNSRR
            } else {
                d::EndpointSpecModeEnum::VIP
            }),
            ports: (!spec.ports.is_empty()).then(|| spec.ports.iter().map(port_out).collect()),
        }),
    }
}

/// [`to_docker_spec`] as JSON in Go's key spelling, without the residual.
fn to_docker_value(spec: &ServiceSpec, networks: &[Network]) -> Value {
    let mut v = serde_json::to_value(to_docker_spec(spec, networks)).unwrap_or(Value::Null);
    rename_health(&mut v, STUB_HEALTH, GO_HEALTH);
    v
}

/// A published port as Docker shows it.
pub fn port_out(p: &PortConfig) -> d::EndpointPortConfig {
    d::EndpointPortConfig {
        name: None,
        protocol: Some(match p.protocol.as_str() {
            "udp" => d::EndpointPortConfigProtocolEnum::UDP,
            "sctp" => d::EndpointPortConfigProtocolEnum::SCTP,
            _ => d::EndpointPortConfigProtocolEnum::TCP,
        }),
        target_port: Some(p.target as i64),
        published_port: Some(p.published as i64),
        publish_mode: Some(if p.mode == "host" {
            d::EndpointPortConfigPublishModeEnum::HOST
        } else {
            d::EndpointPortConfigPublishModeEnum::INGRESS
        }),
    }
}

fn update_out(u: &UpdateConfig) -> d::ServiceSpecUpdateConfig {
    d::ServiceSpecUpdateConfig {
        parallelism: Some(u.parallelism as i64),
        delay: Some(ms_to_ns(u.delay_ms)),
        failure_action: Some(match u.failure_action() {
            FailureAction::Pause => d::ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            FailureAction::Continue => d::ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            FailureAction::Rollback => d::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor: nonzero_ns(u.monitor_ms),
        max_failure_ratio: Some(0.0),
        order: Some(match u.order() {
            UpdateOrder::StopFirst => d::ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => d::ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

fn mount_out(m: &Mount) -> d::Mount {
    let typ = match m.r#type.as_str() {
        "volume" => d::MountType::VOLUME,
        "tmpfs" => d::MountType::TMPFS,
        _ => d::MountType::BIND,
    };
    d::Mount {
        target: Some(m.target.clone()),
        source: some_str(&m.source),
        typ: Some(typ),
        read_only: m.read_only.then_some(true),
        bind_options: (!m.bind_propagation.is_empty()).then(|| d::MountBindOptions {
            propagation: serde_json::from_value(Value::String(m.bind_propagation.clone())).ok(),
            ..Default::default()
        }),
        volume_options: (m.r#type == "volume"
            && (m.volume_nocopy
                || !m.volume_labels.is_empty()
                || !m.volume_driver.is_empty()
                || !m.volume_options.is_empty()))
        .then(|| d::MountVolumeOptions {
            no_copy: m.volume_nocopy.then_some(true),
            labels: (!m.volume_labels.is_empty()).then(|| to_hash(&m.volume_labels)),
            driver_config: (!m.volume_driver.is_empty() || !m.volume_options.is_empty()).then(
                || d::MountVolumeOptionsDriverConfig {
                    name: some_str(&m.volume_driver),
                    options: (!m.volume_options.is_empty()).then(|| to_hash(&m.volume_options)),
                },
            ),
            subpath: None,
        }),
        tmpfs_options: (m.r#type == "tmpfs" && (m.tmpfs_size_bytes > 0 || m.tmpfs_mode > 0)).then(
            || d::MountTmpfsOptions {
                size_bytes: positive(m.tmpfs_size_bytes),
                mode: (m.tmpfs_mode > 0).then_some(m.tmpfs_mode as i64),
                options: None,
            },
        ),
        ..Default::default()
    }
}

/// Fields of a client's spec that Swarmlet cannot honour: refused when
/// ignoring them would run something other than asked, otherwise named in
/// `warnings`.
pub fn unsupported(spec: &d::ServiceSpec, warnings: &mut Vec<String>) -> ApiResult<()> {
    let Some(task) = &spec.task_template else {
        return Err(ApiError::bad_request(
            "invalid service spec: TaskTemplate.ContainerSpec is required",
        ));
    };
    if task.plugin_spec.is_some() {
        return Err(ApiError::bad_request(
            "plugin services (TaskTemplate.PluginSpec) are not supported by Swarmlet",
        ));
    }
    if task.network_attachment_spec.is_some() {
        return Err(ApiError::bad_request(
            "TaskTemplate.NetworkAttachmentSpec is not supported by Swarmlet",
        ));
    }
    let Some(cs) = &task.container_spec else {
        return Err(ApiError::bad_request(
            "invalid service spec: TaskTemplate.ContainerSpec is required",
        ));
    };
    if let Some(r) = &task.resources {
        if r.reservations
            .as_ref()
            .and_then(|x| x.generic_resources.as_ref())
            .is_some_and(|g| !g.is_empty())
        {
            return Err(ApiError::bad_request(
                "generic resources (Resources.Reservations.GenericResources) are not supported by Swarmlet",
            ));
        }
        if r.limits
            .as_ref()
            .and_then(|l| l.pids)
            .is_some_and(|p| p > 0)
        {
            warnings
                .push("Resources.Limits.Pids is not supported by Swarmlet and was ignored".into());
        }
        if r.swap_bytes.is_some() || r.memory_swappiness.is_some() {
            warnings.push(
                "Resources.SwapBytes and MemorySwappiness are not supported by Swarmlet and were ignored"
                    .into(),
            );
        }
    }
    for m in cs.mounts.iter().flatten() {
        if matches!(
            m.typ,
            Some(d::MountType::CLUSTER | d::MountType::NPIPE | d::MountType::IMAGE)
        ) {
            return Err(ApiError::bad_request(format!(
                "mount type {:?} is not supported by Swarmlet (bind, volume and tmpfs are)",
                m.typ.map(|t| t.to_string()).unwrap_or_default()
            )));
        }
    }
    let privileges_asked = cs.privileges.as_ref().is_some_and(|p| {
        serde_json::to_value(p).is_ok_and(|v| {
            v.as_object()
                .is_some_and(|o| o.values().any(|x| !x.is_null() && x != &Value::Bool(false)))
        })
    });
    if privileges_asked {
        warnings.push(
            "ContainerSpec.Privileges (credential spec, SELinux, AppArmor, seccomp) is not supported by Swarmlet and was ignored"
                .into(),
        );
    }
    if cs.oom_score_adj.is_some_and(|v| v != 0) {
        warnings
            .push("ContainerSpec.OomScoreAdj is not supported by Swarmlet and was ignored".into());
    }
    if cs.open_stdin == Some(true) {
        warnings
            .push("ContainerSpec.OpenStdin is not supported by Swarmlet and was ignored".into());
    }
    for (what, u) in [
        (
            "UpdateConfig",
            spec.update_config
                .as_ref()
                .and_then(|u| u.max_failure_ratio),
        ),
        (
            "RollbackConfig",
            spec.rollback_config
                .as_ref()
                .and_then(|u| u.max_failure_ratio),
        ),
    ] {
        if u.is_some_and(|r| r > 0.0) {
            warnings.push(format!(
                "{what}.MaxFailureRatio is not supported by Swarmlet: any failed task counts"
            ));
        }
    }
    Ok(())
}

/// The typed spec as Swarmlet's.
fn to_proto(spec: d::ServiceSpec, networks: &[Network]) -> ApiResult<ServiceSpec> {
    let task = spec.task_template.unwrap_or_default();
    let cs = task.container_spec.unwrap_or_default();
    let mut out = ServiceSpec {
        name: spec.name.unwrap_or_default(),
        labels: to_btree(spec.labels),
        image: cs.image.unwrap_or_default(),
        command: cs.args.unwrap_or_default(),
        entrypoint: cs.command.unwrap_or_default(),
        env: cs.env.unwrap_or_default(),
        hostname: cs.hostname.unwrap_or_default(),
        workdir: cs.dir.unwrap_or_default(),
        user: cs.user.unwrap_or_default(),
        groups: cs.groups.unwrap_or_default(),
        tty: cs.tty.unwrap_or(false),
        read_only: cs.read_only.unwrap_or(false),
        init: cs.init.unwrap_or(false),
        stop_signal: cs.stop_signal.unwrap_or_default(),
        stop_grace_period_ms: ns_to_ms(cs.stop_grace_period.unwrap_or(0)),
        hosts: cs.hosts.unwrap_or_default(),
        container_labels: to_btree(cs.labels),
        sysctls: to_btree(cs.sysctls),
        cap_add: cs.capability_add.unwrap_or_default(),
        cap_drop: cs.capability_drop.unwrap_or_default(),
        force_update: task.force_update.unwrap_or(0),
        ..Default::default()
    };
    if let Some(dns) = cs.dns_config {
        out.dns_servers = dns.nameservers.unwrap_or_default();
        out.dns_search = dns.search.unwrap_or_default();
        out.dns_options = dns.options.unwrap_or_default();
    }
    out.ulimits = cs
        .ulimits
        .unwrap_or_default()
        .into_iter()
        .map(|u| Ulimit {
            name: u.name.unwrap_or_default(),
            soft: u.soft.unwrap_or(0),
            hard: u.hard.unwrap_or(0),
        })
        .collect();
    out.health = cs.health_check.map(|h| HealthConfig {
        test: h.test.unwrap_or_default(),
        interval_ms: ns_to_ms(h.interval.unwrap_or(0)),
        timeout_ms: ns_to_ms(h.timeout.unwrap_or(0)),
        retries: h.retries.unwrap_or(0).max(0) as u64,
        start_period_ms: ns_to_ms(h.start_period.unwrap_or(0)),
    });
    out.mounts = cs
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(mount_in)
        .collect();
    out.secrets = cs
        .secrets
        .unwrap_or_default()
        .into_iter()
        .map(|s| FileReference {
            id: s.secret_id.unwrap_or_default(),
            name: s.secret_name.unwrap_or_default(),
            target: s.file.and_then(|f| f.name).unwrap_or_default(),
        })
        .collect();
    out.configs = cs
        .configs
        .unwrap_or_default()
        .into_iter()
        .map(|c| FileReference {
            id: c.config_id.unwrap_or_default(),
            name: c.config_name.unwrap_or_default(),
            // Docker reads a relative config target from the root.
            target: c
                .file
                .and_then(|f| f.name)
                .map(|t| {
                    if t.starts_with('/') {
                        t
                    } else {
                        format!("/{t}")
                    }
                })
                .unwrap_or_default(),
        })
        .collect();
    if let Some(r) = task.resources {
        if let Some(l) = r.limits {
            out.limit_nano_cpus = l.nano_cpus.unwrap_or(0);
            out.limit_memory_bytes = l.memory_bytes.unwrap_or(0);
        }
        if let Some(x) = r.reservations {
            out.reserve_nano_cpus = x.nano_cpus.unwrap_or(0);
            out.reserve_memory_bytes = x.memory_bytes.unwrap_or(0);
        }
    }
    if let Some(r) = task.restart_policy {
        let mut policy = RestartPolicy {
            delay_ms: ns_to_ms(r.delay.unwrap_or(5_000_000_000)),
            max_attempts: r.max_attempts.unwrap_or(0).max(0) as u64,
            window_ms: ns_to_ms(r.window.unwrap_or(0)),
            ..Default::default()
        };
        policy.set_condition(match r.condition {
            Some(d::TaskSpecRestartPolicyConditionEnum::NONE) => RestartCondition::None,
            Some(d::TaskSpecRestartPolicyConditionEnum::ON_FAILURE) => RestartCondition::OnFailure,
            _ => RestartCondition::Any,
        });
        out.restart = Some(policy);
    }
    if let Some(p) = task.placement {
        out.constraints = p.constraints.unwrap_or_default();
        out.placement_spread = p
            .preferences
            .unwrap_or_default()
            .into_iter()
            .filter_map(|x| x.spread.and_then(|s| s.spread_descriptor))
            .map(|s| format!("spread={s}"))
            .collect();
        out.max_replicas_per_node = p.max_replicas.unwrap_or(0).max(0) as u64;
    }
    if let Some(l) = task.log_driver {
        out.log_driver = l.name.unwrap_or_default();
        out.log_options = to_btree(l.options);
    }
    // Docker reads the task template's networks, and the deprecated
    // top-level list when that is empty.
    let attachments = match task.networks {
        Some(n) if !n.is_empty() => n,
        _ => spec.networks.unwrap_or_default(),
    };
    for a in attachments {
        let Some(target) = a.target else { continue };
        let name = network_name(&target, networks);
        let aliases = a.aliases.unwrap_or_default();
        if !aliases.is_empty() {
            out.network_aliases.push(NetworkAliases {
                network: name.clone(),
                aliases,
            });
        }
        out.networks.push(name);
    }
    let mode = spec.mode.unwrap_or_default();
    if let Some(r) = mode.replicated_job {
        out.set_mode(ServiceMode::ReplicatedJob);
        out.replicas = r.total_completions.unwrap_or(1).max(0) as u64;
        out.max_concurrent = r.max_concurrent.unwrap_or(0).max(0) as u64;
    } else if mode.global_job.is_some() {
        out.set_mode(ServiceMode::GlobalJob);
    } else if mode.global.is_some() {
        out.set_mode(ServiceMode::Global);
    } else {
        // Docker: a replicated service without a count runs one task.
        out.replicas = mode.replicated.and_then(|r| r.replicas).unwrap_or(1).max(0) as u64;
    }
    out.update = spec.update_config.map(|u| {
        let mut c = UpdateConfig {
            parallelism: u.parallelism.unwrap_or(1).max(0) as u64,
            delay_ms: ns_to_ms(u.delay.unwrap_or(0)),
            monitor_ms: ns_to_ms(u.monitor.unwrap_or(0)),
            ..Default::default()
        };
        c.set_failure_action(match u.failure_action {
            Some(d::ServiceSpecUpdateConfigFailureActionEnum::CONTINUE) => FailureAction::Continue,
            Some(d::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK) => FailureAction::Rollback,
            _ => FailureAction::Pause,
        });
        c.set_order(match u.order {
            Some(d::ServiceSpecUpdateConfigOrderEnum::START_FIRST) => UpdateOrder::StartFirst,
            _ => UpdateOrder::StopFirst,
        });
        c
    });
    out.rollback = spec.rollback_config.map(|u| {
        let mut c = UpdateConfig {
            parallelism: u.parallelism.unwrap_or(1).max(0) as u64,
            delay_ms: ns_to_ms(u.delay.unwrap_or(0)),
            monitor_ms: ns_to_ms(u.monitor.unwrap_or(0)),
            ..Default::default()
        };
        c.set_failure_action(match u.failure_action {
            Some(d::ServiceSpecRollbackConfigFailureActionEnum::CONTINUE) => {
                FailureAction::Continue
            }
            _ => FailureAction::Pause,
        });
        c.set_order(match u.order {
            Some(d::ServiceSpecRollbackConfigOrderEnum::START_FIRST) => UpdateOrder::StartFirst,
            _ => UpdateOrder::StopFirst,
        });
        c
    });
    if let Some(e) = spec.endpoint_spec {
        out.endpoint_mode = match e.mode {
            Some(d::EndpointSpecModeEnum::DNSRR) => "dnsrr".into(),
            _ => "vip".into(),
        };
        out.ports = e
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| PortConfig {
                published: p.published_port.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
                target: p.target_port.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
                protocol: p
                    .protocol
                    .map(|x| x.to_string())
                    .filter(|x| !x.is_empty())
                    .unwrap_or_else(|| "tcp".into()),
                mode: p
                    .publish_mode
                    .map(|x| x.to_string())
                    .filter(|x| !x.is_empty())
                    .unwrap_or_else(|| "ingress".into()),
            })
            .collect();
    }
    Ok(out)
}

fn mount_in(m: d::Mount) -> Mount {
    let mut out = Mount {
        r#type: m
            .typ
            .map(|t| t.to_string())
            .unwrap_or_else(|| "volume".into()),
        source: m.source.unwrap_or_default(),
        target: m.target.unwrap_or_default(),
        read_only: m.read_only.unwrap_or(false),
        ..Default::default()
    };
    if let Some(b) = m.bind_options {
        out.bind_propagation = b.propagation.map(|p| p.to_string()).unwrap_or_default();
    }
    if let Some(v) = m.volume_options {
        out.volume_nocopy = v.no_copy.unwrap_or(false);
        out.volume_labels = to_btree(v.labels);
        if let Some(dc) = v.driver_config {
            out.volume_driver = dc.name.unwrap_or_default();
            out.volume_options = to_btree(dc.options);
        }
    }
    if let Some(t) = m.tmpfs_options {
        out.tmpfs_size_bytes = t.size_bytes.unwrap_or(0);
        out.tmpfs_mode = t.mode.unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
    }
    out
}

/// A network reference (name, ID or ID prefix) as the name Swarmlet keeps.
fn network_name(reference: &str, networks: &[Network]) -> String {
    let name = |n: &Network| n.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    if let Some(n) = networks.iter().find(|n| name(n) == reference) {
        return name(n);
    }
    if let Some(n) = networks.iter().find(|n| n.id == reference) {
        return name(n);
    }
    let prefixed: Vec<_> = networks
        .iter()
        .filter(|n| n.id.starts_with(reference))
        .collect();
    match prefixed.as_slice() {
        [one] => name(one),
        _ => reference.to_string(),
    }
}

/// A network name as the ID Docker shows in specs (the name when unknown).
fn network_id(name: &str, networks: &[Network]) -> String {
    networks
        .iter()
        .find(|n| n.spec.as_ref().is_some_and(|s| s.name == name))
        .map(|n| n.id.clone())
        .unwrap_or_else(|| name.to_string())
}

fn some_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn some_str(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn positive(v: i64) -> Option<i64> {
    (v > 0).then_some(v)
}

fn nonzero_ns(ms: u64) -> Option<i64> {
    (ms > 0).then(|| ms_to_ns(ms))
}

fn to_hash<'a, I>(m: I) -> HashMap<String, String>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    m.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn to_btree<M>(m: Option<HashMap<String, String>>) -> M
where
    M: FromIterator<(String, String)>,
{
    m.unwrap_or_default().into_iter().collect()
}

#[cfg(test)]
mod tests;
