//! `service logs`: the manager called collects a service's task output from
//! every node that ran its tasks (each node's `NodeLogs` service over mTLS),
//! tags each chunk with `<task name>.<task id>@<node>` and merges the
//! streams. Any manager answers from its own store; no leader needed.

use std::collections::HashMap;

use crate::ops::OpsError;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use swarmlet_common::grpc::WithLimits;
use swarmlet_common::task_name::container_name;
use swarmlet_proto::logs::node_logs_client::NodeLogsClient;
use swarmlet_proto::logs::{LogLine, TaskLogsRequest};
use swarmlet_proto::objects::{Node, Service, Task};
use tonic::Status;

use crate::manager::Manager;
use crate::resolve::resolve_service;

/// A merged stream of output chunks.
pub type Lines = BoxStream<'static, Result<LogLine, Status>>;

fn task_source(t: &Task, hostname: &str) -> String {
    format!("{}@{hostname}", container_name(t))
}

/// The output of `reference`'s tasks.
pub async fn service_logs(
    m: &Manager,
    reference: &str,
    follow: bool,
    tail: i64,
) -> Result<Lines, Status> {
    let services = m.store.list::<Service>().map_err(OpsError::from)?;
    let (_, service) = resolve_service(&services, reference)?;
    let nodes: HashMap<String, Node> = m
        .store
        .list::<Node>()
        .map_err(OpsError::from)?
        .into_iter()
        .map(|(_, n)| (n.id.clone(), n))
        .collect();
    // Per node: its tasks' containers and their labels.
    let mut per_node: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (_, t) in m.store.list::<Task>().map_err(OpsError::from)? {
        let container = t
            .status
            .as_ref()
            .map(|s| s.container_id.clone())
            .unwrap_or_default();
        if t.service_id != service.id || container.is_empty() {
            continue;
        }
        let hostname = nodes
            .get(&t.node_id)
            .map(|n| n.hostname.clone())
            .unwrap_or_default();
        per_node
            .entry(t.node_id.clone())
            .or_default()
            .push((container, task_source(&t, &hostname)));
    }
    let mut streams: Vec<Lines> = Vec::new();
    for (node_id, containers) in per_node {
        let Some(node) = nodes.get(&node_id) else {
            continue;
        };
        let sources: HashMap<String, String> = containers.iter().cloned().collect();
        let request = TaskLogsRequest {
            container_ids: containers.into_iter().map(|(c, _)| c).collect(),
            follow,
            tail,
        };
        let hostname = node.hostname.clone();
        // Verified as that very node (its certificate names its ID), whatever
        // its role.
        let lines = match m.channel_to_node(&node.id, &node.addr) {
            Ok(ch) => {
                NodeLogsClient::new(ch)
                    .with_limits()
                    .task_logs(request)
                    .await
            }
            Err(e) => Err(Status::from(e)),
        };
        match lines {
            Ok(r) => streams.push(
                r.into_inner()
                    .map(move |line| {
                        line.map(|mut l| {
                            l.source = sources.get(&l.container_id).cloned().unwrap_or_default();
                            l
                        })
                    })
                    .boxed(),
            ),
            Err(e) => streams.push(
                stream::iter([Ok(LogLine {
                    container_id: String::new(),
                    data: format!("cannot read logs from node {hostname}: {}\n", e.message())
                        .into_bytes(),
                    stderr: true,
                    source: format!("@{hostname}"),
                    unreadable: true,
                })])
                .boxed(),
            ),
        }
    }
    Ok(stream::select_all(streams).boxed())
}
