//! `/tasks`: list (filters `id`, `name`, `service`, `node`, `label`,
//! `desired-state`, `_up-to-date`) and inspect.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;
use swarmlet_common::task_state::state_name;
use swarmlet_proto::control::{NodeInfo, ServiceInfo, TaskInfo};

use super::Query;
use crate::backend::Backend;
use crate::convert::objects;
use crate::error::ApiResult;
use crate::filters::Filters;

/// The IDs a filter's references (ID, name or ID prefix) name; `None`: the
/// filter is absent.
fn resolve<'a, T>(
    wanted: &[String],
    items: &'a [T],
    id: impl Fn(&'a T) -> &'a str,
    name: impl Fn(&'a T) -> &'a str,
) -> Option<Vec<&'a str>> {
    if wanted.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for w in wanted {
        if let Some(x) = items.iter().find(|x| id(x) == w || name(x) == w) {
            out.push(id(x));
            continue;
        }
        let prefixed: Vec<_> = items
            .iter()
            .filter(|x| id(x).starts_with(w.as_str()))
            .collect();
        if let [one] = prefixed.as_slice() {
            out.push(id(one));
        }
    }
    Some(out)
}

/// `GET /tasks`.
pub async fn list(State(b): State<Backend>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &[
            "id",
            "name",
            "service",
            "node",
            "label",
            "desired-state",
            "_up-to-date",
            "runtime",
        ],
    )?;
    let services: Vec<ServiceInfo> = b.services().await?;
    let services_by_id: HashMap<&str, &ServiceInfo> =
        services.iter().map(|s| (s.id.as_str(), s)).collect();
    let service_ids = resolve(
        f.get("service"),
        &services,
        |s| &s.id,
        |s| s.spec.as_ref().map(|x| x.name.as_str()).unwrap_or(""),
    );
    let nodes: Vec<NodeInfo> = if f.get("node").is_empty() {
        Vec::new()
    } else {
        b.nodes().await?
    };
    let node_ids = resolve(f.get("node"), &nodes, |n| &n.id, |n| &n.hostname);
    let up_to_date = f.get("_up-to-date").iter().any(|v| v == "true" || v == "1");
    let networks = b.networks().await?;
    let tasks: Vec<TaskInfo> = b.tasks("", "").await?;
    Ok(Json(
        tasks
            .iter()
            .filter(|info| {
                let Some(t) = info.task.as_ref() else {
                    return false;
                };
                let name = swarmlet_common::task_name::task_name(t);
                // Docker matches a task's labels against its service's
                // (what `docker stack ps` filters on).
                let labels = t
                    .spec
                    .as_ref()
                    .map(|s| s.labels.clone())
                    .unwrap_or_default();
                f.accepts_prefix("id", &t.id)
                    && f.accepts("name", &name)
                    && service_ids
                        .as_ref()
                        .is_none_or(|ids| ids.contains(&t.service_id.as_str()))
                    && node_ids
                        .as_ref()
                        .is_none_or(|ids| ids.contains(&t.node_id.as_str()))
                    && f.accepts("desired-state", state_name(t.desired_state()))
                    && f.accepts_labels(&labels)
                    && (!up_to_date
                        || services_by_id
                            .get(t.service_id.as_str())
                            .is_some_and(|s| t.service_version >= s.spec_version))
            })
            .map(|t| objects::task(t, &networks))
            .collect(),
    ))
}

/// `GET /tasks/{id}`.
pub async fn inspect(State(b): State<Backend>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let t = b.task(&id).await?;
    let networks = b.networks().await?;
    Ok(Json(objects::task(&t, &networks)))
}
