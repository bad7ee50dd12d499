//! The overlay data plane of one node: VXLAN networks built with netlink.
//!
//! Per overlay network with a local endpoint, a namespace `ovl-<node>-<net>`
//! holds a bridge `br0` (with the gateway IP and the node's load-balancer
//! IP on the network) and the network's VXLAN device,
//! created in the node's namespace (so its UDP socket uses the node's
//! routing; no learning, ARP proxy on) and moved in. Each task container
//! (Docker network `none`) gets a veth: one end on `br0`, the other moved
//! into the container as `eth<i>` with the task's IP and a MAC derived from
//! it. For every endpoint on another node, the VXLAN device gets a permanent
//! neighbour entry (IP → MAC) and an FDB entry (MAC → that node's IP), from
//! the managers' view ([`Overlay::set_networks`]).
//!
//! Each namespace also holds the node's load balancer for the network
//! ([`lb`]: service VIPs, and on `ingress` the published ports), and the
//! ingress network's namespace is the node's ingress sandbox, reached from
//! the node's namespace for published ports ([`ingress`]).
//!
//! A reconcile loop (`Overlay::run`) re-creates a deleted namespace,
//! bridge, VXLAN device, veth or nftables table, puts back missing
//! neighbour/FDB entries and deletes stale ones, and removes namespaces no
//! local endpoint uses.
//!
//! Layout: this file holds the [`Overlay`] and its view of the networks;
//! `endpoints` plugs and unplugs task containers, `reconcile` keeps the
//! kernel in line with the view (and runs the loop), `legs` makes the veths
//! to the node's namespace; [`plan`] (names, MACs, diffs; pure), [`lb`] and [`ingress`]
//! (nftables rules; pure), [`host_pool`] (the legs' addresses in the node's
//! namespace, `--host-pool`), [`links`] (the netlink operations); the
//! kernel helpers it shares with the DNS are in [`crate::kernel`]
//! (namespaces and running work inside them, applying nftables rules).

mod endpoints;
pub mod host_pool;
pub mod hostports;
pub mod ingress;
pub mod lb;
mod legs;
pub mod links;
pub mod plan;
mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarmlet_proto::dispatcher::OverlayNetwork;
use swarmlet_proto::objects::{Network, Task};
use tokio::sync::Notify;

use crate::kernel::{netns, nft, KernelError};
use plan::{mac_for, parse_cidr, BRIDGE};

/// Why the data plane could not do something.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OverlayError {
    /// A kernel or system call failed.
    #[error("{0}")]
    System(String),
    /// The managers never sent the network (it may have been removed).
    #[error("network {0} is unknown on this node")]
    UnknownNetwork(String),
    /// The node has no IPv4 data-path address for VXLAN.
    #[error("this node has no IPv4 address for overlay traffic (--advertise-addr)")]
    NoDataAddress,
    /// An address from the managers does not parse.
    #[error("bad address {0}")]
    BadAddress(String),
}

/// [`netns::run_in`], failing with the overlay's error.
async fn run_in<T, F, Fut>(ns: &std::path::Path, work: F) -> Result<T, OverlayError>
where
    T: Send + 'static,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, OverlayError>>,
{
    netns::run_in(ns, work).await
}

/// [`netns::run_blocking_in`], failing with the overlay's error.
async fn run_blocking_in<T, F>(ns: &std::path::Path, work: F) -> Result<T, OverlayError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, OverlayError> + Send + 'static,
{
    netns::run_blocking_in(ns, work).await
}

impl From<KernelError> for OverlayError {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::System(what) => OverlayError::System(what),
        }
    }
}

/// How often the reconcile loop checks the kernel state without a change.
const RECONCILE_PERIOD: Duration = Duration::from_secs(2);

/// How long an attachment waits for the managers' view of its network.
const NETWORK_WAIT: Duration = Duration::from_secs(10);

/// One of a local task's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attachment {
    network_id: String,
    ip: Ipv4Addr,
    prefix: u8,
    ifname: String,
}

/// A container on this node plugged into overlays.
#[derive(Debug, Clone)]
struct LocalEndpoint {
    pid: u32,
    attachments: Vec<Attachment>,
    /// Ports published in host mode, and the slot of the container's leg
    /// to the node ([`hostports`]).
    host_ports: Vec<hostports::HostPort>,
    host_slot: Option<u32>,
    /// Where the container's resolver forwards names it does not know: the
    /// service's `--dns` servers, or none (the node's own upstreams).
    dns_upstreams: Vec<std::net::SocketAddr>,
}

/// What the node's routing-mesh table holds: ingress-published ports, and
/// host-mode ports with the container address and target port they go to.
type MeshPorts = (
    BTreeSet<(lb::Proto, u16)>,
    BTreeMap<(lb::Proto, u16), (Ipv4Addr, u16)>,
);

#[derive(Default)]
struct State {
    /// The managers' view: networks with local endpoints, and their peers.
    networks: HashMap<String, OverlayNetwork>,
    /// Local containers by task ID.
    endpoints: HashMap<String, LocalEndpoint>,
    /// The load-balancer rules last applied, by namespace name.
    lb_applied: HashMap<String, lb::LbRules>,
    /// The node's routing-mesh table as last written.
    mesh_applied: Option<MeshPorts>,
}

/// The node's overlay data plane.
pub struct Overlay {
    node_id: String,
    /// The embedded DNS of the node's containers.
    dns: Arc<crate::dns::Dns>,
    data_ip: Option<Ipv4Addr>,
    /// Where the legs in the node's namespace take their addresses.
    pool: host_pool::HostPool,
    state: Mutex<State>,
    wake: Notify,
    /// Serialises kernel changes (attachments and reconcile passes).
    busy: tokio::sync::Mutex<()>,
    /// Whether the managers' view arrived (this process's first session).
    has_view: std::sync::atomic::AtomicBool,
}

impl Overlay {
    /// Removes what this node's data plane made (`node leave`): its overlay
    /// namespaces (with their bridges, VXLAN devices and legs), the ingress
    /// sandbox, the routing-mesh table and its `DOCKER-USER` accepts. The
    /// reconcile loop must be stopped first, or it makes them again.
    pub async fn teardown(&self) {
        let _busy = self.busy.lock().await;
        for ns in netns::list(&plan::ns_prefix(&self.node_id)) {
            netns::delete(&ns);
        }
        let sbox = ingress::sbox_name(&self.node_id);
        if netns::exists(&sbox) {
            netns::delete(&sbox);
        }
        let table = ingress::host_table(&self.node_id);
        let leg = ingress::host_leg(&self.node_id);
        let removed = run_blocking_in(&netns::host_ns(), move || {
            nft::docker_user_remove_here(&[&leg, "swh-+"]);
            if nft::has_chain_here(&table, "postrouting")? {
                nft::apply_here(&[serde_json::json!(
                    {"delete": {"table": {"family": "ip", "name": table}}}
                )])?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!("removing the routing-mesh table: {e}");
        }
        if let Ok(mut st) = self.state.lock() {
            *st = State::default();
        }
    }

    /// The node this data plane belongs to.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The data plane of node `node_id`, whose VXLAN traffic leaves from
    /// `data_ip`, with legs in the node's namespace from `pool`.
    pub fn new(node_id: &str, data_ip: Option<Ipv4Addr>, pool: host_pool::HostPool) -> Arc<Self> {
        Arc::new(Overlay {
            node_id: node_id.to_string(),
            dns: crate::dns::Dns::new(crate::dns::upstream::system_upstreams()),
            data_ip,
            pool,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            busy: tokio::sync::Mutex::new(()),
            has_view: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Replaces the managers' view of this node's networks.
    pub fn set_networks(&self, networks: Vec<OverlayNetwork>) {
        self.dns.set_view(&networks);
        if let Ok(mut st) = self.state.lock() {
            st.networks = networks
                .into_iter()
                .filter_map(|n| Some((n.network.as_ref()?.id.clone(), n)))
                .collect();
        }
        self.has_view
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// The namespace of a network on this node: the ingress sandbox for
    /// the ingress network, `ovl-<node>-<net>` for the others.
    fn ns_of(&self, network_id: &str) -> String {
        if self.is_ingress(network_id) {
            ingress::sbox_name(&self.node_id)
        } else {
            plan::ns_name(&self.node_id, network_id)
        }
    }

    fn is_ingress(&self, network_id: &str) -> bool {
        self.state
            .lock()
            .is_ok_and(|st| st.networks.get(network_id).is_some_and(|n| n.ingress))
    }

    /// The VIPs of the services on a network (held by `br0`, as /32).
    fn vips(&self, network_id: &str) -> Vec<Ipv4Addr> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        st.networks
            .get(network_id)
            .map(|n| {
                n.services
                    .iter()
                    .filter_map(|s| s.vip.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn network(&self, id: &str) -> Option<Network> {
        self.state
            .lock()
            .ok()?
            .networks
            .get(id)
            .and_then(|n| n.network.clone())
    }

    /// This node's load-balancer address on a network, from the view.
    fn lb_address(&self, network_id: &str) -> Option<(Ipv4Addr, u8)> {
        let st = self.state.lock().ok()?;
        parse_cidr(&st.networks.get(network_id)?.lb_address)
    }
}
