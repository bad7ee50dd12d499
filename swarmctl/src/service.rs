//! `swarmctl service create|ls|inspect|ps|update|scale|rollback|rm`: calls and output; the options live in [`crate::service_spec`], progress in [`crate::progress`].

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde_json::json;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{
    CreateServiceRequest, ListTasksRequest, ServiceInfo, ServiceLogsRequest, ServiceRef,
    UpdateServiceRequest,
};
use swarmlet_proto::objects::{ServiceMode, ServiceSpec, UpdateState};
use tonic::transport::Channel;

use crate::globals::{Format, Globals};
use crate::output::{connect, json as print_json, status, table, time};
use crate::progress::converge;
use crate::service_spec::{apply_update, spec_from, CreateArgs, UpdateArgs};
use crate::task::print_task_list;

/// `swarmctl service …`
#[derive(Subcommand, Debug)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ServiceCmd {
    /// Create a service.
    Create(CreateArgs),
    /// List services.
    Ls,
    /// Show a service.
    Inspect {
        /// Service name or ID.
        service: String,
    },
    /// List a service's tasks.
    Ps {
        /// Service name or ID.
        service: String,
    },
    /// Show the output of a service's tasks, from every node.
    Logs {
        /// Keep streaming new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each task ("all" for everything).
        #[arg(long, default_value = "all")]
        tail: String,
        /// Service name or ID.
        service: String,
    },
    /// Change a service.
    Update(UpdateArgs),
    /// Set replica counts: SERVICE=N...
    Scale {
        /// SERVICE=N pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
        /// Return at once instead of waiting for convergence.
        #[arg(short, long)]
        detach: bool,
    },
    /// Go back to the previous spec.
    Rollback {
        /// Service name or ID.
        service: String,
        /// Return at once instead of waiting for convergence.
        #[arg(short, long)]
        detach: bool,
    },
    /// Remove services.
    Rm {
        /// Services.
        #[arg(required = true)]
        services: Vec<String>,
    },
}

fn mode_name(spec: &ServiceSpec) -> &'static str {
    swarmlet_common::names::mode_name(spec.mode())
}

/// `service ls`'s REPLICAS, as Docker shows it: running/desired, with the
/// per-node limit when there is one.
fn replicas_column(i: &ServiceInfo) -> String {
    let spec = i.spec.clone().unwrap_or_default();
    let counts = format!("{}/{}", i.replicas_running, i.replicas_desired);
    if matches!(
        spec.mode(),
        ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
    ) {
        // As Docker: running/concurrency, then the completions.
        let concurrency = match spec.max_concurrent {
            0 => i.replicas_desired,
            m => m.min(i.replicas_desired),
        };
        return format!(
            "{}/{} ({}/{} completed)",
            i.replicas_running, concurrency, i.jobs_completed, i.replicas_desired
        );
    }
    if spec.mode() == ServiceMode::Replicated && spec.max_replicas_per_node > 0 {
        format!("{counts} (max {} per node)", spec.max_replicas_per_node)
    } else {
        counts
    }
}

fn service_json(i: &ServiceInfo) -> serde_json::Value {
    let spec = i.spec.clone().unwrap_or_default();
    json!({
        "id": i.id,
        "name": spec.name,
        "mode": mode_name(&spec),
        "replicas_running": i.replicas_running,
        "replicas_desired": i.replicas_desired,
        "jobs_completed": i.jobs_completed,
        "jobs_failed": i.jobs_failed,
        "image": spec.image,
        "ports": ports_json(i),
    })
}

/// The published ports as allocated (dynamic ones resolved).
fn ports_json(i: &ServiceInfo) -> serde_json::Value {
    let ports = match &i.endpoint {
        Some(e) => e.ports.clone(),
        None => i.spec.clone().unwrap_or_default().ports,
    };
    serde_json::Value::Array(
        ports
            .iter()
            .map(|p| {
                json!({
                    "published": p.published,
                    "target": p.target,
                    "protocol": p.protocol,
                    "mode": p.mode,
                })
            })
            .collect(),
    )
}

fn service_inspect_json(i: &ServiceInfo) -> serde_json::Value {
    let spec = i.spec.clone().unwrap_or_default();
    let mut v = service_json(i);
    v["spec"] = json!({
        "name": spec.name,
        "image": spec.image,
        "command": spec.command,
        "env": spec.env,
        "labels": spec.labels,
        "mode": mode_name(&spec),
        "replicas": spec.replicas,
        "max_concurrent": spec.max_concurrent,
        "constraints": spec.constraints,
        "max_replicas_per_node": spec.max_replicas_per_node,
        "reserve_nano_cpus": spec.reserve_nano_cpus,
        "reserve_memory_bytes": spec.reserve_memory_bytes,
        "limit_nano_cpus": spec.limit_nano_cpus,
        "limit_memory_bytes": spec.limit_memory_bytes,
        "placement_preferences": spec.placement_spread,
        "networks": spec.networks,
        "network_aliases": spec.network_aliases.iter().map(|a| json!({
            "network": a.network, "aliases": a.aliases,
        })).collect::<Vec<_>>(),
        "secrets": spec.secrets.iter().map(|r| json!({
            "id": r.id, "name": r.name, "target": r.target,
        })).collect::<Vec<_>>(),
        "configs": spec.configs.iter().map(|r| json!({
            "id": r.id, "name": r.name, "target": r.target,
        })).collect::<Vec<_>>(),
        "endpoint_mode": if spec.endpoint_mode.is_empty() { "vip" } else { spec.endpoint_mode.as_str() },
        "ports": spec.ports.iter().map(|p| json!({
            "published": p.published, "target": p.target, "protocol": p.protocol, "mode": p.mode,
        })).collect::<Vec<_>>(),
    });
    if let Some(h) = &spec.health {
        v["spec"]["healthcheck"] = json!({
            "test": h.test,
            "interval_ms": h.interval_ms,
            "timeout_ms": h.timeout_ms,
            "retries": h.retries,
            "start_period_ms": h.start_period_ms,
        });
    }
    v["version"] = json!(i.spec_version);
    v["endpoint"] = json!({
        "mode": if spec.endpoint_mode.is_empty() { "vip" } else { spec.endpoint_mode.as_str() },
        "ports": ports_json(i),
        "virtual_ips": i.endpoint.iter().flat_map(|e| e.vips.iter()).map(|a| json!({
            "network": a.network_name,
            "addr": a.address,
        })).collect::<Vec<_>>(),
    });
    let restart = spec.restart.unwrap_or_default();
    let update = spec.update.unwrap_or_default();
    v["spec"]["restart_policy"] = json!({
        "condition": format!("{:?}", restart.condition()).to_lowercase().replace("onfailure", "on-failure"),
        "delay_ms": restart.delay_ms,
        "max_attempts": restart.max_attempts,
        "window_ms": restart.window_ms,
    });
    v["spec"]["update_config"] = json!({
        "parallelism": update.parallelism,
        "delay_ms": update.delay_ms,
        "failure_action": format!("{:?}", update.failure_action()).to_lowercase(),
        "monitor_ms": update.monitor_ms,
        "order": if update.order() == swarmlet_proto::objects::UpdateOrder::StartFirst { "start-first" } else { "stop-first" },
    });
    if let Some(r) = &spec.rollback {
        v["spec"]["rollback_config"] = json!({
            "parallelism": r.parallelism,
            "delay_ms": r.delay_ms,
            "failure_action": format!("{:?}", r.failure_action()).to_lowercase(),
            "monitor_ms": r.monitor_ms,
            "order": if r.order() == swarmlet_proto::objects::UpdateOrder::StartFirst { "start-first" } else { "stop-first" },
        });
    }
    v["spec"]["stop_grace_period_ms"] = json!(spec.stop_grace_period_ms);
    v["spec"]["container"] = container_json(&spec);
    if let Some(u) = &i.update_status {
        let state = match u.state() {
            UpdateState::None => "",
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        };
        v["update_status"] = json!({"state": state, "message": u.message});
    }
    v["created_at"] = json!(time(i.created_at_ms));
    v["updated_at"] = json!(time(i.updated_at_ms));
    v
}

/// The container options of a spec (`service inspect`), keys as the
/// flags name them; unset ones are left out.
fn container_json(spec: &swarmlet_proto::objects::ServiceSpec) -> serde_json::Value {
    let mounts: Vec<serde_json::Value> = spec
        .mounts
        .iter()
        .map(|m| {
            let mut o = json!({"type": m.r#type, "source": m.source, "target": m.target, "readonly": m.read_only});
            if m.r#type == "volume" {
                o["volume_driver"] = json!(if m.volume_driver.is_empty() { "local" } else { m.volume_driver.as_str() });
                o["volume_options"] = json!(m.volume_options);
                o["volume_labels"] = json!(m.volume_labels);
                o["volume_nocopy"] = json!(m.volume_nocopy);
            }
            if m.r#type == "tmpfs" {
                o["tmpfs_size_bytes"] = json!(m.tmpfs_size_bytes);
                o["tmpfs_mode"] = json!(format!("{:o}", m.tmpfs_mode));
            }
            if !m.bind_propagation.is_empty() {
                o["bind_propagation"] = json!(m.bind_propagation);
            }
            o
        })
        .collect();
    let mut c = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value, set: bool| {
        if set {
            c.insert(k.to_string(), v);
        }
    };
    put("mounts", json!(mounts), !mounts.is_empty());
    put("user", json!(spec.user), !spec.user.is_empty());
    put("groups", json!(spec.groups), !spec.groups.is_empty());
    put("workdir", json!(spec.workdir), !spec.workdir.is_empty());
    put(
        "entrypoint",
        json!(spec.entrypoint),
        !spec.entrypoint.is_empty(),
    );
    put("hostname", json!(spec.hostname), !spec.hostname.is_empty());
    put("init", json!(true), spec.init);
    put("tty", json!(true), spec.tty);
    put("read_only", json!(true), spec.read_only);
    put("cap_add", json!(spec.cap_add), !spec.cap_add.is_empty());
    put("cap_drop", json!(spec.cap_drop), !spec.cap_drop.is_empty());
    put("sysctls", json!(spec.sysctls), !spec.sysctls.is_empty());
    let ulimits: Vec<_> = spec
        .ulimits
        .iter()
        .map(|u| json!({"name": u.name, "soft": u.soft, "hard": u.hard}))
        .collect();
    put("ulimits", json!(ulimits), !ulimits.is_empty());
    put(
        "stop_signal",
        json!(spec.stop_signal),
        !spec.stop_signal.is_empty(),
    );
    put("dns", json!(spec.dns_servers), !spec.dns_servers.is_empty());
    put(
        "dns_search",
        json!(spec.dns_search),
        !spec.dns_search.is_empty(),
    );
    put(
        "dns_options",
        json!(spec.dns_options),
        !spec.dns_options.is_empty(),
    );
    put("hosts", json!(spec.hosts), !spec.hosts.is_empty());
    put(
        "container_labels",
        json!(spec.container_labels),
        !spec.container_labels.is_empty(),
    );
    put(
        "log_driver",
        json!(spec.log_driver),
        !spec.log_driver.is_empty(),
    );
    put(
        "log_options",
        json!(spec.log_options),
        !spec.log_options.is_empty(),
    );
    serde_json::Value::Object(c)
}

async fn update_with(
    client: &mut ControlClient<Channel>,
    service: &str,
    edit: impl Fn(&mut ServiceSpec) -> anyhow::Result<()>,
) -> anyhow::Result<ServiceInfo> {
    let info = client
        .inspect_service(ServiceRef {
            service: service.into(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut spec = info.spec.clone().unwrap_or_default();
    edit(&mut spec)?;
    Ok(client
        .update_service(UpdateServiceRequest {
            service: info.id.clone(),
            spec: Some(spec),
            expect_spec_version: info.spec_version,
            rollback: false,
        })
        .await
        .map_err(status)?
        .into_inner())
}

/// Runs a `service` subcommand.
pub async fn run(cli: &Globals, cmd: &ServiceCmd) -> anyhow::Result<()> {
    let mut client = ControlClient::new(connect(&cli.host)?).with_limits();
    match cmd {
        ServiceCmd::Create(args) => {
            let spec = spec_from(args)?;
            let info = client
                .create_service(CreateServiceRequest { spec: Some(spec) })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", info.id);
            if !args.detach {
                converge(&mut client, &info.id, false).await?;
            }
        }
        ServiceCmd::Ls => {
            let list = client
                .list_services(Empty {})
                .await
                .map_err(status)?
                .into_inner()
                .services;
            if cli.format == Format::Json {
                print_json(&serde_json::Value::Array(
                    list.iter().map(service_json).collect(),
                ));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|i| {
                        let spec = i.spec.clone().unwrap_or_default();
                        vec![
                            i.id.clone(),
                            spec.name.clone(),
                            mode_name(&spec).into(),
                            replicas_column(i),
                            spec.image.clone(),
                            i.endpoint
                                .iter()
                                .flat_map(|e| e.ports.iter())
                                .map(|p| format!("*:{}->{}/{}", p.published, p.target, p.protocol))
                                .collect::<Vec<_>>()
                                .join(", "),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], &rows);
            }
        }
        ServiceCmd::Inspect { service } => {
            let info = client
                .inspect_service(ServiceRef {
                    service: service.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "{}",
                serde_json::to_string_pretty(&service_inspect_json(&info))?
            );
        }
        ServiceCmd::Ps { service } => {
            let tasks = client
                .list_tasks(ListTasksRequest {
                    service: service.clone(),
                    node: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .tasks;
            print_task_list(cli.format, &tasks);
        }
        ServiceCmd::Logs {
            follow,
            tail,
            service,
        } => {
            let tail: i64 = if tail == "all" {
                -1
            } else {
                tail.parse()
                    .map_err(|_| anyhow!("invalid --tail {tail:?}: expected a number or all"))?
            };
            let mut lines = client
                .service_logs(ServiceLogsRequest {
                    service: service.clone(),
                    follow: *follow,
                    tail,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut unreadable = Vec::new();
            while let Some(line) = lines.message().await.map_err(status)? {
                if line.unreadable {
                    unreadable.push(line.source.trim_start_matches('@').to_string());
                }
                let text = String::from_utf8_lossy(&line.data);
                for l in text.lines() {
                    if line.stderr {
                        eprintln!("{} | {l}", line.source);
                    } else {
                        println!("{} | {l}", line.source);
                    }
                }
            }
            if !unreadable.is_empty() {
                bail!(
                    "the logs of {} node(s) could not be read: {}",
                    unreadable.len(),
                    unreadable.join(", ")
                );
            }
        }
        ServiceCmd::Update(args) => {
            let info =
                update_with(&mut client, &args.service, |spec| apply_update(args, spec)).await?;
            println!("{}", info.spec.map(|s| s.name).unwrap_or_default());
            if !args.detach {
                converge(&mut client, &info.id, false).await?;
            }
        }
        ServiceCmd::Scale { pairs, detach } => {
            let mut targets = Vec::new();
            for p in pairs {
                let (name, n) = p.split_once('=').ok_or_else(|| {
                    anyhow!("invalid scale argument {p:?}: expected SERVICE=REPLICAS")
                })?;
                let n: u64 = n
                    .parse()
                    .map_err(|_| anyhow!("invalid replica count {n:?} for {name}"))?;
                targets.push((name.to_string(), n));
            }
            for (name, n) in &targets {
                let info = update_with(&mut client, name, |spec| {
                    if spec.mode() == ServiceMode::Global {
                        bail!("{name}: scale can only be used with replicated mode");
                    }
                    spec.replicas = *n;
                    Ok(())
                })
                .await?;
                println!("{name} scaled to {n}");
                if !detach {
                    converge(&mut client, &info.id, false).await?;
                }
            }
        }
        ServiceCmd::Rollback { service, detach } => {
            let info = client
                .update_service(UpdateServiceRequest {
                    service: service.clone(),
                    spec: None,
                    expect_spec_version: 0,
                    rollback: true,
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", info.spec.map(|s| s.name).unwrap_or_default());
            if !detach {
                converge(&mut client, &info.id, true).await?;
            }
        }
        ServiceCmd::Rm { services } => {
            for s in services {
                client
                    .remove_service(ServiceRef { service: s.clone() })
                    .await
                    .map_err(status)?;
                println!("{s}");
            }
        }
    }
    Ok(())
}
