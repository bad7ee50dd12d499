//! Keeping this node's overlay in line with the managers' view: networks'
//! namespaces, bridges and VXLAN devices, neighbour and FDB entries, the
//! load balancers and the routing mesh, re-made when something deleted
//! them; the loop that does it.

use super::legs::{ensure_leg, Leg};
use super::*;

impl Overlay {
    /// The network's namespace with its bridge and VXLAN device.
    pub(super) async fn ensure_network(&self, net: &Network) -> Result<(), OverlayError> {
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
    pub(super) async fn sync_lb(
        &self,
        net_id: &str,
        check_table: bool,
    ) -> Result<(), OverlayError> {
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

    /// Brings the VXLAN device's neighbour and FDB entries in line with the
    /// network's remote peers.
    pub(super) async fn sync_peers(&self, net: &Network) -> Result<(), OverlayError> {
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
