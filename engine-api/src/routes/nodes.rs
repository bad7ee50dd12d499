//! `/nodes`: list (filters `id`, `name`, `role`, `membership`, `label`,
//! `node.label`), inspect, update (availability, labels, role) and remove.
//!
//! A node's `Version.Index` is its last update time; an update's `version`
//! is not compared (a node's record also changes with its heartbeats, so a
//! check would refuse most edits), as the control API does not either.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;
use swarmlet_proto::control::{NodeInfo, UpdateNodeRequest};

use super::{flag, json_body, Query};
use crate::backend::Backend;
use crate::convert::objects;
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;

fn matches(f: &Filters, n: &NodeInfo) -> bool {
    f.accepts_prefix("id", &n.id)
        && f.accepts("name", &n.hostname)
        && f.accepts("role", &n.role)
        && f.accepts("membership", "accepted")
        && f.accepts_labels(&n.labels)
        && f.get("node.label").iter().all(|want| {
            let (k, v) = want.split_once('=').unwrap_or((want.as_str(), ""));
            n.labels
                .get(k)
                .is_some_and(|x| !want.contains('=') || x == v)
        })
}

/// `GET /nodes`.
pub async fn list(State(b): State<Backend>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["id", "name", "role", "membership", "label", "node.label"],
    )?;
    let nodes = b.nodes().await?;
    Ok(Json(
        nodes
            .iter()
            .filter(|n| matches(&f, n))
            .map(objects::node)
            .collect(),
    ))
}

/// `GET /nodes/{id}`.
pub async fn inspect(State(b): State<Backend>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(objects::node(&b.node(&id).await?)))
}

/// `POST /nodes/{id}/update?version=N` with a NodeSpec: availability,
/// labels (replaced as a whole) and role.
pub async fn update(
    State(b): State<Backend>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<()> {
    let spec = json_body(&body)?;
    let current = b.node(&id).await?;
    let availability = match spec.get("Availability").and_then(Value::as_str) {
        None | Some("") => None,
        Some(a @ ("active" | "pause" | "drain")) => Some(a.to_string()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid availability {other:?}: expected active, pause or drain"
            )))
        }
    };
    let mut label_add = std::collections::HashMap::new();
    let mut label_rm = Vec::new();
    if let Some(labels) = spec.get("Labels").and_then(Value::as_object) {
        for (k, v) in labels {
            label_add.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
        label_rm = current
            .labels
            .keys()
            .filter(|k| !labels.contains_key(*k))
            .cloned()
            .collect();
    } else if spec.get("Labels").is_some_and(Value::is_null) {
        label_rm = current.labels.keys().cloned().collect();
    }
    b.update_node(UpdateNodeRequest {
        node: current.id.clone(),
        availability,
        label_add: label_add.into_iter().collect(),
        label_rm,
    })
    .await?;
    match spec.get("Role").and_then(Value::as_str) {
        None | Some("") => {}
        Some(role @ ("manager" | "worker")) if role != current.role => {
            b.set_node_role(&current.id, role).await?;
        }
        Some("manager" | "worker") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid role {other:?}: expected manager or worker"
            )))
        }
    }
    Ok(())
}

/// `DELETE /nodes/{id}?force=bool`.
pub async fn remove(State(b): State<Backend>, Path(id): Path<String>, q: Query) -> ApiResult<()> {
    b.remove_node(&id, flag(&q, "force")).await?;
    Ok(())
}
