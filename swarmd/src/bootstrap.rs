//! `cluster init` (a new cluster with this node as its first manager) and
//! `node join` (pin the root CA by the token's digest, get a certificate
//! through a CSR, then run as the role the token grants).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use swarmlet_common::ca::{RootCa, NODE_CERT_VALIDITY};
use swarmlet_common::grpc::{tls_channel, WithLimits};
use swarmlet_common::identity::{new_key_and_csr, pem_to_der, NodeIdentity, Role};
use swarmlet_common::tls::{anonymous_client_config, root_fetch_client_config};
use swarmlet_common::token::{root_digest, JoinToken};
use swarmlet_manager::api::grpc::ManagerSlot;
use swarmlet_manager::ops::bootstrap::NewCluster;
use swarmlet_proto::ca::ca_client::CaClient;
use swarmlet_proto::ca::IssueRequest;
use swarmlet_proto::common::Empty;

use crate::config::DaemonConfig;
use crate::joined::Joined;
use crate::state::NodeState;

/// Settings of a new cluster.
pub struct InitParams {
    /// Advertise address, `IP[:PORT]`, if given.
    pub advertise_addr: Option<String>,
    /// Default address pool for overlay networks.
    pub default_addr_pool: String,
    /// Prefix length of each network cut from the pool.
    pub default_addr_pool_mask_len: u32,
    /// Autolock from the start.
    pub autolock: bool,
}

/// Tokens and address printed by `cluster init`.
pub struct InitOutcome {
    /// The running node.
    pub joined: Arc<Joined>,
    /// Worker join token.
    pub worker_token: String,
    /// Manager join token.
    pub manager_token: String,
    /// With autolock: the unlock key (`SWMKEY-1-…`).
    pub unlock_key: Option<String>,
}

/// The address other nodes dial: `IP[:PORT]` with the listen port by default.
pub fn resolve_advertise(cfg: &DaemonConfig, given: Option<&str>) -> anyhow::Result<String> {
    let port = cfg
        .listen_addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("invalid listen address {}", cfg.listen_addr))?;
    let given = given
        .map(str::to_string)
        .or_else(|| cfg.advertise_addr.clone());
    let host = match given {
        Some(a) if a.parse::<std::net::SocketAddr>().is_ok() => return Ok(a),
        Some(a) => {
            a.parse::<std::net::IpAddr>()
                .map_err(|_| anyhow!("invalid advertise address {a:?}: expected IP[:PORT]"))?;
            a
        }
        None => {
            let listen_host = cfg
                .listen_addr
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or("");
            if !listen_host.is_empty() && listen_host != "0.0.0.0" && listen_host != "[::]" {
                listen_host.to_string()
            } else {
                default_route_ip()?
            }
        }
    };
    Ok(format!("{host}:{port}"))
}

/// The local address the kernel would use for the default route. `connect`
/// on a UDP socket only selects a route; no packet is sent.
fn default_route_ip() -> anyhow::Result<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    sock.connect("192.0.2.1:9")
        .context("no default route: pass --advertise-addr")?;
    Ok(sock.local_addr()?.ip().to_string())
}

/// Creates a new cluster with this node as its only manager.
pub async fn init(
    cfg: &DaemonConfig,
    params: InitParams,
    managers: ManagerSlot,
) -> anyhow::Result<InitOutcome> {
    let addr = resolve_advertise(cfg, params.advertise_addr.as_deref())?;
    validate_pool(&params.default_addr_pool, params.default_addr_pool_mask_len)?;
    let cluster_id = swarmlet_common::ids::new_id();
    let node_id = swarmlet_common::ids::new_id();
    let ca = RootCa::create(&cluster_id)?;
    let (key, csr) = new_key_and_csr()?;
    let cert = ca.sign_node(
        &csr,
        &node_id,
        Role::Manager,
        &cluster_id,
        NODE_CERT_VALIDITY,
    )?;
    let identity = NodeIdentity::new(ca.cert_pem().to_string(), cert, key.serialize_pem())?;
    identity.save(&cfg.certs_dir())?;
    let raft_id = swarmlet_common::ids::new_raft_id();
    let state = NodeState {
        node_id: node_id.clone(),
        cluster_id: cluster_id.clone(),
        role: Role::Manager,
        raft_id,
        raft_joined: true,
        addr: addr.clone(),
        managers: vec![addr.clone()],
        cert_root_digest: root_digest(ca.cert_der()),
    };
    state.save(&cfg.state_dir)?;
    let (cluster, tx) = swarmlet_manager::ops::bootstrap::first_rows(NewCluster {
        cluster_id,
        ca: &ca,
        node_id,
        hostname: cfg.hostname.clone(),
        addr,
        raft_id,
        default_addr_pool: params.default_addr_pool,
        default_addr_pool_mask_len: params.default_addr_pool_mask_len,
        autolock: params.autolock,
    })
    .map_err(|e| anyhow!("{e}"))?;
    let unlock_key = swarmlet_manager::crypto::Key::from_bytes(&cluster.unlock_key)
        .map(|k| swarmlet_manager::at_rest::keys::format_unlock_key(&k));
    let joined = Joined::start(cfg.clone(), state, identity, managers.clone(), true, None).await?;
    let registered = async {
        let m = managers.get().map_err(|s| anyhow!("{}", s.message()))?;
        m.wait_for_leader(Duration::from_secs(10)).await?;
        m.raft.propose(tx).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = registered {
        // Also stop what Joined::start started (listener, agent, manager).
        joined.stop().await;
        return Err(e);
    }
    let digest_der = ca.cert_der().to_vec();
    Ok(InitOutcome {
        joined,
        worker_token: JoinToken::format(&digest_der, &cluster.worker_token_secret),
        manager_token: JoinToken::format(&digest_der, &cluster.manager_token_secret),
        unlock_key,
    })
}

fn validate_pool(pool: &str, mask: u32) -> anyhow::Result<()> {
    let (ip, len) = pool
        .split_once('/')
        .ok_or_else(|| anyhow!("invalid default address pool {pool:?}: expected CIDR"))?;
    ip.parse::<std::net::Ipv4Addr>()
        .map_err(|_| anyhow!("invalid default address pool {pool:?}: expected an IPv4 CIDR"))?;
    let len: u32 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| anyhow!("invalid default address pool {pool:?}: bad prefix length"))?;
    if mask < len || mask > 29 {
        bail!("invalid default address pool mask length {mask}: must be between {len} and 29");
    }
    Ok(())
}

/// Joins the cluster of the manager at `remote` with `token`.
pub async fn join(
    cfg: &DaemonConfig,
    token: &str,
    remote: &str,
    advertise: Option<&str>,
    managers: ManagerSlot,
) -> anyhow::Result<Arc<Joined>> {
    let token = JoinToken::parse(token)?;
    let addr = resolve_advertise(cfg, advertise)?;
    // 1. Download the root CA without trusting the server, then pin it by the token's digest.
    let fetch = tls_channel(remote, root_fetch_client_config()?)?;
    let root = tokio::time::timeout(
        Duration::from_secs(5),
        CaClient::new(fetch)
            .with_limits()
            .get_root_ca_certificate(Empty {}),
    )
    .await
    .map_err(|_| anyhow!("manager {remote} is unreachable"))?
    .map_err(|s| anyhow!("manager {remote} is unreachable: {}", s.message()))?
    .into_inner()
    .cert_pem;
    let der =
        pem_to_der(&root).ok_or_else(|| anyhow!("manager sent an invalid root certificate"))?;
    if root_digest(&der) != token.root_digest {
        bail!("the manager's root CA does not match the join token: refusing to join");
    }
    // 2. Ask for a certificate over a connection that verifies the manager against that root.
    let (key, csr) = new_key_and_csr()?;
    let pinned = tls_channel(remote, anonymous_client_config(&root)?)?;
    let issued = CaClient::new(pinned)
        .with_limits()
        .issue_node_certificate(IssueRequest {
            token: token.to_string(),
            csr_pem: csr,
            hostname: cfg.hostname.clone(),
            advertise_addr: addr.clone(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    // Trust what the cluster trusts now (both roots during a rotation).
    let trust = Some(issued.trust_roots_pem.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or(root);
    let identity = NodeIdentity::new(trust, issued.cert_pem, key.serialize_pem())?;
    identity.save(&cfg.certs_dir())?;
    let mut known = issued.manager_addrs;
    if !known.iter().any(|a| a == remote) {
        known.insert(0, remote.to_string());
    }
    let state = NodeState {
        node_id: issued.node_id,
        cluster_id: issued.cluster_id,
        role: Role::parse(&issued.role)
            .ok_or_else(|| anyhow!("the CA issued an unknown role {:?}", issued.role))?,
        raft_id: 0,
        raft_joined: false,
        addr,
        managers: known,
        cert_root_digest: issued.root_digest,
    };
    state.save(&cfg.state_dir)?;
    Joined::start(cfg.clone(), state, identity, managers, false, None).await
}
