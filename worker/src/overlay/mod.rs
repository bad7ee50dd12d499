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
//! A reconcile loop ([`Overlay::run`]) re-creates a deleted namespace,
//! bridge, VXLAN device, veth or nftables table, puts back missing
//! neighbour/FDB entries and deletes stale ones, and removes namespaces no
//! local endpoint uses.
//!
//! Layout: [`plan`] (names, MACs, diffs; pure), [`lb`] and [`ingress`]
//! (nftables rules; pure), [`host_pool`] (the legs' addresses in the node's
//! namespace, `--host-pool`), [`links`] (the netlink operations); the
//! kernel helpers it shares with the DNS are in [`crate::kernel`]
//! (namespaces and running work inside them, applying nftables rules).

pub mod host_pool;
pub mod hostports;
pub mod ingress;
pub mod lb;
pub mod links;
pub mod plan;

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

    /// The namespace of `task_id`'s endpoint is reached through process
    /// `pid` from now on (it was plugged in through its network sandbox's
    /// process; the task's own process holds the namespace as long as the
    /// task runs, even when the sandbox is killed).
    pub fn follow_pid(&self, task_id: &str, pid: u32) {
        if let Ok(mut st) = self.state.lock() {
            if let Some(e) = st.endpoints.get_mut(task_id) {
                e.pid = pid;
            }
        }
    }

    /// Plugs the container of `task` (main process `pid`) into the task's
    /// networks. Idempotent: an endpoint already plumbed is only recorded.
    pub async fn attach(&self, task: &Task, pid: u32) -> Result<(), OverlayError> {
        let host_ports = hostports::host_ports(task);
        if task.networks.is_empty() && host_ports.is_empty() {
            return Ok(());
        }
        let mut attachments = Vec::new();
        for (i, a) in task.networks.iter().enumerate() {
            let (ip, prefix) = parse_cidr(&a.address)
                .ok_or_else(|| OverlayError::BadAddress(a.address.clone()))?;
            attachments.push(Attachment {
                network_id: a.network_id.clone(),
                ip,
                prefix,
                ifname: plan::container_ifname(i),
            });
        }
        let deadline = Instant::now() + NETWORK_WAIT;
        let mut networks = Vec::new();
        for a in &attachments {
            let net = loop {
                if let Some(n) = self.network(&a.network_id) {
                    break n;
                }
                if Instant::now() > deadline {
                    return Err(OverlayError::UnknownNetwork(a.network_id.clone()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            networks.push(net);
        }
        let existing_slot = if host_ports.is_empty() {
            None
        } else {
            self.existing_host_slot(&task.id).await?
        };
        let mut endpoint = LocalEndpoint {
            pid,
            attachments,
            host_slot: None,
            host_ports,
        };
        // Recorded first: whatever fails below, the reconcile loop retries
        // (a failed fresh task is detached by its controller). A new leg's
        // slot is picked under the same lock, so two tasks never share one.
        if let Ok(mut st) = self.state.lock() {
            if !endpoint.host_ports.is_empty() {
                endpoint.host_slot = Some(existing_slot.unwrap_or_else(|| {
                    let taken: Vec<u32> =
                        st.endpoints.values().filter_map(|e| e.host_slot).collect();
                    self.pool.pick_slot(&task.id, &taken)
                }));
            }
            st.endpoints.insert(task.id.clone(), endpoint.clone());
        }
        let _busy = self.busy.lock().await;
        for (a, net) in endpoint.attachments.iter().zip(&networks) {
            self.ensure_network(net).await?;
            self.plumb(&task.id, pid, a).await?;
        }
        for net in &networks {
            self.sync_peers(net).await?;
            self.sync_lb(&net.id, false).await?;
        }
        if let Some(slot) = endpoint.host_slot {
            self.plumb_host_leg(&task.id, pid, slot).await?;
            self.wake.notify_one();
        }
        if !endpoint.attachments.is_empty() {
            self.serve_dns(&task.id, &endpoint).await;
        }
        Ok(())
    }

    /// The slot of the task's existing leg (after a `swarmd` restart).
    async fn existing_host_slot(&self, task_id: &str) -> Result<Option<u32>, OverlayError> {
        let leg = hostports::node_leg(task_id);
        let pool = self.pool;
        run_in(&netns::host_ns(), move |h| async move {
            match links::link(&h, &leg).await? {
                Some(l) => Ok(links::addresses(&h, l.index)
                    .await?
                    .into_iter()
                    .find_map(|ip| pool.slot_of(ip))),
                None => Ok(None),
            }
        })
        .await
    }

    /// The container's leg to the node for host-mode ports.
    async fn plumb_host_leg(&self, task_id: &str, pid: u32, slot: u32) -> Result<(), OverlayError> {
        let (node_ip, container_ip) = self.pool.slot_ips(slot);
        ensure_leg(Leg {
            node_side: hostports::node_leg(task_id),
            temp: hostports::temp_leg(task_id),
            node_ip: (node_ip, 30),
            inner_ns: netns::of_pid(pid),
            inner_name: hostports::CONTAINER_LEG,
            inner_ip: (container_ip, 30),
        })
        .await
    }

    /// The container's resolver at 127.0.0.11 (a failure is logged: the
    /// container still runs, without service discovery).
    async fn serve_dns(&self, task_id: &str, endpoint: &LocalEndpoint) {
        let networks = endpoint
            .attachments
            .iter()
            .map(|a| a.network_id.clone())
            .collect();
        if let Err(e) = self.dns.serve(task_id, endpoint.pid, networks).await {
            tracing::warn!(task = %task_id, error = %e, "starting the container's DNS resolver");
        }
    }

    /// Unplugs the task's container; a network's namespace goes with its
    /// last local endpoint.
    pub async fn detach(&self, task_id: &str) {
        let Some(endpoint) = self
            .state
            .lock()
            .ok()
            .and_then(|mut st| st.endpoints.remove(task_id))
        else {
            return;
        };
        self.dns.stop(task_id);
        let _busy = self.busy.lock().await;
        if endpoint.host_slot.is_some() {
            let leg = hostports::node_leg(task_id);
            let _ = run_in(&netns::host_ns(), move |h| async move {
                if let Some(l) = links::link(&h, &leg).await? {
                    links::delete(&h, l.index).await?;
                }
                Ok(())
            })
            .await;
            self.wake.notify_one();
        }
        for a in &endpoint.attachments {
            let ns = self.ns_of(&a.network_id);
            if !self.network_in_use(&a.network_id) && !self.is_ingress(&a.network_id) {
                netns::delete(&ns);
                continue;
            }
            let host = plan::veth_host(task_id);
            let _ = run_in(&netns::path_of(&ns), move |h| async move {
                if let Some(l) = links::link(&h, &host).await? {
                    links::delete(&h, l.index).await?;
                }
                Ok(())
            })
            .await;
        }
    }

    fn network_in_use(&self, network_id: &str) -> bool {
        self.state.lock().is_ok_and(|st| {
            st.endpoints
                .values()
                .any(|e| e.attachments.iter().any(|a| a.network_id == network_id))
        })
    }

    /// The network's namespace with its bridge and VXLAN device.
    async fn ensure_network(&self, net: &Network) -> Result<(), OverlayError> {
        let name = self.ns_of(&net.id);
        let path = netns::path_of(&name);
        if !netns::exists(&name) {
            netns::create(&name).await?;
        }
        let (gateway, _) = parse_cidr(&net.gateway)
            .ok_or_else(|| OverlayError::BadAddress(net.gateway.clone()))?;
        let (_, prefix) =
            parse_cidr(&net.subnet).ok_or_else(|| OverlayError::BadAddress(net.subnet.clone()))?;
        let mut addresses = vec![(gateway, prefix)];
        let lb = self.lb_address(&net.id);
        if let Some(lb) = lb {
            addresses.push(lb);
        }
        addresses.extend(self.vips(&net.id).into_iter().map(|ip| (ip, 32)));
        let bridge_mac = lb.map(|(ip, _)| mac_for(ip));
        let vx = plan::vxlan_name(net.vni);
        let vx2 = vx.clone();
        if self.is_ingress(&net.id) {
            self.ensure_ingress_leg(&path).await?;
        }
        let has_vxlan = run_in(&path, move |h| async move {
            // Routing between br0 (VIPs, SNAT) and the ingress leg; bridged
            // frames stay out of netfilter; no redirects for hairpinned
            // VIP traffic.
            netns::set_sysctl("ipv4/ip_forward", "1")?;
            netns::set_sysctl("bridge/bridge-nf-call-iptables", "0")?;
            netns::set_sysctl("ipv4/conf/all/send_redirects", "0")?;
            netns::set_sysctl("ipv4/conf/default/send_redirects", "0")?;
            let bridge = links::ensure_bridge(&h, BRIDGE, &addresses, bridge_mac).await?;
            netns::set_sysctl(&format!("ipv4/conf/{BRIDGE}/send_redirects"), "0")?;
            match links::link(&h, &vx2).await? {
                Some(v) if v.master == Some(bridge) && v.up => {
                    links::no_learning_on_port(&h, v.index).await?;
                    Ok(true)
                }
                Some(v) => {
                    links::enslave(&h, v.index, bridge).await?;
                    links::no_learning_on_port(&h, v.index).await?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
        .await?;
        if has_vxlan {
            return Ok(());
        }
        let local = self.data_ip.ok_or(OverlayError::NoDataAddress)?;
        let (vni, vx2, into) = (net.vni, vx.clone(), path.clone());
        run_in(&netns::host_ns(), move |h| async move {
            links::create_vxlan(&h, &vx2, vni, local, &into).await
        })
        .await?;
        run_in(&path, move |h| async move {
            let bridge = links::link(&h, BRIDGE)
                .await?
                .ok_or_else(|| OverlayError::System("the bridge vanished".into()))?;
            let v = links::link(&h, &vx)
                .await?
                .ok_or_else(|| OverlayError::System(format!("{vx} was not moved")))?;
            links::enslave(&h, v.index, bridge.index).await?;
            links::no_learning_on_port(&h, v.index).await
        })
        .await
    }

    /// The ingress sandbox's leg to the node's namespace (see [`ingress`]).
    async fn ensure_ingress_leg(&self, sbox: &std::path::Path) -> Result<(), OverlayError> {
        ensure_leg(Leg {
            node_side: ingress::host_leg(&self.node_id),
            temp: ingress::temp_leg(&self.node_id),
            node_ip: (self.pool.ingress_leg().0, ingress::LEG_PREFIX),
            inner_ns: sbox.to_path_buf(),
            inner_name: ingress::SBOX_LEG,
            inner_ip: (self.pool.ingress_leg().1, ingress::LEG_PREFIX),
        })
        .await
    }

    /// Brings the namespace's load balancer in line with the view: the
    /// changed chains only, or the whole table when it is new or was
    /// deleted (`check_table`: look whether it still exists); the removed
    /// backends' connections are dropped.
    async fn sync_lb(&self, net_id: &str, check_table: bool) -> Result<(), OverlayError> {
        let ns = self.ns_of(net_id);
        let (want, applied) = {
            let st = self
                .state
                .lock()
                .map_err(|_| OverlayError::System("state lock poisoned".into()))?;
            let Some(view) = st.networks.get(net_id) else {
                return Ok(());
            };
            (lb::rules_for(view), st.lb_applied.get(&ns).cloned())
        };
        let want2 = want.clone();
        let path = netns::path_of(&ns);
        run_blocking_in(&path, move || {
            let present = match &applied {
                Some(_) if check_table => nft::has_chain_here(lb::TABLE, "postrouting")?,
                Some(_) => true,
                None => false,
            };
            match applied.filter(|_| present) {
                // A namespace re-made since: the incremental change fails,
                // the whole table is written instead.
                Some(old) => {
                    if nft::apply_here(&lb::update(&old, &want2)).is_err() {
                        nft::apply_here(&lb::full(&want2))?;
                    }
                    nft::drop_connections_here(&lb::removed_backends(&old, &want2));
                }
                None => nft::apply_here(&lb::full(&want2))?,
            }
            Ok(())
        })
        .await?;
        if let Ok(mut st) = self.state.lock() {
            st.lb_applied.insert(ns, want);
        }
        Ok(())
    }

    /// Removes the ingress sandbox (nothing published, no local task on
    /// ingress): a node that publishes nothing keeps no namespace, leg or
    /// VXLAN device for the mesh.
    fn remove_sandbox(&self) {
        let name = ingress::sbox_name(&self.node_id);
        if netns::exists(&name) {
            netns::delete(&name);
        }
        if let Ok(mut st) = self.state.lock() {
            st.lb_applied.remove(&name);
        }
    }

    /// The node's routing-mesh table: the published ports of the ingress
    /// view, sent to the sandbox (rewritten when they change or the table
    /// went missing).
    async fn sync_mesh(&self, check_table: bool) -> Result<(), OverlayError> {
        let (ports, applied) = {
            let st = self
                .state
                .lock()
                .map_err(|_| OverlayError::System("state lock poisoned".into()))?;
            let published: BTreeSet<_> = st
                .networks
                .values()
                .find(|n| n.ingress)
                .map(|view| lb::rules_for(view).published.keys().copied().collect())
                .unwrap_or_default();
            let mut host = BTreeMap::new();
            for e in st.endpoints.values() {
                let Some(slot) = e.host_slot else { continue };
                let (_, container_ip) = self.pool.slot_ips(slot);
                for (proto, published, target) in &e.host_ports {
                    host.insert((*proto, *published), (container_ip, *target));
                }
            }
            if published.is_empty() && host.is_empty() && st.mesh_applied.is_none() {
                return Ok(());
            }
            ((published, host), st.mesh_applied.clone())
        };
        let node = self.node_id.clone();
        let table = ingress::host_table(&node);
        let p2 = ports.clone();
        let sbox_ip = self.pool.ingress_leg().1;
        run_blocking_in(&netns::host_ns(), move || {
            let present =
                applied.is_some() && (!check_table || nft::has_chain_here(&table, "postrouting")?);
            if !present || applied.as_ref() != Some(&p2) {
                nft::apply_here(&ingress::host_ruleset(&node, sbox_ip, &p2.0, &p2.1))?;
            }
            if !present || check_table {
                nft::docker_user_accept_here(&[&ingress::host_leg(&node), "swh-+"]);
            }
            Ok(())
        })
        .await?;
        if let Ok(mut st) = self.state.lock() {
            st.mesh_applied = Some(ports);
        }
        Ok(())
    }

    /// Gives the container its interface on one network, unless the veth
    /// is already there.
    async fn plumb(&self, task_id: &str, pid: u32, a: &Attachment) -> Result<(), OverlayError> {
        let path = netns::path_of(&self.ns_of(&a.network_id));
        let host = plan::veth_host(task_id);
        let temp = plan::veth_temp(task_id);
        let (host2, temp2) = (host.clone(), temp.clone());
        let created = run_in(&path, move |h| async move {
            if links::link(&h, &host2).await?.is_some() {
                return Ok(false);
            }
            let bridge = links::link(&h, BRIDGE)
                .await?
                .ok_or_else(|| OverlayError::System("the bridge is missing".into()))?;
            links::create_veth(&h, &host2, &temp2, bridge.index, pid).await?;
            Ok(true)
        })
        .await?;
        if !created {
            return Ok(());
        }
        let (ifname, ip, prefix) = (a.ifname.clone(), a.ip, a.prefix);
        run_in(&netns::of_pid(pid), move |h| async move {
            links::configure_container_if(&h, &temp, &ifname, mac_for(ip), ip, prefix).await
        })
        .await
    }

    /// Brings the VXLAN device's neighbour and FDB entries in line with the
    /// network's remote peers.
    async fn sync_peers(&self, net: &Network) -> Result<(), OverlayError> {
        let peers = self
            .state
            .lock()
            .ok()
            .and_then(|st| st.networks.get(&net.id).map(|n| n.peers.clone()))
            .unwrap_or_default();
        let mut want_neigh = BTreeMap::new();
        let mut want_fdb = BTreeMap::new();
        for p in peers {
            let (Ok(ip), Ok(node)) = (p.ip.parse::<Ipv4Addr>(), p.node_ip.parse::<Ipv4Addr>())
            else {
                continue;
            };
            if Some(node) == self.data_ip {
                continue;
            }
            want_neigh.insert(ip, mac_for(ip));
            want_fdb.insert(mac_for(ip), node);
        }
        let path = netns::path_of(&self.ns_of(&net.id));
        let vx = plan::vxlan_name(net.vni);
        run_in(&path, move |h| async move {
            let Some(v) = links::link(&h, &vx).await? else {
                return Ok(());
            };
            let neigh = plan::diff(&links::neighbours(&h, v.index).await?, &want_neigh);
            for ip in neigh.delete {
                links::delete_neighbour(&h, v.index, ip).await?;
            }
            for (ip, mac) in neigh.put {
                links::put_neighbour(&h, v.index, ip, mac).await?;
            }
            let have_fdb = links::fdb(&h, v.index).await?;
            let fdb = plan::diff(&have_fdb, &want_fdb);
            for mac in fdb.delete {
                if let Some(node) = have_fdb.get(&mac) {
                    links::delete_fdb(&h, v.index, mac, *node).await?;
                }
            }
            for (mac, node) in fdb.put {
                links::put_fdb(&h, v.index, mac, node).await?;
            }
            Ok(())
        })
        .await
    }

    /// One pass: every network with a local endpoint (and the ingress
    /// network) is complete and has the right peers and load-balancer
    /// rules; namespaces nothing uses are removed. `periodic`: also look
    /// for nftables tables deleted behind the node's back.
    async fn reconcile(&self, periodic: bool) {
        let _busy = self.busy.lock().await;
        let (endpoints, networks) = match self.state.lock() {
            Ok(st) => (st.endpoints.clone(), st.networks.clone()),
            Err(_) => return,
        };
        let mut in_use: HashMap<&str, Vec<(&String, &LocalEndpoint, &Attachment)>> = HashMap::new();
        for (task, e) in &endpoints {
            for a in &e.attachments {
                in_use
                    .entry(a.network_id.as_str())
                    .or_default()
                    .push((task, e, a));
            }
        }
        let mut to_serve: Vec<&str> = in_use.keys().copied().collect();
        if let Some(ingress) = networks.values().find(|n| n.ingress) {
            let id = ingress
                .network
                .as_ref()
                .map(|n| n.id.as_str())
                .unwrap_or_default();
            // The sandbox exists while a port is published in the cluster
            // (or a local task is on ingress); otherwise it goes, with the
            // VNI it holds.
            let publishing = ingress.services.iter().any(|s| !s.ports.is_empty());
            if !id.is_empty() && !in_use.contains_key(id) {
                if publishing {
                    to_serve.push(id);
                } else {
                    self.remove_sandbox();
                }
            }
        }
        for net_id in to_serve {
            let Some(net) = networks.get(net_id).and_then(|n| n.network.clone()) else {
                continue;
            };
            if let Err(e) = self.ensure_network(&net).await {
                tracing::warn!(network = %net.spec.clone().unwrap_or_default().name, error = %e, "restoring the overlay");
                continue;
            }
            for (task, endpoint, a) in in_use.get(net_id).into_iter().flatten() {
                if !std::path::Path::new(&format!("/proc/{}", endpoint.pid)).exists() {
                    continue;
                }
                if let Err(e) = self.plumb(task, endpoint.pid, a).await {
                    tracing::warn!(task = %task, error = %e, "restoring a task's interface");
                }
                self.serve_dns(task, endpoint).await;
            }
            if let Err(e) = self.sync_peers(&net).await {
                tracing::warn!(error = %e, "programming overlay peers");
            }
            if let Err(e) = self.sync_lb(&net.id, periodic).await {
                tracing::warn!(error = %e, "programming the load balancer");
            }
        }
        for (task, e) in &endpoints {
            let Some(slot) = e.host_slot else { continue };
            if !std::path::Path::new(&format!("/proc/{}", e.pid)).exists() {
                continue;
            }
            if let Err(err) = self.plumb_host_leg(task, e.pid, slot).await {
                tracing::warn!(task = %task, error = %err, "restoring a host-mode port's leg");
            }
        }
        if let Err(e) = self.sync_mesh(periodic).await {
            tracing::warn!(error = %e, "programming the routing mesh");
        }
        // Namespaces of networks neither used here nor in the managers'
        // view go; not before the first view (a restarted node adopts its
        // tasks first, and their namespaces with them).
        if !self.has_view.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let prefix = plan::ns_prefix(&self.node_id);
        for ns in netns::list(&prefix) {
            let used = plan::network_of_ns(&self.node_id, &ns).is_some_and(|short| {
                in_use.keys().any(|id| id.starts_with(short))
                    || networks.keys().any(|id| id.starts_with(short))
            });
            if !used {
                netns::delete(&ns);
            }
        }
    }

    /// The reconcile loop: after every change of the managers' view, and
    /// every few seconds to repair what was changed behind the node's back.
    pub async fn run(self: Arc<Self>) {
        loop {
            let periodic = tokio::select! {
                _ = self.wake.notified() => false,
                _ = tokio::time::sleep(RECONCILE_PERIOD) => true,
            };
            self.reconcile(periodic).await;
        }
    }
}

/// A veth between the node's namespace and another one: the ingress
/// sandbox ([`ingress`]) or a container with host-mode ports
/// ([`hostports`]).
struct Leg {
    /// Its name in the node's namespace.
    node_side: String,
    /// The other end's name until it is moved and renamed.
    temp: String,
    node_ip: (Ipv4Addr, u8),
    /// The other namespace.
    inner_ns: std::path::PathBuf,
    inner_name: &'static str,
    inner_ip: (Ipv4Addr, u8),
}

/// Makes the leg exist and be configured on both sides: routed (and
/// localhost, `route_localnet`) traffic from the node reaches the other
/// side, whose default route leads back through the leg.
async fn ensure_leg(leg: Leg) -> Result<(), OverlayError> {
    let Leg {
        node_side,
        temp,
        node_ip,
        inner_ns,
        inner_name,
        inner_ip,
    } = leg;
    let (temp2, into) = (temp.clone(), inner_ns.clone());
    run_in(&netns::host_ns(), move |h| async move {
        if links::link(&h, &node_side).await?.is_none() {
            links::create_leg(&h, &node_side, &temp2, node_ip, &into).await?;
        }
        netns::set_sysctl("ipv4/ip_forward", "1")?;
        netns::set_sysctl(&format!("ipv4/conf/{node_side}/route_localnet"), "1")?;
        Ok(())
    })
    .await?;
    run_in(&inner_ns, move |h| async move {
        links::configure_leg(&h, &temp, inner_name, inner_ip, node_ip.0).await
    })
    .await
}
