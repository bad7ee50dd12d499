//! Heartbeats to the managers. The agent keeps one manager at a time and
//! moves to the next one when a call fails; the answer tells it the period,
//! the role the cluster wants it to have, and the current managers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use swarmlet_common::grpc::{tls_channel, WithLimits};
use swarmlet_common::identity::Role;
use swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient;
use swarmlet_proto::dispatcher::HeartbeatRequest;
use swarmlet_proto::objects::Resources;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// What the agent learns from the managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The role the cluster wants this node to have.
    DesiredRole(Role),
    /// The node was removed from the cluster.
    Removed,
    /// The managers' addresses changed.
    Managers(Vec<String>),
    /// The root CA that signs certificates now and the roots to trust
    /// (they change with a root CA rotation).
    Ca {
        /// Digest of the signing root.
        root_digest: String,
        /// The roots to trust (PEM bundle).
        trust_roots_pem: String,
    },
}

/// How the agent reaches the managers.
pub struct AgentConfig {
    /// This node's hostname.
    pub hostname: String,
    /// This node's advertise address.
    pub addr: String,
    /// mTLS client configuration with the node's certificate.
    pub tls: Arc<ClientConfig>,
    /// Managers to try, in order.
    pub managers: Vec<String>,
    /// What this node offers to tasks.
    pub resources: Resources,
    /// TCP ports this node's swarmd listens on.
    pub daemon_ports: Vec<u32>,
    /// The data-path (VXLAN) address, when not the advertise address's IP.
    pub data_addr: Option<std::net::Ipv4Addr>,
    /// Checks the container engine before each heartbeat.
    pub engine: EngineCheck,
    /// Who may read this node's logs, kept as heartbeats say.
    pub manager_ids: crate::logs::ManagerIds,
}

/// Why the node's container engine cannot be reached, if it cannot.
pub type EngineCheck =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Option<String>> + Send + Sync>;

const RETRY: Duration = Duration::from_millis(250);
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs heartbeats until `shutdown` turns true.
pub async fn run(
    cfg: AgentConfig,
    events: mpsc::Sender<AgentEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut managers = cfg.managers.clone();
    let mut current = 0usize;
    let mut last_role: Option<Role> = None;
    let mut last_ca = (String::new(), String::new());
    // Said again now and then: a renewal that failed is tried again.
    let mut ca_said = std::time::Instant::now();
    // One channel per manager, kept across heartbeats and failures: a tonic
    // channel reconnects by itself, while dropping it would force a new TLS
    // handshake per retry — under load, timeouts then feed more load.
    let mut channels: HashMap<String, Channel> = HashMap::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let target = managers.get(current % managers.len().max(1)).cloned();
        let wait = match heartbeat_once(&cfg, target.as_ref(), &mut channels).await {
            Ok(resp) => {
                if resp.removed {
                    let _ = events.send(AgentEvent::Removed).await;
                    return;
                }
                cfg.manager_ids.set(resp.manager_ids.iter().cloned());
                // An empty or unknown role (an older manager) changes nothing.
                if let Some(role) = Role::parse(&resp.desired_role) {
                    if last_role != Some(role) {
                        last_role = Some(role);
                        let _ = events.send(AgentEvent::DesiredRole(role)).await;
                    }
                }
                let ca = (resp.root_digest.clone(), resp.trust_roots_pem.clone());
                if !ca.0.is_empty() && (ca != last_ca || ca_said.elapsed() > Duration::from_secs(5))
                {
                    last_ca = ca.clone();
                    ca_said = std::time::Instant::now();
                    let _ = events
                        .send(AgentEvent::Ca {
                            root_digest: ca.0,
                            trust_roots_pem: ca.1,
                        })
                        .await;
                }
                if !resp.manager_addrs.is_empty() && resp.manager_addrs != managers {
                    let addr = managers.get(current % managers.len().max(1)).cloned();
                    managers = resp.manager_addrs.clone();
                    current = addr
                        .and_then(|a| managers.iter().position(|m| *m == a))
                        .unwrap_or(0);
                    let _ = events.send(AgentEvent::Managers(managers.clone())).await;
                }
                Duration::from_millis(resp.period_ms.max(100))
            }
            Err(e) => {
                tracing::debug!("heartbeat failed: {e}; trying the next manager");
                current = current.wrapping_add(1);
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn heartbeat_once(
    cfg: &AgentConfig,
    manager: Option<&String>,
    channels: &mut HashMap<String, Channel>,
) -> Result<swarmlet_proto::dispatcher::HeartbeatResponse, String> {
    let addr = manager.ok_or("no manager known")?;
    let channel = match channels.get(addr) {
        Some(c) => c.clone(),
        None => {
            let c = tls_channel(addr, cfg.tls.clone()).map_err(|e| e.to_string())?;
            channels.insert(addr.clone(), c.clone());
            c
        }
    };
    let mut client = DispatcherClient::new(channel).with_limits();
    let req = HeartbeatRequest {
        node_id: String::new(),
        hostname: cfg.hostname.clone(),
        addr: cfg.addr.clone(),
        resources: Some(cfg.resources),
        daemon_ports: cfg.daemon_ports.clone(),
        engine_error: (cfg.engine)().await.unwrap_or_default(),
        data_addr: cfg.data_addr.map(|ip| ip.to_string()).unwrap_or_default(),
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.heartbeat(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(s.message().to_string()),
        Err(_) => Err("timed out".into()),
    }
}
