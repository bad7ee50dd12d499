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
use swarmlet_proto::objects::{ServiceMode, ServiceSpec};
use tonic::transport::Channel;

use crate::cli::{Cli, Format};
use crate::output::{connect, json as print_json, status, table, time};
use crate::task::{print_tasks, task_row_json};

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
    /// Return at once instead of waiting for convergence.
    #[arg(short, long)]
    detach: bool,
    /// Service name or ID.
    service: String,
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
    v["created_at"] = json!(time(i.created_at_ms));
    v["updated_at"] = json!(time(i.updated_at_ms));
    v
}

/// Waits until the service runs its desired tasks; fails when it stops
/// making progress, with the reason its tasks give.
async fn converge(client: &mut ControlClient<Channel>, service: &str) -> anyhow::Result<()> {
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
        if running == desired && wanted.len() as u64 == desired {
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
                converge(&mut client, &info.id).await?;
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
            if cli.format == Format::Json {
                print_json(&serde_json::Value::Array(
                    tasks.iter().map(task_row_json).collect(),
                ));
            } else {
                print_tasks(&tasks);
            }
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
                Ok(())
            })
            .await?;
            println!("{}", info.spec.map(|s| s.name).unwrap_or_default());
            if !args.detach {
                converge(&mut client, &info.id).await?;
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
                    converge(&mut client, &info.id).await?;
                }
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
