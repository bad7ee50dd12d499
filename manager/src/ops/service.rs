//! Services: validation, creation, updates, rollback, removal and listings
//! (on the leader).

use swarmlet_common::task_state::{desired, is_running};
use swarmlet_proto::control::ServiceInfo;
use swarmlet_proto::objects::{Endpoint, Node, Service, ServiceMode, ServiceSpec, Task, TaskState};

use super::{OpsError, OpsResult};
use crate::manager::Manager;
use crate::resolve::resolve_service;
use crate::scheduler::constraint::Constraint;
use crate::store::Tx;

/// Checks a spec and fills in defaults (port protocol and mode, endpoint
/// mode); the error is the one line the user sees.
pub fn validate_spec(spec: &mut ServiceSpec) -> OpsResult<()> {
    let bad = |m: String| Err(OpsError::InvalidArgument(m));
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 63
        && spec
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return bad(format!(
            "invalid service name {:?}: use letters, digits, '-' and '_', starting with a letter or digit",
            spec.name
        ));
    }
    if spec.image.trim().is_empty() {
        return bad("an image is required".into());
    }
    let mode = spec.mode();
    if matches!(mode, ServiceMode::Global | ServiceMode::GlobalJob) && spec.replicas != 0 {
        return bad("replicas can only be used with replicated mode".into());
    }
    if mode != ServiceMode::ReplicatedJob && spec.max_concurrent != 0 {
        return bad("max-concurrent can only be used with replicated-job mode".into());
    }
    for c in &spec.constraints {
        Constraint::parse(c).map_err(OpsError::invalid)?;
    }
    for (what, v) in [
        ("--reserve-cpu", spec.reserve_nano_cpus),
        ("--reserve-memory", spec.reserve_memory_bytes),
        ("--limit-cpu", spec.limit_nano_cpus),
        ("--limit-memory", spec.limit_memory_bytes),
    ] {
        if v < 0 {
            return bad(format!("{what} must not be negative"));
        }
    }
    for p in &spec.placement_spread {
        crate::scheduler::parse_placement_pref(p).map_err(OpsError::invalid)?;
    }
    match spec.endpoint_mode.as_str() {
        "" => spec.endpoint_mode = "vip".into(),
        "vip" | "dnsrr" => {}
        other => {
            return bad(format!(
                "invalid endpoint mode {other:?}: expected vip or dnsrr"
            ))
        }
    }
    crate::ports::normalise(spec).map_err(OpsError::invalid)?;
    if let Some(h) = &spec.health {
        if h.test
            .first()
            .is_some_and(|t| t != "CMD" && t != "CMD-SHELL" && t != "NONE")
        {
            return bad(
                "invalid health check: the test must start with CMD, CMD-SHELL or NONE".into(),
            );
        }
    }
    for e in &spec.env {
        if e.split('=').next().is_none_or(str::is_empty) {
            return bad(format!(
                "invalid environment variable {e:?}: expected KEY=VALUE"
            ));
        }
    }
    check_aliases(spec)?;
    super::container_checks::check(spec)
}

/// Network aliases name one of the service's networks and are DNS names.
fn check_aliases(spec: &ServiceSpec) -> OpsResult<()> {
    for a in &spec.network_aliases {
        if !spec.networks.contains(&a.network) {
            return Err(OpsError::invalid(format!(
                "aliases on network {}: the service is not attached to it",
                a.network
            )));
        }
        for alias in &a.aliases {
            let ok = !alias.is_empty()
                && alias.len() <= 63
                && alias
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                && !alias.starts_with(['-', '.']);
            if !ok {
                return Err(OpsError::invalid(format!(
                    "invalid network alias {alias:?}: use letters, digits, '-', '_' and '.'"
                )));
            }
        }
    }
    Ok(())
}

/// The service's endpoint with its published ports resolved; a port another
/// service publishes is refused.
fn allocate_endpoint(
    m: &Manager,
    id: &str,
    spec: &ServiceSpec,
    previous: Option<&Endpoint>,
) -> OpsResult<Endpoint> {
    let services: Vec<Service> = m.store.objects::<Service>()?;
    let nodes: Vec<Node> = m.store.objects::<Node>()?;
    let daemon = crate::ports::daemon_ports(&nodes);
    crate::ports::allocate(id, spec, previous, &services, &daemon).map_err(|e| match e {
        crate::ports::PortError::InUse { .. } => OpsError::InUse(e.to_string()),
        crate::ports::PortError::Daemon { .. } => OpsError::invalid(e),
        crate::ports::PortError::Exhausted => OpsError::Exhausted(e.to_string()),
        crate::ports::PortError::Invalid(_) => OpsError::invalid(e),
    })
}

fn name_taken(m: &Manager, name: &str, except: &str) -> OpsResult<bool> {
    Ok(m.store
        .list::<Service>()?
        .iter()
        .any(|(_, s)| s.id != except && s.spec.as_ref().is_some_and(|x| x.name == name)))
}

/// The service with its live counts.
pub fn service_info(m: &Manager, s: &Service) -> OpsResult<ServiceInfo> {
    let tasks = m.store.list::<Task>()?;
    let mine = tasks
        .iter()
        .map(|(_, t)| t)
        .filter(|t| t.service_id == s.id);
    let mut running = 0;
    let mut wanted = 0;
    for t in mine {
        if desired(t) == TaskState::Running {
            wanted += 1;
            if is_running(t) {
                running += 1;
            }
        }
    }
    let spec = s.spec.clone().unwrap_or_default();
    let job = crate::orchestrator::job::progress(s, tasks.iter().map(|(_, t)| t));
    let desired = match spec.mode() {
        ServiceMode::Replicated | ServiceMode::ReplicatedJob => spec.replicas,
        ServiceMode::Global => wanted,
        // Every eligible node's task of this run, whatever became of it.
        ServiceMode::GlobalJob => job.completed + job.failed + job.active,
    };
    Ok(ServiceInfo {
        jobs_completed: job.completed,
        jobs_failed: job.failed,
        id: s.id.clone(),
        spec: Some(spec),
        replicas_running: running,
        replicas_desired: desired,
        created_at_ms: s.created_at_ms,
        updated_at_ms: s.updated_at_ms,
        spec_version: s.spec_version,
        update_status: s.update_status.clone(),
        previous_spec: s.previous_spec.clone(),
        endpoint: s.endpoint.clone(),
    })
}

/// Creates a service.
pub async fn create(m: &Manager, mut spec: ServiceSpec) -> OpsResult<ServiceInfo> {
    validate_spec(&mut spec)?;
    m.read_barrier().await?;
    super::network::check_service_networks(m, &spec.networks)?;
    super::secret::resolve_references(m, &mut spec)?;
    if name_taken(m, &spec.name, "")? {
        return Err(OpsError::NameTaken {
            kind: "service",
            name: spec.name,
        });
    }
    let now = swarmlet_common::clock::now_ms();
    let id = swarmlet_common::ids::new_id();
    let endpoint = allocate_endpoint(m, &id, &spec, None)?;
    let service = Service {
        id,
        spec: Some(spec),
        previous_spec: None,
        created_at_ms: now,
        updated_at_ms: now,
        spec_version: 1,
        update_status: None,
        endpoint: Some(endpoint),
    };
    m.propose(Tx::new().create(&service)).await?;
    service_info(m, &service)
}

/// Replaces a service's spec; the old one is kept for `rollback`.
pub async fn update(
    m: &Manager,
    reference: &str,
    mut spec: ServiceSpec,
    expect: u64,
) -> OpsResult<ServiceInfo> {
    validate_spec(&mut spec)?;
    m.read_barrier().await?;
    super::network::check_service_networks(m, &spec.networks)?;
    super::secret::resolve_references(m, &mut spec)?;
    let services = m.store.list::<Service>()?;
    let (version, mut s) = resolve_service(&services, reference)?;
    if expect != 0 && s.spec_version != expect {
        return Err(OpsError::Stale(
            "the service changed since it was read; retry".into(),
        ));
    }
    // A new spec starts a new update, also after a paused one.
    s.update_status = None;
    let old = s.spec.clone().unwrap_or_default();
    if old.mode() != spec.mode() {
        return Err(OpsError::invalid("a service's mode cannot be changed"));
    }
    if spec.name != old.name && name_taken(m, &spec.name, &s.id)? {
        return Err(OpsError::NameTaken {
            kind: "service",
            name: spec.name,
        });
    }
    // Only a change to what tasks run (not to the replica count) replaces tasks.
    let mut scale_only = old.clone();
    scale_only.replicas = spec.replicas;
    if scale_only != spec {
        s.previous_spec = Some(old);
        s.spec_version += 1;
    }
    s.endpoint = Some(allocate_endpoint(m, &s.id, &spec, s.endpoint.as_ref())?);
    s.spec = Some(spec);
    s.updated_at_ms = swarmlet_common::clock::now_ms();
    m.propose(Tx::new().put(&s, Some(version))).await?;
    service_info(m, &s)
}

/// Goes back to the previous spec, as a rolling update marked as a
/// rollback; `expect` (0: unchecked) is the spec version the caller read.
pub async fn rollback(m: &Manager, reference: &str, expect: u64) -> OpsResult<ServiceInfo> {
    m.read_barrier().await?;
    let services = m.store.list::<Service>()?;
    let (version, mut s) = resolve_service(&services, reference)?;
    if expect != 0 && s.spec_version != expect {
        return Err(OpsError::Stale(
            "the service changed since it was read; retry".into(),
        ));
    }
    let Some(previous) = s.previous_spec.clone() else {
        return Err(OpsError::precondition(format!(
            "service {reference} has no previous spec to roll back to"
        )));
    };
    s.endpoint = Some(allocate_endpoint(m, &s.id, &previous, s.endpoint.as_ref())?);
    s.previous_spec = s.spec.take();
    s.spec = Some(previous);
    s.spec_version += 1;
    let mut st = swarmlet_proto::objects::UpdateStatus {
        started_at_ms: swarmlet_common::clock::now_ms(),
        message: "manually requested rollback".into(),
        ..Default::default()
    };
    st.set_state(swarmlet_proto::objects::UpdateState::RollbackStarted);
    s.update_status = Some(st);
    s.updated_at_ms = swarmlet_common::clock::now_ms();
    m.propose(Tx::new().put(&s, Some(version))).await?;
    service_info(m, &s)
}

/// Removes a service; its tasks are stopped and deleted by the orchestrator.
pub async fn remove(m: &Manager, reference: &str) -> OpsResult<()> {
    m.read_barrier().await?;
    let services = m.store.list::<Service>()?;
    let (version, s) = resolve_service(&services, reference)?;
    m.propose(Tx::new().delete::<Service>(&s.id, Some(version)))
        .await?;
    Ok(())
}

/// Every service with its live counts, by name (after a read barrier).
pub async fn list(m: &Manager) -> OpsResult<Vec<ServiceInfo>> {
    m.read_barrier().await?;
    let mut services = Vec::new();
    for (_, s) in m.store.list::<Service>()? {
        services.push(service_info(m, &s)?);
    }
    services.sort_by(|a, b| {
        let name = |i: &ServiceInfo| i.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        name(a).cmp(&name(b))
    });
    Ok(services)
}

/// One service by ID, name or unique ID prefix (after a read barrier).
pub async fn inspect(m: &Manager, reference: &str) -> OpsResult<ServiceInfo> {
    m.read_barrier().await?;
    let services = m.store.list::<Service>()?;
    let (_, s) = resolve_service(&services, reference)?;
    service_info(m, &s)
}
