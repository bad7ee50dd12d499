//! `swarmctl cluster init|inspect|update|join-token`.

use anyhow::anyhow;
use serde_json::json;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{ClusterInfo, JoinTokenRequest, UpdateClusterRequest};
use swarmlet_proto::local::local_client::LocalClient;
use swarmlet_proto::local::InitRequest;

use crate::cli::{Cli, ClusterCmd, Format};
use crate::output::{connect, json as print_json, status, time};

fn cluster_json(c: &ClusterInfo) -> serde_json::Value {
    json!({
        "id": c.id,
        "name": c.name,
        "heartbeat_period_ms": c.heartbeat_period_ms,
        "task_history_limit": c.task_history_limit,
        "default_addr_pool": c.default_addr_pool,
        "default_addr_pool_mask_len": c.default_addr_pool_mask_len,
        "root_ca_digest": c.root_ca_digest,
        "created_at": time(c.created_at_ms),
        "updated_at": time(c.updated_at_ms),
        "raft_term": c.raft_term,
        "raft_commit_index": c.raft_commit_index,
        "leader": c.leader_node_id,
        "node_cert_expiry_ms": c.node_cert_expiry_ms,
    })
}

/// Runs a `cluster` subcommand.
pub async fn run(cli: &Cli, cmd: &ClusterCmd) -> anyhow::Result<()> {
    let channel = connect(&cli.host)?;
    match cmd {
        ClusterCmd::Init {
            advertise_addr,
            default_addr_pool,
            default_addr_pool_mask_len,
        } => {
            let resp = LocalClient::new(channel)
                .init(InitRequest {
                    advertise_addr: advertise_addr.clone().unwrap_or_default(),
                    default_addr_pool: default_addr_pool.clone().unwrap_or_default(),
                    default_addr_pool_mask_len: default_addr_pool_mask_len.unwrap_or(0),
                })
                .await
                .map_err(status)?
                .into_inner();
            if cli.format == Format::Json {
                print_json(&json!({
                    "node_id": resp.node_id,
                    "cluster_id": resp.cluster_id,
                    "worker_token": resp.worker_token,
                    "manager_token": resp.manager_token,
                    "manager_addr": resp.manager_addr,
                }));
            } else {
                println!(
                    "Swarm initialized: current node ({}) is now a manager.\n",
                    resp.node_id
                );
                println!("To add a worker to this swarm, run the following command:\n");
                println!(
                    "    swarmctl node join --token {} {}\n",
                    resp.worker_token, resp.manager_addr
                );
                println!("To add a manager to this swarm, run the following command:\n");
                println!(
                    "    swarmctl node join --token {} {}",
                    resp.manager_token, resp.manager_addr
                );
            }
        }
        ClusterCmd::Inspect => {
            let c = ControlClient::new(channel)
                .get_cluster(Empty {})
                .await
                .map_err(status)?
                .into_inner();
            // inspect prints one JSON object in either format.
            println!("{}", serde_json::to_string_pretty(&cluster_json(&c))?);
        }
        ClusterCmd::Update {
            heartbeat_period,
            task_history_limit,
            cert_expiry,
        } => {
            let duration = |flag: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|p| {
                        humantime::parse_duration(p).map_err(|_| {
                            anyhow!("invalid --{flag} {p:?}: expected a duration like 1s or 500ms")
                        })
                    })
                    .transpose()
            };
            let period = duration("heartbeat-period", heartbeat_period)?;
            let expiry = duration("cert-expiry", cert_expiry)?;
            if period.is_none() && task_history_limit.is_none() && expiry.is_none() {
                return Err(anyhow!(
                    "nothing to update: give --heartbeat-period, --task-history-limit or --cert-expiry"
                ));
            }
            let c = ControlClient::new(channel)
                .update_cluster(UpdateClusterRequest {
                    heartbeat_period_ms: period.map(|d| d.as_millis() as u64),
                    task_history_limit: *task_history_limit,
                    node_cert_expiry_ms: expiry.map(|d| d.as_millis() as u64),
                })
                .await
                .map_err(status)?
                .into_inner();
            if cli.format == Format::Json {
                print_json(&cluster_json(&c));
            } else {
                println!("{}", c.id);
            }
        }
        ClusterCmd::JoinToken {
            role,
            rotate,
            quiet,
        } => {
            if role != "worker" && role != "manager" {
                return Err(anyhow!("unknown role {role:?}: use worker or manager"));
            }
            let t = ControlClient::new(channel)
                .get_join_token(JoinTokenRequest {
                    role: role.clone(),
                    rotate: *rotate,
                })
                .await
                .map_err(status)?
                .into_inner();
            if *quiet {
                println!("{}", t.token);
            } else if cli.format == Format::Json {
                print_json(
                    &json!({"role": role, "token": t.token, "manager_addr": t.manager_addr}),
                );
            } else {
                if *rotate {
                    println!("Successfully rotated {role} join token.\n");
                }
                println!("To add a {role} to this swarm, run the following command:\n");
                println!(
                    "    swarmctl node join --token {} {}",
                    t.token, t.manager_addr
                );
            }
        }
    }
    Ok(())
}
