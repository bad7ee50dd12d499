//! Tasks: listings by service and node, and one task by ID, prefix or
//! `<service>.<slot>`.

use std::collections::HashMap;

use swarmlet_common::task_name::task_name;
use swarmlet_common::task_state::desired;
use swarmlet_proto::control::TaskInfo;
use swarmlet_proto::objects::{Node, Service, Task, TaskState};

use super::{OpsError, OpsResult};
use crate::manager::Manager;
use crate::resolve::resolve_service;

/// Tasks, optionally of one service and/or on one node.
pub async fn list(m: &Manager, service: &str, node: &str) -> OpsResult<Vec<TaskInfo>> {
    m.read_barrier().await?;
    let nodes = m.nodes()?;
    let service_id = if service.is_empty() {
        None
    } else {
        let services = m.store.list::<Service>()?;
        Some(resolve_service(&services, service)?.1.id)
    };
    let node_id = if node.is_empty() {
        None
    } else {
        Some(crate::resolve::resolve_node(&nodes, node)?.1.id)
    };
    let hostnames: HashMap<String, String> = nodes
        .into_iter()
        .map(|(_, n): (u64, Node)| (n.id, n.hostname))
        .collect();
    let mut out: Vec<TaskInfo> = m
        .store
        .list::<Task>()?
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| service_id.as_ref().is_none_or(|s| *s == t.service_id))
        .filter(|t| node_id.as_ref().is_none_or(|n| *n == t.node_id))
        .map(|t| TaskInfo {
            node_hostname: hostnames.get(&t.node_id).cloned().unwrap_or_default(),
            task: Some(t),
        })
        .collect();
    out.sort_by(|a, b| {
        let key = |i: &TaskInfo| {
            let t = i.task.clone().unwrap_or_default();
            (
                t.service_name,
                t.slot,
                t.node_id,
                std::cmp::Reverse(t.created_at_ms),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// One task by ID, unique ID prefix, or `<service>.<slot>` (the running one).
pub async fn inspect(m: &Manager, reference: &str) -> OpsResult<TaskInfo> {
    let all = list(m, "", "").await?;
    let matches: Vec<&TaskInfo> = all
        .iter()
        .filter(|i| {
            i.task.as_ref().is_some_and(|t| {
                t.id == reference || (task_name(t) == reference && desired(t) <= TaskState::Running)
            })
        })
        .collect();
    if let [one] = matches.as_slice() {
        return Ok((*one).clone());
    }
    let by_prefix: Vec<&TaskInfo> = all
        .iter()
        .filter(|i| i.task.as_ref().is_some_and(|t| t.id.starts_with(reference)))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(OpsError::not_found("task", reference)),
        _ => Err(OpsError::Ambiguous {
            kind: "task",
            reference: reference.to_string(),
            detail: String::new(),
        }),
    }
}
