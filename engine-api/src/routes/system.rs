//! `/_ping`, `/version`, `/info` (with its `Swarm` section), `/swarm`, and
//! `/distribution` (no registry is reachable: the CLI warns and goes on).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::backend::Backend;
use crate::convert::objects::{host_of, ENGINE_VERSION};
use crate::convert::time::{date, ms_to_ns};
use crate::error::{ApiError, ApiResult};
use crate::version::{API_VERSION, MIN_API_VERSION};

/// The node's swarm state as the `Swarm` ping header gives it.
fn swarm_state(b: &Backend) -> &'static str {
    match b.manager() {
        Ok(_) => "active/manager",
        Err(e) if e.message.contains("locked") => "locked",
        Err(_) => "active/worker",
    }
}

/// `GET|HEAD /_ping`.
pub async fn ping(State(b): State<Backend>) -> impl IntoResponse {
    let mut h = HeaderMap::new();
    h.insert("Swarm", HeaderValue::from_static(swarm_state(&b)));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    h.insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    (h, "OK")
}

/// The Go name of this machine's architecture, as Docker reports it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": "Swarmlet"},
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": go_arch(),
                "KernelVersion": kernel_version(),
            }
        }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel_version(),
    }))
}

/// The cluster as `/swarm` and `/info`'s `Swarm.Cluster` show it.
async fn cluster_json(b: &Backend) -> ApiResult<Value> {
    let c = b.cluster().await?;
    Ok(json!({
        "ID": c.id,
        "Version": {"Index": c.raft_commit_index},
        "CreatedAt": date(c.created_at_ms),
        "UpdatedAt": date(c.updated_at_ms),
        "Spec": {
            "Name": if c.name.is_empty() { "default".to_string() } else { c.name.clone() },
            "Labels": {},
            "Orchestration": {"TaskHistoryRetentionLimit": c.task_history_limit},
            "Raft": {"ElectionTick": 10, "HeartbeatTick": 1},
            "Dispatcher": {"HeartbeatPeriod": ms_to_ns(c.heartbeat_period_ms)},
            "CAConfig": {"NodeCertExpiry": ms_to_ns(c.node_cert_expiry_ms)},
            "TaskDefaults": {},
            "EncryptionConfig": {"AutoLockManagers": c.autolock},
        },
        "RootRotationInProgress": c.ca_rotating,
        "DefaultAddrPool": [c.default_addr_pool],
        "SubnetSize": c.default_addr_pool_mask_len,
        "DataPathPort": 4789,
    }))
}

/// `GET /info`: the node and its `Swarm` section.
pub async fn info(State(b): State<Backend>) -> ApiResult<Json<Value>> {
    let mut swarm = json!({
        "NodeID": "",
        "NodeAddr": "",
        "LocalNodeState": "active",
        "ControlAvailable": false,
        "Error": "",
        "RemoteManagers": null,
    });
    let mut hostname = String::new();
    let (mut ncpu, mut mem) = (0i64, 0i64);
    match b.manager() {
        Ok(m) => {
            let nodes = b.nodes().await?;
            let managers: Vec<_> = nodes.iter().filter(|n| n.role == "manager").collect();
            let me = nodes.iter().find(|n| n.id == m.node_id);
            if let Some(me) = me {
                hostname = me.hostname.clone();
                let r = me.resources.unwrap_or_default();
                ncpu = r.nano_cpus / 1_000_000_000;
                mem = r.memory_bytes;
            }
            swarm = json!({
                "NodeID": m.node_id,
                "NodeAddr": me.map(|n| host_of(&n.addr)).unwrap_or_default(),
                "LocalNodeState": "active",
                "ControlAvailable": true,
                "Error": "",
                "RemoteManagers": managers.iter().map(|n| json!({"NodeID": n.id, "Addr": n.addr})).collect::<Vec<_>>(),
                "Nodes": nodes.len(),
                "Managers": managers.len(),
                "Cluster": cluster_json(&b).await?,
            });
        }
        Err(e) if e.message.contains("locked") => {
            swarm["LocalNodeState"] = json!("locked");
            swarm["Error"] = json!(e.message);
        }
        Err(_) => {}
    }
    Ok(Json(json!({
        "ID": swarm["NodeID"],
        "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
        "Images": 0,
        "Driver": "swarmlet",
        "DriverStatus": [],
        "Plugins": {"Volume": [], "Network": ["overlay"], "Authorization": null, "Log": []},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0, "NGoroutines": 0,
        "SystemTime": date(swarmlet_common::clock::now_ms()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "systemd", "CgroupVersion": "2",
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": "Swarmlet",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [], "InsecureRegistryCIDRs": [], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": ncpu,
        "MemTotal": mem,
        "GenericResources": null,
        "DockerRootDir": "",
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": ENGINE_VERSION,
        "Runtimes": {},
        "DefaultRuntime": "runc",
        "Swarm": swarm,
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": [],
        "Warnings": null,
    })))
}

/// `GET /swarm`: the cluster (join tokens included, as Docker gives them
/// to managers).
pub async fn swarm(State(b): State<Backend>) -> ApiResult<Json<Value>> {
    b.manager()?;
    let mut c = cluster_json(&b).await?;
    let worker = b.join_token("worker").await?.token;
    let manager = b.join_token("manager").await?.token;
    c["JoinTokens"] = json!({"Worker": worker, "Manager": manager});
    Ok(Json(c))
}

/// `GET /distribution/{image}/json`: no registry is reachable from a
/// Swarmlet cluster's managers, so image digests are not resolved; the CLI
/// prints a warning and each node uses its own copy of the image.
pub async fn distribution(Path(image): Path<String>) -> ApiError {
    let image = image.strip_suffix("/json").unwrap_or(&image);
    ApiError::not_found(format!(
        "cannot resolve {image} on a registry: Swarmlet does not contact registries; each node uses its local image"
    ))
}
