//! `/networks`: list (filters `id`, `name`, `driver`, `scope`, `label`,
//! `type`), inspect, create (overlay only, with Attachable, IPAM and
//! labels) and remove.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use swarmlet_proto::objects::{Network, NetworkSpec};

use super::{json_body, labels_of, Query};
use crate::backend::Backend;
use crate::convert::time::date;
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;

/// A network as Docker shows a swarm-scoped one.
fn network_json(n: &Network) -> Value {
    let spec = n.spec.clone().unwrap_or_default();
    json!({
        "Name": spec.name,
        "Id": n.id,
        "Created": date(n.created_at_ms),
        "Scope": "swarm",
        "Driver": "overlay",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": [{"Subnet": n.subnet, "Gateway": n.gateway}],
        },
        "Internal": false,
        "Attachable": spec.attachable,
        "Ingress": spec.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": null,
        "Options": {"com.docker.network.driver.overlay.vxlanid_list": n.vni.to_string()},
        "Labels": spec.labels,
    })
}

/// `GET /networks`.
pub async fn list(State(b): State<Backend>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["id", "name", "driver", "scope", "label", "type", "dangling"],
    )?;
    let networks = b.networks().await?;
    Ok(Json(
        networks
            .iter()
            .filter(|n| {
                let spec = n.spec.clone().unwrap_or_default();
                f.accepts_prefix("id", &n.id)
                    && (f.get("name").is_empty()
                        || f.get("name").iter().any(|w| spec.name.contains(w.as_str())))
                    && f.accepts("driver", "overlay")
                    && f.accepts("scope", "swarm")
                    && f.accepts("type", "custom")
                    && f.accepts_labels(&spec.labels)
            })
            .map(network_json)
            .collect(),
    ))
}

/// `GET /networks/{id}`.
pub async fn inspect(State(b): State<Backend>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(network_json(&b.network(&id).await?)))
}

/// `POST /networks/create`: 201 with the ID.
pub async fn create(State(b): State<Backend>, body: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = json_body(&body)?;
    let name = req.get("Name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::bad_request("a network name is required"));
    }
    match req.get("Driver").and_then(Value::as_str).unwrap_or("") {
        "overlay" => {}
        "" | "bridge" => {
            return Err(ApiError::bad_request(
                "Swarmlet serves overlay networks only: use `docker network create -d overlay`",
            ))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "network driver {other:?} is not supported by Swarmlet (overlay is)"
            )))
        }
    }
    let bool_of = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
    for unsupported in ["Internal", "EnableIPv6", "ConfigOnly"] {
        if bool_of(unsupported) {
            return Err(ApiError::bad_request(format!(
                "{unsupported} networks are not supported by Swarmlet"
            )));
        }
    }
    let configs = req
        .pointer("/IPAM/Config")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if configs.len() > 1 {
        return Err(ApiError::bad_request(
            "Swarmlet networks have one subnet: give at most one IPAM config",
        ));
    }
    let field = |k: &str| {
        configs
            .first()
            .and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let labels = labels_of(&req).into_iter().collect();
    let network = b
        .create_network(NetworkSpec {
            name: name.to_string(),
            driver: "overlay".into(),
            attachable: bool_of("Attachable"),
            subnet: field("Subnet"),
            gateway: field("Gateway"),
            labels,
            ingress: bool_of("Ingress"),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": network.id, "Warning": ""})),
    ))
}

/// How long a network's removal waits for the tasks of removed services
/// to let go of their addresses.
const STOPPING_TASKS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `DELETE /networks/{id}`: 204. `docker stack rm` removes a stack's
/// services and then at once its networks, while the services' tasks are
/// still stopping (they hold addresses until they end); Docker lets the
/// network go then, so a refusal that names only stopping tasks is retried
/// until they end (up to 30 s), and a network a service or a running
/// container uses is refused at once.
pub async fn remove(State(b): State<Backend>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let deadline = tokio::time::Instant::now() + STOPPING_TASKS_WAIT;
    loop {
        match b.remove_network(&id).await {
            Ok(()) => return Ok(StatusCode::NO_CONTENT),
            Err(e) if stopping_tasks_only(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a refusal names only tasks that are still ending.
fn stopping_tasks_only(e: &ApiError) -> bool {
    e.message.contains("is in use by a task of service") && e.message.contains("active endpoint")
}
