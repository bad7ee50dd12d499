//! The node's embedded DNS (hickory-server): a resolver at 127.0.0.11:53
//! inside every task and attachment container on an overlay network.
//!
//! For each such container a UDP socket and a TCP listener are opened
//! inside the container's network namespace (on a thread that `setns`es
//! there), on free ports of 127.0.0.11, and served by a hickory
//! `ServerFuture` on the node's runtime; a small nftables table there
//! (`swarmlet-dns`) sends 127.0.0.11:53 to them, as Docker does, so that a
//! task may serve port 53 itself. The container's resolv.conf points at
//! 127.0.0.11 (Docker `--dns`). Cluster
//! names ([`records`]) come from the managers' view of the node's networks
//! and follow it on every change; other names are forwarded to the node's
//! upstream resolvers ([`upstream`]) from the node's own namespace.

pub mod handler;
pub mod records;
pub mod upstream;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_server::ServerFuture;
use serde_json::{json, Value};
use swarmlet_proto::dispatcher::OverlayNetwork;

use crate::kernel::netns;
use crate::kernel::nft::{add_base_chain, add_rule, replace_table};
use crate::kernel::KernelError;
use handler::ContainerResolver;
use records::Records;

/// Where containers find the embedded DNS (as with Docker).
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// How long a DNS-over-TCP connection may stay idle.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's DNS: names, upstreams and one server per container.
pub struct Dns {
    records: Arc<RwLock<Records>>,
    upstreams: Arc<Vec<SocketAddr>>,
    servers: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl Dns {
    /// A DNS forwarding other names to `upstreams`.
    pub fn new(upstreams: Vec<SocketAddr>) -> Arc<Dns> {
        Arc::new(Dns {
            records: Arc::new(RwLock::new(Records::default())),
            upstreams: Arc::new(upstreams),
            servers: Mutex::new(HashMap::new()),
        })
    }

    /// Follows a new view of the node's networks.
    pub fn set_view(&self, view: &[OverlayNetwork]) {
        let records = Records::from_view(view);
        if let Ok(mut r) = self.records.write() {
            *r = records;
        }
    }

    /// Serves the container of `task_id` (main process `pid`, attached to
    /// `networks`), unless it is served already. Names it does not know go
    /// to `upstreams` (the service's `--dns` servers), or to the node's
    /// upstreams when there are none.
    pub async fn serve(
        &self,
        task_id: &str,
        pid: u32,
        networks: Vec<String>,
        upstreams: Vec<SocketAddr>,
    ) -> Result<(), KernelError> {
        if self
            .servers
            .lock()
            .is_ok_and(|s| s.get(task_id).is_some_and(|h| !h.is_finished()))
        {
            return Ok(());
        }
        let (udp, tcp) = netns::run_blocking_in(&netns::of_pid(pid), || {
            let addr = SocketAddr::from((RESOLVER_IP, 0));
            let udp = std::net::UdpSocket::bind(addr)
                .map_err(|e| KernelError::System(format!("binding {addr}/udp: {e}")))?;
            let tcp = std::net::TcpListener::bind(addr)
                .map_err(|e| KernelError::System(format!("binding {addr}/tcp: {e}")))?;
            udp.set_nonblocking(true)
                .and_then(|_| tcp.set_nonblocking(true))
                .map_err(|e| KernelError::System(format!("DNS sockets: {e}")))?;
            let port = |a: std::io::Result<SocketAddr>| {
                a.map(|a| a.port())
                    .map_err(|e| KernelError::System(format!("DNS socket address: {e}")))
            };
            let ports = (port(udp.local_addr())?, port(tcp.local_addr())?);
            crate::kernel::nft::apply_here(&redirect_ruleset(ports.0, ports.1))?;
            Ok((udp, tcp))
        })
        .await?;
        let udp = tokio::net::UdpSocket::from_std(udp)
            .map_err(|e| KernelError::System(format!("DNS socket: {e}")))?;
        let tcp = tokio::net::TcpListener::from_std(tcp)
            .map_err(|e| KernelError::System(format!("DNS listener: {e}")))?;
        let mut server = ServerFuture::new(ContainerResolver {
            networks,
            records: self.records.clone(),
            upstreams: if upstreams.is_empty() {
                self.upstreams.clone()
            } else {
                Arc::new(upstreams)
            },
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT);
        let task = task_id.to_string();
        let handle = tokio::spawn(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::debug!(task = %task, error = %e, "DNS server ended");
            }
        });
        if let Ok(mut s) = self.servers.lock() {
            if let Some(old) = s.insert(task_id.to_string(), handle.abort_handle()) {
                old.abort();
            }
        }
        Ok(())
    }

    /// Stops serving the container of `task_id`.
    pub fn stop(&self, task_id: &str) {
        if let Some(h) = self.servers.lock().ok().and_then(|mut s| s.remove(task_id)) {
            h.abort();
        }
    }
}

/// The table in a container's namespace that sends its DNS queries to
/// 127.0.0.11:53 on to the sockets of its server (UDP and TCP ports).
pub const REDIRECT_TABLE: &str = "swarmlet-dns";

/// Replaces the container's [`REDIRECT_TABLE`], atomically: queries to
/// 127.0.0.11:53 go to `udp` and `tcp` on 127.0.0.11 (the replies are
/// translated back by conntrack). Only loopback traffic is tracked: the
/// task's own traffic pays no connection tracking for this table.
fn redirect_ruleset(udp: u16, tcp: u16) -> Vec<Value> {
    let table = REDIRECT_TABLE;
    let resolver = RESOLVER_IP.to_string();
    let to = |proto: &str, port: u16| {
        add_rule(
            table,
            "output",
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": resolver}},
                {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": 53}},
                {"dnat": {"addr": resolver, "port": port}}
            ]),
        )
    };
    let untracked = json!([
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
            "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}},
        {"notrack": null}
    ]);
    let mut cmds = replace_table(table).to_vec();
    cmds.extend([
        add_base_chain(table, "output", "nat", "output", -100),
        to("udp", udp),
        to("tcp", tcp),
    ]);
    for (chain, hook) in [("raw-prerouting", "prerouting"), ("raw-output", "output")] {
        cmds.push(add_base_chain(table, chain, "filter", hook, -300));
        cmds.push(add_rule(table, chain, untracked.clone()));
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_to_port_53_go_to_the_servers_ports() {
        let cmds = redirect_ruleset(40001, 40002);
        let text = serde_json::to_string(&cmds).unwrap_or_default();
        assert!(
            text.contains(r#""dnat":{"addr":"127.0.0.11","port":40001}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""dnat":{"addr":"127.0.0.11","port":40002}"#),
            "{text}"
        );
        // The table is replaced whole: added, deleted, added again.
        assert_eq!(
            cmds[1],
            json!({"delete": {"table": {"family": "ip", "name": "swarmlet-dns"}}})
        );
    }
}
