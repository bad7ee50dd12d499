//! The service options of `swarmctl service create|update`: clap arguments
//! and their translation into a [`ServiceSpec`], with one-line errors for
//! bad values (durations, sizes, CPUs, published ports, …).

use anyhow::{anyhow, bail};
use clap::Args;
use swarmlet_proto::objects::{FileReference, HealthConfig, PortConfig, ServiceMode, ServiceSpec};

/// Options of `service create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    name: Option<String>,
    /// replicated, global, replicated-job or global-job.
    #[arg(long, default_value = "replicated", value_parser = ["replicated", "global", "replicated-job", "global-job"])]
    mode: String,
    /// Replicated jobs: tasks running at once (default: --replicas).
    #[arg(long)]
    max_concurrent: Option<u64>,
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
    /// Publish a port: [mode=ingress|host,]PUBLISHED:TARGET[/tcp|/udp], or
    /// published=P,target=T,protocol=tcp,mode=ingress.
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Attach the tasks to a network (repeatable): NAME, or
    /// name=NAME,alias=ALIAS[,alias=…] (other names of the service there).
    #[arg(long = "network")]
    network: Vec<String>,
    /// Give the tasks a secret: NAME[,target=PATH] (default
    /// /run/secrets/NAME; repeatable).
    #[arg(long = "secret")]
    secret: Vec<String>,
    /// Give the tasks a config: NAME[,target=PATH] (default /NAME;
    /// repeatable).
    #[arg(long = "config")]
    config: Vec<String>,
    /// Spread tasks over a node label's values: spread=node.labels.KEY.
    #[arg(long = "placement-pref")]
    placement_pref: Vec<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    container: crate::container_args::ContainerArgs,
    /// Print the service ID and return at once.
    #[arg(short, long)]
    pub detach: bool,
    /// Image to run. An option before it is an option of `service create`
    /// (an unknown one is an error, never taken as the image).
    image: String,
    /// The command and its arguments (everything after the image).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
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
    /// Publish another port (same forms as create's --publish).
    #[arg(long = "publish-add")]
    publish_add: Vec<String>,
    /// Stop publishing a port: PUBLISHED[/PROTOCOL] or PUBLISHED:TARGET.
    #[arg(long = "publish-rm")]
    publish_rm: Vec<String>,
    /// Attach the tasks to another network (NAME or name=NAME,alias=ALIAS).
    #[arg(long = "network-add")]
    network_add: Vec<String>,
    /// Detach the tasks from a network.
    #[arg(long = "network-rm")]
    network_rm: Vec<String>,
    /// Add a placement preference.
    #[arg(long = "placement-pref-add")]
    placement_pref_add: Vec<String>,
    /// Remove a placement preference.
    #[arg(long = "placement-pref-rm")]
    placement_pref_rm: Vec<String>,
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
    /// Most tasks of this service on one node (0: no limit).
    #[arg(long)]
    replicas_max_per_node: Option<u64>,
    /// Replace the tasks even if nothing changed.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    container: crate::container_args::ContainerUpdateArgs,
    /// Return at once instead of waiting for convergence.
    #[arg(short, long)]
    pub detach: bool,
    /// Service name or ID.
    pub service: String,
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
    /// Tasks rolled back at a time (0: all at once; default 1).
    #[arg(long)]
    rollback_parallelism: Option<u64>,
    /// Wait between rollback batches.
    #[arg(long)]
    rollback_delay: Option<String>,
    /// On a failed rollback: pause or continue.
    #[arg(long, value_parser = ["pause", "continue"])]
    rollback_failure_action: Option<String>,
    /// How long a rolled-back task is watched for failure (default 5s).
    #[arg(long)]
    rollback_monitor: Option<String>,
    /// stop-first or start-first.
    #[arg(long, value_parser = ["stop-first", "start-first"])]
    rollback_order: Option<String>,
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
            spec.rollback = spec.update;
            spec.stop_grace_period_ms = 10_000;
        }
        let touched_rollback = self.rollback_parallelism.is_some()
            || self.rollback_delay.is_some()
            || self.rollback_failure_action.is_some()
            || self.rollback_monitor.is_some()
            || self.rollback_order.is_some();
        if touched_rollback {
            let defaults = spec.update.unwrap_or_default();
            let rollback = spec.rollback.get_or_insert(defaults);
            if let Some(p) = self.rollback_parallelism {
                rollback.parallelism = p;
            }
            if let Some(d) = duration_ms("--rollback-delay", &self.rollback_delay)? {
                rollback.delay_ms = d;
            }
            if let Some(a) = &self.rollback_failure_action {
                rollback.set_failure_action(if a == "continue" {
                    FailureAction::Continue
                } else {
                    FailureAction::Pause
                });
            }
            if let Some(o) = &self.rollback_order {
                rollback.set_order(if o == "start-first" {
                    UpdateOrder::StartFirst
                } else {
                    UpdateOrder::StopFirst
                });
            }
            if let Some(d) = duration_ms("--rollback-monitor", &self.rollback_monitor)? {
                rollback.monitor_ms = d;
            }
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
pub(crate) fn parse_bytes(flag: &str, v: &Option<String>) -> anyhow::Result<i64> {
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

/// `NAME[,target=PATH]` (also `source=NAME`, as Docker accepts).
/// Attaches `spec` to a network given as `NAME` or Docker's long syntax
/// `name=NAME,alias=ALIAS[,alias=…]`.
fn add_network(spec: &mut ServiceSpec, arg: &str) -> anyhow::Result<()> {
    let (name, aliases) = parse_network(arg)?;
    if !spec.networks.contains(&name) {
        spec.networks.push(name.clone());
    }
    spec.network_aliases.retain(|a| a.network != name);
    if !aliases.is_empty() {
        spec.network_aliases
            .push(swarmlet_proto::objects::NetworkAliases {
                network: name,
                aliases,
            });
    }
    Ok(())
}

/// `NAME` or `name=NAME,alias=A,…`: the network and its aliases.
pub fn parse_network(arg: &str) -> anyhow::Result<(String, Vec<String>)> {
    if !arg.contains('=') {
        return Ok((arg.to_string(), Vec::new()));
    }
    let mut name = None;
    let mut aliases = Vec::new();
    for field in arg.split(',') {
        match field.split_once('=') {
            Some(("name" | "target", v)) if !v.is_empty() => name = Some(v.to_string()),
            Some(("alias", v)) if !v.is_empty() => aliases.push(v.to_string()),
            _ => bail!("--network {arg:?}: expected NAME or name=NAME,alias=ALIAS"),
        }
    }
    let name = name.ok_or_else(|| anyhow::anyhow!("--network {arg:?}: name= is missing"))?;
    Ok((name, aliases))
}

fn file_reference(arg: &str, kind: &str) -> anyhow::Result<FileReference> {
    let mut r = FileReference::default();
    for (i, part) in arg.split(',').enumerate() {
        match part.split_once('=') {
            None if i == 0 => r.name = part.to_string(),
            Some(("source" | "src", v)) => r.name = v.to_string(),
            Some(("target" | "dst", v)) => r.target = v.to_string(),
            _ => bail!("invalid --{kind} {arg:?}: expected NAME[,target=PATH]"),
        }
    }
    if r.name.is_empty() {
        bail!("invalid --{kind} {arg:?}: the name is missing");
    }
    Ok(r)
}

/// The spec `service create` asks for.
pub fn spec_from(args: &CreateArgs) -> anyhow::Result<ServiceSpec> {
    let (image, command) = (&args.image, &args.command);
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
    crate::kv::pairs(&args.env, "environment variable")?;
    args.policy.apply(&mut spec, true)?;
    spec.ports = args
        .publish
        .iter()
        .map(|p| parse_publish(p))
        .collect::<anyhow::Result<_>>()?;
    for n in &args.network {
        add_network(&mut spec, n)?;
    }
    spec.secrets = args
        .secret
        .iter()
        .map(|s| file_reference(s, "secret"))
        .collect::<anyhow::Result<_>>()?;
    spec.configs = args
        .config
        .iter()
        .map(|s| file_reference(s, "config"))
        .collect::<anyhow::Result<_>>()?;
    spec.placement_spread = args.placement_pref.clone();
    args.endpoint.apply(&mut spec)?;
    args.container.apply(&mut spec)?;
    spec.labels = crate::kv::pairs(&args.label, "label")?
        .into_iter()
        .collect();
    let mode = match args.mode.as_str() {
        "global" => ServiceMode::Global,
        "global-job" => ServiceMode::GlobalJob,
        "replicated-job" => ServiceMode::ReplicatedJob,
        _ => ServiceMode::Replicated,
    };
    spec.set_mode(mode);
    if matches!(mode, ServiceMode::Global | ServiceMode::GlobalJob) {
        if args.replicas.is_some() {
            bail!("replicas can only be used with replicated mode");
        }
    } else {
        spec.replicas = args.replicas.unwrap_or(1);
    }
    if let Some(m) = args.max_concurrent {
        if mode != ServiceMode::ReplicatedJob {
            bail!("--max-concurrent can only be used with replicated-job mode");
        }
        spec.max_concurrent = m;
    }
    if matches!(mode, ServiceMode::ReplicatedJob | ServiceMode::GlobalJob) {
        // As Docker: a job's tasks are retried when they fail, never when
        // they complete; unless --restart-condition says otherwise.
        if let Some(r) = spec.restart.as_mut() {
            if args.policy.restart_condition.is_none() {
                r.set_condition(swarmlet_proto::objects::RestartCondition::OnFailure);
            }
        }
    }
    Ok(spec)
}

/// Endpoint mode and health check options shared by `create` and `update`.
#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// vip (a virtual IP per network) or dnsrr (DNS returns the task IPs).
    #[arg(long, value_parser = ["vip", "dnsrr"])]
    endpoint_mode: Option<String>,
    /// Command run in the container to check its health (a shell command).
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s).
    #[arg(long)]
    health_interval: Option<String>,
    /// Longest a health check may take.
    #[arg(long)]
    health_timeout: Option<String>,
    /// Failed checks in a row before the task is unhealthy.
    #[arg(long)]
    health_retries: Option<u64>,
    /// Grace time after start before failed checks count.
    #[arg(long)]
    health_start_period: Option<String>,
    /// Disable the image's health check.
    #[arg(long)]
    no_healthcheck: bool,
}

impl EndpointArgs {
    fn apply(&self, spec: &mut ServiceSpec) -> anyhow::Result<()> {
        if let Some(m) = &self.endpoint_mode {
            spec.endpoint_mode = m.clone();
        }
        let touched = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.no_healthcheck;
        if !touched {
            return Ok(());
        }
        if self.no_healthcheck && self.health_cmd.is_some() {
            bail!("--no-healthcheck conflicts with --health-cmd");
        }
        let h = spec.health.get_or_insert_with(HealthConfig::default);
        if let Some(cmd) = &self.health_cmd {
            if cmd.trim().is_empty() {
                bail!("invalid --health-cmd: the command is empty");
            }
            h.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        if self.no_healthcheck {
            h.test = vec!["NONE".into()];
        }
        if let Some(d) = duration_ms("--health-interval", &self.health_interval)? {
            h.interval_ms = d;
        }
        if let Some(d) = duration_ms("--health-timeout", &self.health_timeout)? {
            h.timeout_ms = d;
        }
        if let Some(n) = self.health_retries {
            h.retries = n;
        }
        if let Some(d) = duration_ms("--health-start-period", &self.health_start_period)? {
            h.start_period_ms = d;
        }
        Ok(())
    }
}

/// Parses one `--publish` value.
pub fn parse_publish(v: &str) -> anyhow::Result<PortConfig> {
    let bad = || {
        anyhow!(
            "invalid --publish {v:?}: expected [mode=ingress|host,]PUBLISHED:TARGET[/tcp|/udp] or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]"
        )
    };
    let port = |s: &str| -> anyhow::Result<u32> {
        let n: u32 = s.trim().parse().map_err(|_| bad())?;
        if n > 65535 {
            return Err(bad());
        }
        Ok(n)
    };
    let mut p = PortConfig {
        protocol: "tcp".into(),
        mode: "ingress".into(),
        ..Default::default()
    };
    let mut short = None;
    for part in v.split(',') {
        match part.split_once('=') {
            Some(("mode", m)) => p.mode = m.to_string(),
            Some(("published", n)) => p.published = port(n)?,
            Some(("target", n)) => p.target = port(n)?,
            Some(("protocol", n)) => p.protocol = n.to_string(),
            Some(_) => return Err(bad()),
            None if short.is_none() => short = Some(part),
            None => return Err(bad()),
        }
    }
    if let Some(short) = short {
        let (ports, proto) = match short.split_once('/') {
            Some((ports, proto)) => (ports, Some(proto)),
            None => (short, None),
        };
        if let Some(proto) = proto {
            p.protocol = proto.to_string();
        }
        match ports.split_once(':') {
            Some((published, target)) => {
                p.published = port(published)?;
                p.target = port(target)?;
            }
            None => p.target = port(ports)?,
        }
    }
    if p.target == 0 {
        return Err(bad());
    }
    if !matches!(p.protocol.as_str(), "tcp" | "udp")
        || !matches!(p.mode.as_str(), "ingress" | "host")
    {
        return Err(bad());
    }
    Ok(p)
}

/// Whether `--publish-rm VALUE` names `p`.
fn publish_matches(value: &str, p: &PortConfig) -> bool {
    let (ports, proto) = match value.split_once('/') {
        Some((ports, proto)) => (ports, Some(proto)),
        None => (value, None),
    };
    if proto.is_some_and(|proto| proto != p.protocol) {
        return false;
    }
    match ports.split_once(':') {
        Some((published, target)) => {
            published.parse() == Ok(p.published) && target.parse() == Ok(p.target)
        }
        None => ports.parse() == Ok(p.published),
    }
}

/// Applies the options of `service update` to `spec`.
pub fn apply_update(args: &UpdateArgs, spec: &mut ServiceSpec) -> anyhow::Result<()> {
    let env_add = crate::kv::pairs(&args.env_add, "environment variable")?;
    let label_add = crate::kv::pairs(&args.label_add, "label")?;
    if let Some(i) = &args.image {
        spec.image = i.clone();
    }
    if let Some(r) = args.replicas {
        if matches!(spec.mode(), ServiceMode::Global | ServiceMode::GlobalJob) {
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
    for rm in &args.publish_rm {
        let before = spec.ports.len();
        spec.ports.retain(|p| !publish_matches(rm, p));
        if spec.ports.len() == before {
            bail!("--publish-rm {rm:?}: the service does not publish that port");
        }
    }
    for add in &args.publish_add {
        let p = parse_publish(add)?;
        spec.ports.retain(|q| {
            !(q.published == p.published && q.protocol == p.protocol && p.published != 0)
        });
        spec.ports.push(p);
    }
    spec.networks.retain(|n| !args.network_rm.contains(n));
    spec.network_aliases
        .retain(|a| !args.network_rm.contains(&a.network));
    for n in &args.network_add {
        add_network(spec, n)?;
    }
    spec.placement_spread
        .retain(|p| !args.placement_pref_rm.contains(p));
    spec.placement_spread
        .extend(args.placement_pref_add.iter().cloned());
    if args.reserve_cpu.is_some() {
        spec.reserve_nano_cpus = parse_cpus("--reserve-cpu", &args.reserve_cpu)?;
    }
    if args.reserve_memory.is_some() {
        spec.reserve_memory_bytes = parse_bytes("--reserve-memory", &args.reserve_memory)?;
    }
    if args.limit_cpu.is_some() {
        spec.limit_nano_cpus = parse_cpus("--limit-cpu", &args.limit_cpu)?;
    }
    if args.limit_memory.is_some() {
        spec.limit_memory_bytes = parse_bytes("--limit-memory", &args.limit_memory)?;
    }
    if let Some(n) = args.replicas_max_per_node {
        spec.max_replicas_per_node = n;
    }
    if args.force {
        spec.force_update += 1;
    }
    args.endpoint.apply(spec)?;
    args.policy.apply(spec, false)?;
    args.container.apply(spec)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `service create ARGS…` as the command line parses it.
    fn create(args: &[&str]) -> Result<CreateArgs, clap::Error> {
        let mut line = vec!["swarmctl", "service", "create"];
        line.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(line)?;
        match cli.command {
            crate::cli::Command::Service(crate::service::ServiceCmd::Create(a)) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn networks_with_aliases() {
        let args = create(&[
            "--name",
            "web",
            "--network",
            "front",
            "--network",
            "name=back,alias=www,alias=site",
            "nginx",
        ])
        .expect("parses");
        let spec = spec_from(&args).expect("a spec");
        assert_eq!(spec.networks, ["front", "back"]);
        assert_eq!(spec.network_aliases.len(), 1);
        assert_eq!(spec.network_aliases[0].network, "back");
        assert_eq!(spec.network_aliases[0].aliases, ["www", "site"]);
        assert!(parse_network("name=,alias=x").is_err());
        assert!(parse_network("alias=x").is_err());
    }

    #[test]
    fn an_unknown_option_before_the_image_is_an_error_not_the_image() {
        let e = create(&["-d", "--name", "x", "--bogus", "type=volume", "nginx"])
            .expect_err("unknown option");
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("--bogus"), "{e}");
        // After the image, everything is the command, options too.
        let a = create(&["--name", "x", "nginx", "sh", "-c", "echo --hi"]).expect("parse");
        assert_eq!(a.image, "nginx");
        assert_eq!(a.command, ["sh", "-c", "echo --hi"]);
        let spec = spec_from(&a).expect("spec");
        assert_eq!(spec.image, "nginx");
        assert_eq!(spec.command, ["sh", "-c", "echo --hi"]);
    }

    #[test]
    fn publish_forms() {
        let p = parse_publish("8080:80").expect("short");
        assert_eq!(
            (p.published, p.target, p.protocol.as_str(), p.mode.as_str()),
            (8080, 80, "tcp", "ingress")
        );
        let p = parse_publish("53:53/udp").expect("udp");
        assert_eq!(p.protocol, "udp");
        let p = parse_publish("mode=host,8080:80").expect("host");
        assert_eq!(p.mode, "host");
        let p = parse_publish("published=9000,target=90,protocol=udp,mode=host").expect("long");
        assert_eq!(
            (p.published, p.target, p.protocol.as_str(), p.mode.as_str()),
            (9000, 90, "udp", "host")
        );
        let p = parse_publish("80").expect("target only");
        assert_eq!((p.published, p.target), (0, 80));
        for bad in [
            "",
            "x:80",
            "8080:",
            "8080:80/sctp",
            "mode=bridge,80:80",
            "70000:80",
            "a=b",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn publish_rm_matches() {
        let p = parse_publish("8080:80").expect("short");
        assert!(publish_matches("8080", &p));
        assert!(publish_matches("8080:80", &p));
        assert!(publish_matches("8080/tcp", &p));
        assert!(!publish_matches("8080/udp", &p));
        assert!(!publish_matches("80", &p));
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(
            parse_bytes("x", &Some("64M".into())).expect("64M"),
            64 << 20
        );
        assert_eq!(parse_bytes("x", &Some("1g".into())).expect("1g"), 1 << 30);
        assert!(parse_bytes("x", &Some("lots".into())).is_err());
        assert_eq!(
            parse_cpus("x", &Some("0.5".into())).expect("0.5"),
            500_000_000
        );
        assert!(parse_cpus("x", &Some("-1".into())).is_err());
    }
}
