//! `swarmctl service create|ls|inspect|ps|update|scale|rm`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{
    CreateServiceRequest, ListTasksRequest, ServiceInfo, ServiceRef, UpdateServiceRequest,
};
use swarmlet_proto::objects::{ServiceMode, ServiceSpec, UpdateState};
use tonic::transport::Channel;

use crate::cli::{Cli, Format};
use crate::output::{connect, json as print_json, status, table, time};
use crate::task::print_task_list;

/// `swarmctl service …`
#[derive(Subcommand, Debug)]
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

/// Options of `service create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    name: Option<String>,
    /// replicated or global.
    #[arg(long, default_value = "replicated", value_parser = ["replicated", "global"])]
    mode: String,
    /// Number of tasks (replicated mode).
    #[arg(long)]
    replicas: Option<u64>,
    /// Environment variable K=V.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Service label K=V.
    #[arg(long = "label")]
    label: Vec<String>,
    /// Placement constraint, e.g. node.role!=manager.
    #[arg(long = "constraint")]
    constraint: Vec<String>,
    /// Most tasks of this service on one node.
    #[arg(long)]
    replicas_max_per_node: Option<u64>,
    /// CPUs reserved per task, e.g. 0.5.
    #[arg(long)]
    reserve_cpu: Option<String>,
    /// Memory reserved per task, e.g. 64M.
    #[arg(long)]
    reserve_memory: Option<String>,
    /// CPU limit per task.
    #[arg(long)]
    limit_cpu: Option<String>,
    /// Memory limit per task.
    #[arg(long)]
    limit_memory: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print the service ID and return at once.
    #[arg(short, long)]
    detach: bool,
    /// Image, then the command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    image_and_command: Vec<String>,
}

/// Options of `service update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// New image.
    #[arg(long)]
    image: Option<String>,
    /// New replica count.
    #[arg(long)]
    replicas: Option<u64>,
    /// Add or change an environment variable K=V.
    #[arg(long = "env-add")]
    env_add: Vec<String>,
    /// Remove an environment variable by name.
    #[arg(long = "env-rm")]
    env_rm: Vec<String>,
    /// Add a label K=V.
    #[arg(long = "label-add")]
    label_add: Vec<String>,
    /// Remove a label.
    #[arg(long = "label-rm")]
    label_rm: Vec<String>,
    /// Add a placement constraint.
    #[arg(long = "constraint-add")]
    constraint_add: Vec<String>,
    /// Remove a placement constraint.
    #[arg(long = "constraint-rm")]
    constraint_rm: Vec<String>,
    /// Replace the tasks even if nothing changed.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Return at once instead of waiting for convergence.
    #[arg(short, long)]
    detach: bool,
    /// Service name or ID.
    service: String,
}

/// Restart, update and stop options shared by `create` and `update`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Restart when a task ends: none, on-failure or any.
    #[arg(long, value_parser = ["none", "on-failure", "any"])]
    restart_condition: Option<String>,
    /// Wait between restarts (default 5s).
    #[arg(long)]
    restart_delay: Option<String>,
    /// Most restarts before giving up (0: unlimited).
    #[arg(long)]
    restart_max_attempts: Option<u64>,
    /// Window in which restarts are counted.
    #[arg(long)]
    restart_window: Option<String>,
    /// Tasks updated at a time (0: all at once; default 1).
    #[arg(long)]
    update_parallelism: Option<u64>,
    /// Wait between update batches.
    #[arg(long)]
    update_delay: Option<String>,
    /// On a failed update: pause, continue or rollback.
    #[arg(long, value_parser = ["pause", "continue", "rollback"])]
    update_failure_action: Option<String>,
    /// stop-first or start-first.
    #[arg(long, value_parser = ["stop-first", "start-first"])]
    update_order: Option<String>,
    /// How long a new task is watched for failure (default 5s).
    #[arg(long)]
    update_monitor: Option<String>,
    /// Time a task gets to stop before it is killed (default 10s).
    #[arg(long)]
    stop_grace_period: Option<String>,
}

fn duration_ms(flag: &str, v: &Option<String>) -> anyhow::Result<Option<u64>> {
    v.as_deref()
        .map(|s| {
            humantime::parse_duration(s)
                .map(|d| d.as_millis() as u64)
                .map_err(|_| anyhow!("invalid {flag} {s:?}: expected a duration like 5s or 500ms"))
        })
        .transpose()
}

impl PolicyArgs {
    /// Applies the given options to `spec`; `create` first sets Docker's defaults.
    fn apply(&self, spec: &mut ServiceSpec, create: bool) -> anyhow::Result<()> {
        use swarmlet_proto::objects::{
            FailureAction, RestartCondition, RestartPolicy, UpdateConfig, UpdateOrder,
        };
        if create {
            spec.restart = Some(RestartPolicy {
                delay_ms: 5_000,
                ..Default::default()
            });
            spec.update = Some(UpdateConfig {
                parallelism: 1,
                monitor_ms: 5_000,
                ..Default::default()
            });
            spec.stop_grace_period_ms = 10_000;
        }
        let restart = spec.restart.get_or_insert_with(Default::default);
        if let Some(c) = &self.restart_condition {
            restart.set_condition(match c.as_str() {
                "none" => RestartCondition::None,
                "on-failure" => RestartCondition::OnFailure,
                _ => RestartCondition::Any,
            });
        }
        if let Some(d) = duration_ms("--restart-delay", &self.restart_delay)? {
            restart.delay_ms = d;
        }
        if let Some(n) = self.restart_max_attempts {
            restart.max_attempts = n;
        }
        if let Some(d) = duration_ms("--restart-window", &self.restart_window)? {
            restart.window_ms = d;
        }
        let update = spec.update.get_or_insert_with(Default::default);
        if let Some(p) = self.update_parallelism {
            update.parallelism = p;
        }
        if let Some(d) = duration_ms("--update-delay", &self.update_delay)? {
            update.delay_ms = d;
        }
        if let Some(a) = &self.update_failure_action {
            update.set_failure_action(match a.as_str() {
                "continue" => FailureAction::Continue,
                "rollback" => FailureAction::Rollback,
                _ => FailureAction::Pause,
            });
        }
        if let Some(o) = &self.update_order {
            update.set_order(if o == "start-first" {
                UpdateOrder::StartFirst
            } else {
                UpdateOrder::StopFirst
            });
        }
        if let Some(d) = duration_ms("--update-monitor", &self.update_monitor)? {
            update.monitor_ms = d;
        }
        if let Some(d) = duration_ms("--stop-grace-period", &self.stop_grace_period)? {
            spec.stop_grace_period_ms = d;
        }
        Ok(())
    }
}

/// Parses `0.5` CPUs into nano-CPUs.
fn parse_cpus(flag: &str, v: &Option<String>) -> anyhow::Result<i64> {
    let Some(v) = v else { return Ok(0) };
    let cpus: f64 = v
        .parse()
        .map_err(|_| anyhow!("invalid {flag} {v:?}: expected a number of CPUs like 0.5"))?;
    if !(0.0..=4096.0).contains(&cpus) {
        bail!("invalid {flag} {v:?}: out of range");
    }
    Ok((cpus * 1e9) as i64)
}

/// Parses `64M`, `1G`, `512k` or bytes.
fn parse_bytes(flag: &str, v: &Option<String>) -> anyhow::Result<i64> {
    let Some(v) = v else { return Ok(0) };
    let t = v.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("invalid {flag} {v:?}: expected a size like 64M"))?;
    if n < 0.0 {
        bail!("invalid {flag} {v:?}: must not be negative");
    }
    Ok((n * mult as f64) as i64)
}

fn kv(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(anyhow!("invalid {what} {s:?}: expected KEY=VALUE")),
        })
        .collect()
}

fn spec_from(args: &CreateArgs) -> anyhow::Result<ServiceSpec> {
    let (image, command) = args
        .image_and_command
        .split_first()
        .ok_or_else(|| anyhow!("an image is required"))?;
    let mut spec = ServiceSpec {
        name: args.name.clone().unwrap_or_else(|| {
            image
                .rsplit('/')
                .next()
                .unwrap_or(image)
                .split(':')
                .next()
                .unwrap_or("service")
                .to_string()
        }),
        image: image.clone(),
        command: command.to_vec(),
        env: args.env.clone(),
        constraints: args.constraint.clone(),
        max_replicas_per_node: args.replicas_max_per_node.unwrap_or(0),
        reserve_nano_cpus: parse_cpus("--reserve-cpu", &args.reserve_cpu)?,
        reserve_memory_bytes: parse_bytes("--reserve-memory", &args.reserve_memory)?,
        limit_nano_cpus: parse_cpus("--limit-cpu", &args.limit_cpu)?,
        limit_memory_bytes: parse_bytes("--limit-memory", &args.limit_memory)?,
        ..Default::default()
    };
    kv(&args.env, "environment variable")?;
    args.policy.apply(&mut spec, true)?;
    spec.labels = kv(&args.label, "label")?.into_iter().collect();
    if args.mode == "global" {
        if args.replicas.is_some() {
            bail!("replicas can only be used with replicated mode");
        }
        spec.set_mode(ServiceMode::Global);
    } else {
        spec.replicas = args.replicas.unwrap_or(1);
    }
    Ok(spec)
}

fn mode_name(spec: &ServiceSpec) -> &'static str {
    match spec.mode() {
        ServiceMode::Replicated => "replicated",
        ServiceMode::Global => "global",
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
        "image": spec.image,
        "ports": [],
    })
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
        "constraints": spec.constraints,
        "max_replicas_per_node": spec.max_replicas_per_node,
        "reserve_nano_cpus": spec.reserve_nano_cpus,
        "reserve_memory_bytes": spec.reserve_memory_bytes,
        "limit_nano_cpus": spec.limit_nano_cpus,
        "limit_memory_bytes": spec.limit_memory_bytes,
    });
    v["version"] = json!(i.spec_version);
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
    v["spec"]["stop_grace_period_ms"] = json!(spec.stop_grace_period_ms);
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

/// Waits until the service runs its desired tasks; fails when it stops
/// making progress, with the reason its tasks give.
async fn converge(
    client: &mut ControlClient<Channel>,
    service: &str,
    expect_rollback: bool,
) -> anyhow::Result<()> {
    let stall = Duration::from_secs(15);
    let mut last_progress = Instant::now();
    let mut best = None;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        let info = client
            .inspect_service(ServiceRef {
                service: service.into(),
            })
            .await
            .map_err(status)?
            .into_inner();
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: service.into(),
                node: String::new(),
            })
            .await
            .map_err(status)?
            .into_inner()
            .tasks;
        let wanted: Vec<_> = tasks
            .iter()
            .filter_map(|t| t.task.as_ref())
            .filter(|t| t.desired_state == swarmlet_proto::objects::TaskState::Running as i32)
            .collect();
        let running = info.replicas_running;
        let desired = info.replicas_desired;
        if tty {
            eprint!("\roverall progress: {running} out of {desired} tasks ");
        }
        let update = info.update_status.clone().unwrap_or_default();
        match update.state() {
            UpdateState::Paused | UpdateState::RollbackPaused => {
                if tty {
                    eprintln!();
                }
                bail!("service {service}: {}", update.message);
            }
            UpdateState::RollbackCompleted if !expect_rollback => {
                if tty {
                    eprintln!();
                }
                bail!("service {service} was rolled back: {}", update.message);
            }
            _ => {}
        }
        let updating = matches!(
            update.state(),
            UpdateState::Updating | UpdateState::RollbackStarted
        );
        let all_current = wanted
            .iter()
            .all(|t| t.service_version >= info.spec_version);
        if running == desired && wanted.len() as u64 == desired && all_current && !updating {
            if tty {
                eprintln!("\nverify: service converged");
            }
            return Ok(());
        }
        if best != Some(running) {
            best = Some(running);
            last_progress = Instant::now();
        }
        if last_progress.elapsed() > stall {
            let reason = wanted
                .iter()
                .filter_map(|t| t.status.as_ref())
                .map(|s| s.err.clone())
                .find(|e| !e.is_empty())
                .unwrap_or_else(|| "tasks did not reach running".into());
            if tty {
                eprintln!();
            }
            bail!("service {service} did not converge: {reason}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
pub async fn run(cli: &Cli, cmd: &ServiceCmd) -> anyhow::Result<()> {
    let mut client = ControlClient::new(connect(&cli.host)?);
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
                            format!("{}/{}", i.replicas_running, i.replicas_desired),
                            spec.image.clone(),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE"], &rows);
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
        ServiceCmd::Update(args) => {
            let env_add = kv(&args.env_add, "environment variable")?;
            let label_add = kv(&args.label_add, "label")?;
            let info = update_with(&mut client, &args.service, |spec| {
                if let Some(i) = &args.image {
                    spec.image = i.clone();
                }
                if let Some(r) = args.replicas {
                    if spec.mode() == ServiceMode::Global {
                        bail!("replicas can only be used with replicated mode");
                    }
                    spec.replicas = r;
                }
                for name in &args.env_rm {
                    spec.env
                        .retain(|e| e.split('=').next() != Some(name.as_str()));
                }
                for (k, v) in &env_add {
                    spec.env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    spec.env.push(format!("{k}={v}"));
                }
                for k in &args.label_rm {
                    spec.labels.remove(k);
                }
                for (k, v) in &label_add {
                    spec.labels.insert(k.clone(), v.clone());
                }
                spec.constraints.retain(|c| !args.constraint_rm.contains(c));
                spec.constraints.extend(args.constraint_add.iter().cloned());
                if args.force {
                    spec.force_update += 1;
                }
                args.policy.apply(spec, false)?;
                Ok(())
            })
            .await?;
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
