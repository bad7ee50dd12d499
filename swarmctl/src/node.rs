//! `swarmctl node join|leave|ls|inspect|ps|update|promote|demote|rm`.

use std::collections::HashMap;

use anyhow::anyhow;
use serde_json::json;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{
    NodeInfo, NodeRef, RemoveNodeRequest, SetRoleRequest, UpdateNodeRequest,
};
use swarmlet_proto::local::local_client::LocalClient;
use swarmlet_proto::local::{JoinRequest, LeaveRequest};

use crate::cli::NodeCmd;
use crate::globals::{Format, Globals};
use crate::output::{connect, json as print_json, status, table, time};

fn node_json(n: &NodeInfo) -> serde_json::Value {
    json!({
        "id": n.id,
        "hostname": n.hostname,
        "role": n.role,
        "status": n.status,
        "availability": n.availability,
        "manager_status": if n.manager_status.is_empty() { serde_json::Value::Null } else { json!(n.manager_status) },
        "addr": n.addr,
        "labels": n.labels,
        "status_message": n.status_message,
        "lb_addresses": n.lb_addresses.iter().map(|a| json!({
            "network": a.network_name,
            "ip": a.address.split('/').next().unwrap_or(""),
        })).collect::<Vec<_>>(),
        "created_at": time(n.created_at_ms),
        "updated_at": time(n.updated_at_ms),
    })
}

fn parse_labels(items: &[String]) -> anyhow::Result<HashMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            None if !kv.is_empty() => Ok((kv.clone(), String::new())),
            _ => Err(anyhow!("invalid label {kv:?}: expected KEY=VALUE")),
        })
        .collect()
}

/// Runs a `node` subcommand.
pub async fn run(cli: &Globals, cmd: &NodeCmd) -> anyhow::Result<()> {
    let channel = connect(&cli.host)?;
    let mut control = ControlClient::new(channel.clone()).with_limits();
    match cmd {
        NodeCmd::Join {
            token,
            manager,
            advertise_addr,
        } => {
            let r = LocalClient::new(channel)
                .with_limits()
                .join(JoinRequest {
                    token: token.clone(),
                    remote_addr: manager.clone(),
                    advertise_addr: advertise_addr.clone().unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "This node joined a swarm as a {} (node ID {}).",
                r.role, r.node_id
            );
        }
        NodeCmd::Leave { force } => {
            LocalClient::new(channel)
                .with_limits()
                .leave(LeaveRequest { force: *force })
                .await
                .map_err(status)?;
            println!("Node left the swarm.");
        }
        NodeCmd::Ls => {
            let nodes = control
                .list_nodes(Empty {})
                .await
                .map_err(status)?
                .into_inner()
                .nodes;
            if cli.format == Format::Json {
                print_json(&serde_json::Value::Array(
                    nodes.iter().map(node_json).collect(),
                ));
            } else {
                let rows: Vec<Vec<String>> = nodes
                    .iter()
                    .map(|n| {
                        vec![
                            n.id.clone(),
                            n.hostname.clone(),
                            n.status.clone(),
                            n.availability.clone(),
                            n.manager_status.clone(),
                            n.addr.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "HOSTNAME",
                        "STATUS",
                        "AVAILABILITY",
                        "MANAGER STATUS",
                        "ADDR",
                    ],
                    &rows,
                );
            }
        }
        NodeCmd::Inspect { node } => {
            let n = control
                .inspect_node(NodeRef { node: node.clone() })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", serde_json::to_string_pretty(&node_json(&n))?);
        }
        NodeCmd::Ps { node } => {
            let reference = match node {
                Some(n) => n.clone(),
                None => {
                    let info = LocalClient::new(channel)
                        .with_limits()
                        .info(Empty {})
                        .await
                        .map_err(status)?
                        .into_inner();
                    if info.node_id.is_empty() {
                        return Err(anyhow!("this node is not part of a swarm"));
                    }
                    info.node_id
                }
            };
            let tasks = control
                .list_tasks(swarmlet_proto::control::ListTasksRequest {
                    service: String::new(),
                    node: reference,
                })
                .await
                .map_err(status)?
                .into_inner()
                .tasks;
            crate::task::print_task_list(cli.format, &tasks);
        }
        NodeCmd::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            let n = control
                .update_node(UpdateNodeRequest {
                    node: node.clone(),
                    availability: availability.clone(),
                    label_add: parse_labels(label_add)?,
                    label_rm: label_rm.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", n.id);
        }
        NodeCmd::Promote { nodes } | NodeCmd::Demote { nodes } => {
            let role = if matches!(cmd, NodeCmd::Promote { .. }) {
                "manager"
            } else {
                "worker"
            };
            for node in nodes {
                let n = control
                    .set_node_role(SetRoleRequest {
                        node: node.clone(),
                        role: role.into(),
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                println!("Node {} is now a {role}.", n.hostname);
            }
        }
        NodeCmd::Rm { force, nodes } => {
            for node in nodes {
                control
                    .remove_node(RemoveNodeRequest {
                        node: node.clone(),
                        force: *force,
                    })
                    .await
                    .map_err(status)?;
                println!("{node}");
            }
        }
    }
    Ok(())
}
