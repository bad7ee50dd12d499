//! Task endpoints on this node's overlay: plugging a container into its
//! networks (a veth per network, host-mode port legs, its DNS resolver) and
//! unplugging it.

use super::legs::{ensure_leg, Leg};
use super::*;

impl Overlay {
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
        let dns_upstreams = task
            .spec
            .iter()
            .flat_map(|s| s.dns_servers.iter())
            .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
            .map(|ip| std::net::SocketAddr::new(ip, 53))
            .collect();
        let mut endpoint = LocalEndpoint {
            pid,
            attachments,
            host_slot: None,
            host_ports,
            dns_upstreams,
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
    pub(super) async fn plumb_host_leg(
        &self,
        task_id: &str,
        pid: u32,
        slot: u32,
    ) -> Result<(), OverlayError> {
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
    pub(super) async fn serve_dns(&self, task_id: &str, endpoint: &LocalEndpoint) {
        let networks = endpoint
            .attachments
            .iter()
            .map(|a| a.network_id.clone())
            .collect();
        let upstreams = endpoint.dns_upstreams.clone();
        if let Err(e) = self
            .dns
            .serve(task_id, endpoint.pid, networks, upstreams)
            .await
        {
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

    /// Gives the container its interface on one network, unless the veth
    /// is already there.
    pub(super) async fn plumb(
        &self,
        task_id: &str,
        pid: u32,
        a: &Attachment,
    ) -> Result<(), OverlayError> {
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
}
