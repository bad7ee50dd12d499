//! `swarmctl cluster init|inspect|update|join-token|web-token|unlock|unlock-key|ca`.

use anyhow::anyhow;
use serde_json::json;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{
    ClusterInfo, JoinTokenRequest, UnlockKeyRequest, UpdateClusterRequest, WebTokenRequest,
};
use swarmlet_proto::local::local_client::LocalClient;
use swarmlet_proto::local::{InitRequest, UnlockRequest};

use crate::cli::ClusterCmd;
use crate::globals::{Format, Globals};
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
        "autolock": c.autolock,
    })
}

/// Runs a `cluster` subcommand.
pub async fn run(cli: &Globals, cmd: &ClusterCmd) -> anyhow::Result<()> {
    let channel = connect(&cli.host)?;
    match cmd {
        ClusterCmd::Init {
            advertise_addr,
            default_addr_pool,
            default_addr_pool_mask_len,
            autolock,
        } => {
            let resp = LocalClient::new(channel)
                .with_limits()
                .init(InitRequest {
                    advertise_addr: advertise_addr.clone().unwrap_or_default(),
                    default_addr_pool: default_addr_pool.clone().unwrap_or_default(),
                    default_addr_pool_mask_len: default_addr_pool_mask_len.unwrap_or(0),
                    autolock: *autolock,
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
                    "unlock_key": Some(&resp.unlock_key).filter(|k| !k.is_empty()),
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
                if !resp.unlock_key.is_empty() {
                    println!();
                    print_unlock_key(&resp.unlock_key);
                }
            }
        }
        ClusterCmd::Inspect => {
            let c = ControlClient::new(channel)
                .with_limits()
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
            autolock,
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
            if period.is_none()
                && task_history_limit.is_none()
                && expiry.is_none()
                && autolock.is_none()
            {
                return Err(anyhow!(
                    "nothing to update: give --heartbeat-period, --task-history-limit, --cert-expiry or --autolock"
                ));
            }
            let mut client = ControlClient::new(channel).with_limits();
            let c = client
                .update_cluster(UpdateClusterRequest {
                    heartbeat_period_ms: period.map(|d| d.as_millis() as u64),
                    task_history_limit: *task_history_limit,
                    node_cert_expiry_ms: expiry.map(|d| d.as_millis() as u64),
                    autolock: *autolock,
                })
                .await
                .map_err(status)?
                .into_inner();
            // Turning autolock on shows the key it needs from now on.
            let unlock_key = match autolock {
                Some(true) => Some(
                    client
                        .get_unlock_key(UnlockKeyRequest { rotate: false })
                        .await
                        .map_err(status)?
                        .into_inner()
                        .unlock_key,
                ),
                _ => None,
            };
            if cli.format == Format::Json {
                let mut out = cluster_json(&c);
                if let Some(k) = &unlock_key {
                    out["unlock_key"] = json!(k);
                }
                print_json(&out);
            } else {
                println!("{}", c.id);
                if let Some(k) = &unlock_key {
                    println!();
                    print_unlock_key(k);
                }
            }
        }
        ClusterCmd::Ca { rotate, detach } => {
            let mut client = ControlClient::new(channel).with_limits();
            let c = if *rotate {
                client
                    .rotate_root_ca(Empty {})
                    .await
                    .map_err(status)?
                    .into_inner()
            } else {
                client
                    .get_cluster(Empty {})
                    .await
                    .map_err(status)?
                    .into_inner()
            };
            let c = if *rotate && !*detach {
                wait_for_rotation(&mut client).await?
            } else {
                c
            };
            if cli.format == Format::Json {
                print_json(&json!({
                    "root_ca_digest": c.root_ca_digest,
                    "rotating": c.ca_rotating,
                    "nodes_pending": c.ca_rotation_pending,
                }));
            } else if c.ca_rotating {
                println!(
                    "Root CA {}: rotation in progress, {} node(s) still on the old root",
                    c.root_ca_digest, c.ca_rotation_pending
                );
            } else {
                println!("Root CA {}", c.root_ca_digest);
            }
        }
        ClusterCmd::Unlock => {
            let key = read_unlock_key()?;
            LocalClient::new(channel)
                .with_limits()
                .unlock(UnlockRequest { unlock_key: key })
                .await
                .map_err(status)?;
        }
        ClusterCmd::UnlockKey { rotate, quiet } => {
            let key = ControlClient::new(channel)
                .with_limits()
                .get_unlock_key(UnlockKeyRequest { rotate: *rotate })
                .await
                .map_err(status)?
                .into_inner()
                .unlock_key;
            if *quiet {
                println!("{key}");
            } else if cli.format == Format::Json {
                print_json(&json!({ "unlock_key": key }));
            } else {
                if *rotate {
                    println!("Successfully rotated manager unlock key.\n");
                }
                print_unlock_key(&key);
            }
        }
        ClusterCmd::WebToken { rotate, quiet } => {
            let token = ControlClient::new(channel)
                .with_limits()
                .get_web_token(WebTokenRequest { rotate: *rotate })
                .await
                .map_err(status)?
                .into_inner()
                .token;
            if *quiet {
                println!("{token}");
            } else if cli.format == Format::Json {
                print_json(&json!({ "web_token": token }));
            } else {
                if *rotate {
                    println!("Successfully rotated the web token.\n");
                }
                println!(
                    "Open the cluster view of a manager served with `swarmd --web-addr` as:\n\n    http://MANAGER:PORT/?token={token}\n"
                );
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
                .with_limits()
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

fn print_unlock_key(key: &str) {
    println!(
        "To unlock a swarm manager after it restarts, run the `swarmctl cluster unlock`\n\
         command and provide the following key:\n\n    {key}\n\n\
         Remember to store this key in a password manager: without it a restarted\n\
         manager cannot be unlocked."
    );
}

/// The unlock key from stdin, with a prompt when stdin is a terminal.
fn read_unlock_key() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Enter unlock key: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let key = line.trim().to_string();
    if key.is_empty() {
        return Err(anyhow!("no unlock key given"));
    }
    Ok(key)
}

/// Waits until every node has a certificate from the new root and the old
/// root is retired, saying how many nodes are left as that changes.
async fn wait_for_rotation(
    client: &mut ControlClient<tonic::transport::Channel>,
) -> anyhow::Result<ClusterInfo> {
    let mut said = None;
    let mut stalled_since = std::time::Instant::now();
    loop {
        let c = client
            .get_cluster(Empty {})
            .await
            .map_err(status)?
            .into_inner();
        if !c.ca_rotating {
            eprintln!("Root CA rotated: every node has a certificate from the new root.");
            return Ok(c);
        }
        if said != Some(c.ca_rotation_pending) {
            eprintln!(
                "rotating the root CA: {} node(s) still on the old root",
                c.ca_rotation_pending
            );
            said = Some(c.ca_rotation_pending);
            stalled_since = std::time::Instant::now();
        } else if stalled_since.elapsed() > std::time::Duration::from_secs(30) {
            eprintln!(
                "still waiting for {} node(s): a node that is down renews when it is back, or must be removed (node rm)",
                c.ca_rotation_pending
            );
            stalled_since = std::time::Instant::now();
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
