//! Services, tasks, nodes, networks, secrets and configs as the Engine API
//! shows them, built with Docker's own models (`bollard-stubs`) and
//! rendered as JSON (specs go through [`super::spec`], which keeps what the
//! client sent beyond Swarmlet's fields).

use std::collections::HashMap;

use bollard_stubs::models as d;
use serde_json::Value;
use swarmlet_common::task_state::state_name;
use swarmlet_proto::control::{NodeInfo, SecretInfo, ServiceInfo, TaskInfo};
use swarmlet_proto::objects::{Network, ServiceMode, TaskState, UpdateState};

use super::spec::{port_out, to_docker};
use super::time::date;

/// This build's version, as the engine version nodes report.
pub const ENGINE_VERSION: &str = concat!("swarmlet-", env!("CARGO_PKG_VERSION"));

fn version(index: u64) -> Option<d::ObjectVersion> {
    Some(d::ObjectVersion { index: Some(index) })
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A service. `status`: with `ServiceStatus` (the `status=true` query).
pub fn service(info: &ServiceInfo, networks: &[Network], status: bool) -> Value {
    let spec = info.spec.clone().unwrap_or_default();
    let update_status = info
        .update_status
        .as_ref()
        .filter(|u| u.state() != UpdateState::None)
        .map(|u| {
            use d::ServiceUpdateStatusStateEnum as S;
            let state = match u.state() {
                UpdateState::None | UpdateState::Updating => S::UPDATING,
                UpdateState::Paused => S::PAUSED,
                UpdateState::Completed => S::COMPLETED,
                UpdateState::RollbackStarted => S::ROLLBACK_STARTED,
                UpdateState::RollbackPaused => S::ROLLBACK_PAUSED,
                UpdateState::RollbackCompleted => S::ROLLBACK_COMPLETED,
            };
            let done = matches!(
                u.state(),
                UpdateState::Completed | UpdateState::RollbackCompleted
            );
            d::ServiceUpdateStatus {
                state: Some(state),
                started_at: date(u.started_at_ms),
                completed_at: if done { date(u.last_batch_at_ms) } else { None },
                message: Some(u.message.clone()),
            }
        });
    let endpoint = info.endpoint.clone().unwrap_or_default();
    let is_job = matches!(
        spec.mode(),
        ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
    );
    let s = d::Service {
        id: Some(info.id.clone()),
        version: version(info.spec_version),
        created_at: date(info.created_at_ms),
        updated_at: date(info.updated_at_ms),
        spec: None,
        endpoint: Some(d::ServiceEndpoint {
            spec: Some(d::EndpointSpec {
                mode: Some(if spec.endpoint_mode == "dnsrr" {
                    d::EndpointSpecModeEnum::DNSRR
                } else {
                    d::EndpointSpecModeEnum::VIP
                }),
                ports: (!spec.ports.is_empty()).then(|| spec.ports.iter().map(port_out).collect()),
            }),
            ports: (!endpoint.ports.is_empty())
                .then(|| endpoint.ports.iter().map(port_out).collect()),
            virtual_ips: (!endpoint.vips.is_empty()).then(|| {
                endpoint
                    .vips
                    .iter()
                    .map(|v| d::ServiceEndpointVirtualIps {
                        network_id: Some(v.network_id.clone()),
                        addr: Some(v.address.clone()),
                    })
                    .collect()
            }),
        }),
        update_status,
        service_status: status.then_some(d::ServiceServiceStatus {
            running_tasks: Some(info.replicas_running),
            desired_tasks: Some(info.replicas_desired),
            completed_tasks: Some(info.jobs_completed),
        }),
        job_status: is_job.then(|| d::ServiceJobStatus {
            job_iteration: version(info.spec_version),
            last_execution: date(info.updated_at_ms),
        }),
    };
    let mut v = to_value(&s);
    if let Some(o) = v.as_object_mut() {
        o.insert("Spec".into(), to_docker(&spec, networks));
        if let Some(prev) = &info.previous_spec {
            o.insert("PreviousSpec".into(), to_docker(prev, networks));
        }
    }
    v
}

/// A task, with its spec's task template (tasks always carry a
/// ContainerSpec).
pub fn task(info: &TaskInfo, networks: &[Network]) -> Value {
    let t = info.task.clone().unwrap_or_default();
    let st = t.status.clone().unwrap_or_default();
    let spec = t.spec.clone().unwrap_or_default();
    let state = |s: TaskState| -> Option<d::TaskState> {
        serde_json::from_value(Value::String(state_name(s).into())).ok()
    };
    let is_job = matches!(
        spec.mode(),
        ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
    );
    let task = d::Task {
        id: Some(t.id.clone()),
        version: version(st.timestamp_ms.max(t.created_at_ms) as u64),
        created_at: date(t.created_at_ms),
        updated_at: date(st.timestamp_ms.max(t.created_at_ms)),
        name: None,
        labels: Some(HashMap::new()),
        spec: None,
        service_id: Some(t.service_id.clone()),
        slot: (t.slot > 0).then_some(t.slot as i64),
        node_id: Some(t.node_id.clone()),
        assigned_generic_resources: None,
        status: Some(d::TaskStatus {
            timestamp: date(st.timestamp_ms.max(t.created_at_ms)),
            state: state(st.state()),
            message: Some(st.message.clone()),
            err: (!st.err.is_empty()).then(|| st.err.clone()),
            container_status: (!st.container_id.is_empty()).then(|| d::ContainerStatus {
                container_id: Some(st.container_id.clone()),
                pid: Some(st.pid as i64),
                exit_code: Some(st.exit_code as i64),
            }),
            port_status: None,
        }),
        desired_state: state(t.desired_state()),
        job_iteration: is_job.then_some(d::ObjectVersion {
            index: Some(t.service_version),
        }),
    };
    let mut v = to_value(&task);
    if let Some(o) = v.as_object_mut() {
        let rendered = to_docker(&spec, networks);
        let template = rendered.get("TaskTemplate").cloned().unwrap_or(Value::Null);
        o.insert("Spec".into(), template);
        let attachments: Vec<Value> = t
            .networks
            .iter()
            .map(|a| {
                serde_json::json!({
                    "Network": {"ID": a.network_id, "Spec": {"Name": a.network_name, "Driver": "overlay"}},
                    "Addresses": [a.address],
                })
            })
            .collect();
        if !attachments.is_empty() {
            o.insert("NetworksAttachments".into(), Value::Array(attachments));
        }
    }
    v
}

/// The host part of `host:port`.
pub fn host_of(addr: &str) -> String {
    addr.rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_else(|| addr.to_string())
}

/// A node.
pub fn node(n: &NodeInfo) -> Value {
    let res = n.resources.unwrap_or_default();
    let ip = host_of(&n.addr);
    let role = if n.role == "manager" {
        d::NodeSpecRoleEnum::MANAGER
    } else {
        d::NodeSpecRoleEnum::WORKER
    };
    let node = d::Node {
        id: Some(n.id.clone()),
        version: version(n.updated_at_ms.max(0) as u64),
        created_at: date(n.created_at_ms),
        updated_at: date(n.updated_at_ms),
        spec: Some(d::NodeSpec {
            name: None,
            labels: Some(
                n.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            role: Some(role),
            availability: serde_json::from_value(Value::String(n.availability.clone())).ok(),
        }),
        description: Some(d::NodeDescription {
            hostname: Some(n.hostname.clone()),
            platform: Some(d::Platform {
                architecture: Some(std::env::consts::ARCH.into()),
                os: Some("linux".into()),
            }),
            resources: Some(d::ResourceObject {
                nano_cpus: Some(res.nano_cpus),
                memory_bytes: Some(res.memory_bytes),
                generic_resources: None,
            }),
            engine: Some(d::EngineDescription {
                engine_version: Some(ENGINE_VERSION.into()),
                labels: None,
                plugins: None,
            }),
            tls_info: None,
        }),
        status: Some(d::NodeStatus {
            state: serde_json::from_value(Value::String(n.status.clone())).ok(),
            message: (!n.status_message.is_empty()).then(|| n.status_message.clone()),
            addr: Some(ip),
        }),
        manager_status: (!n.manager_status.is_empty()).then(|| d::ManagerStatus {
            leader: (n.manager_status == "leader").then_some(true),
            reachability: Some(if n.manager_status == "unreachable" {
                d::Reachability::UNREACHABLE
            } else {
                d::Reachability::REACHABLE
            }),
            addr: Some(n.addr.clone()),
        }),
    };
    to_value(&node)
}

/// A secret or config (the same shape), without its bytes.
pub fn secret(s: &SecretInfo) -> Value {
    serde_json::json!({
        "ID": s.id,
        "Version": {"Index": s.updated_at_ms.max(s.created_at_ms)},
        "CreatedAt": date(s.created_at_ms),
        "UpdatedAt": date(s.updated_at_ms.max(s.created_at_ms)),
        "Spec": {"Name": s.name, "Labels": s.labels},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{ServiceSpec, Task, TaskStatus};

    #[test]
    fn a_service_shows_its_status_and_spec() {
        let info = ServiceInfo {
            id: "s1".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                image: "nginx".into(),
                replicas: 3,
                ..Default::default()
            }),
            replicas_running: 2,
            replicas_desired: 3,
            spec_version: 4,
            created_at_ms: 1_700_000_000_000,
            ..Default::default()
        };
        let v = service(&info, &[], true);
        assert_eq!(v["ID"], "s1");
        assert_eq!(v["Version"]["Index"], 4);
        assert_eq!(v["Spec"]["Name"], "web");
        assert_eq!(v["Spec"]["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(v["ServiceStatus"]["RunningTasks"], 2);
        assert_eq!(v["ServiceStatus"]["DesiredTasks"], 3);
        assert!(v.get("UpdateStatus").is_none());
        assert_eq!(v["CreatedAt"], "2023-11-14T22:13:20.000000000Z");
        assert!(service(&info, &[], false).get("ServiceStatus").is_none());
    }

    #[test]
    fn a_task_has_a_container_spec_and_docker_states() {
        let mut status = TaskStatus {
            container_id: "c1".into(),
            timestamp_ms: 1_700_000_000_000,
            ..Default::default()
        };
        status.set_state(TaskState::Running);
        let mut t = Task {
            id: "t1".into(),
            service_id: "s1".into(),
            slot: 2,
            node_id: "n1".into(),
            status: Some(status),
            spec: Some(ServiceSpec {
                image: "nginx".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        t.set_desired_state(TaskState::Running);
        let v = task(
            &TaskInfo {
                task: Some(t),
                node_hostname: "h1".into(),
            },
            &[],
        );
        assert_eq!(v["Status"]["State"], "running");
        assert_eq!(v["DesiredState"], "running");
        assert_eq!(v["Slot"], 2);
        assert_eq!(v["Spec"]["ContainerSpec"]["Image"], "nginx");
        assert_eq!(v["Status"]["ContainerStatus"]["ContainerID"], "c1");
    }

    #[test]
    fn a_node_shows_role_and_leadership() {
        let n = NodeInfo {
            id: "n1".into(),
            hostname: "h1".into(),
            role: "manager".into(),
            status: "ready".into(),
            availability: "drain".into(),
            manager_status: "leader".into(),
            addr: "10.0.0.1:4242".into(),
            ..Default::default()
        };
        let v = node(&n);
        assert_eq!(v["Spec"]["Role"], "manager");
        assert_eq!(v["Spec"]["Availability"], "drain");
        assert_eq!(v["Status"]["State"], "ready");
        assert_eq!(v["Status"]["Addr"], "10.0.0.1");
        assert_eq!(v["ManagerStatus"]["Leader"], true);
        assert_eq!(v["ManagerStatus"]["Reachability"], "reachable");
        assert_eq!(v["Description"]["Hostname"], "h1");
    }
}
