//! What each node must know to program its overlay networks: for every
//! network with an endpoint on the node, the network (VNI, subnet, gateway)
//! and the endpoints on the other nodes with their nodes' data-path IPs.
//! Workers turn this into permanent neighbour and FDB entries; computing it
//! from the store on the leader keeps every node's entries in step with the
//! tasks (no learning, no flooding).

use std::collections::{BTreeMap, HashMap};

use swarmlet_proto::dispatcher::{OverlayNetwork, OverlayPeer};
use swarmlet_proto::objects::{Network, Node, Task, TaskState};

/// One endpoint: a task's (or a node load balancer's) IP on a network.
struct Endpoint<'a> {
    node_id: &'a str,
    ip: &'a str,
    /// The task ID, or `lb-<node id>` for a load-balancer address.
    owner: String,
    /// A task (not a load balancer): only tasks give a node a view.
    task: bool,
}

/// The data-path IP of a node: the host part of its advertise address.
pub fn node_ip(node: &Node) -> Option<String> {
    let addr = node.addr.as_str();
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_string());
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// Whether a task holds its addresses: placed and not ended.
fn has_endpoint(t: &Task) -> bool {
    let state = t.status.as_ref().map_or(0, |s| s.state);
    !t.node_id.is_empty()
        && state >= TaskState::Assigned as i32
        && state < TaskState::Complete as i32
}

/// The overlay state of every node that has an endpoint, by node ID.
pub fn overlay_views(
    tasks: &[(u64, Task)],
    nodes: &[Node],
    networks: &[Network],
) -> HashMap<String, Vec<OverlayNetwork>> {
    let node_ips: HashMap<&str, String> = nodes
        .iter()
        .filter_map(|n| node_ip(n).map(|ip| (n.id.as_str(), ip)))
        .collect();
    // Endpoints by network, in a stable order (views compare equal when
    // nothing changed).
    let mut by_network: BTreeMap<&str, Vec<Endpoint>> = BTreeMap::new();
    for (_, t) in tasks.iter().filter(|(_, t)| has_endpoint(t)) {
        for a in &t.networks {
            let ip = a.address.split('/').next().unwrap_or_default();
            if ip.is_empty() {
                continue;
            }
            by_network
                .entry(a.network_id.as_str())
                .or_default()
                .push(Endpoint {
                    node_id: &t.node_id,
                    ip,
                    owner: t.id.clone(),
                    task: true,
                });
        }
    }
    // Nodes' load-balancer addresses: replies to balanced connections come
    // back to them, so every node on the network must reach them.
    for n in nodes {
        for a in &n.lb_addresses {
            let ip = a.address.split('/').next().unwrap_or_default();
            if let Some(eps) = by_network.get_mut(a.network_id.as_str()) {
                eps.push(Endpoint {
                    node_id: &n.id,
                    ip,
                    owner: format!("lb-{}", n.id),
                    task: false,
                });
            }
        }
    }
    let networks: HashMap<&str, &Network> = networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let nodes_by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut views: HashMap<String, Vec<OverlayNetwork>> = HashMap::new();
    for (net_id, mut endpoints) in by_network {
        let Some(network) = networks.get(net_id) else {
            continue;
        };
        endpoints.sort_by(|a, b| a.ip.cmp(b.ip));
        let mut on_nodes: Vec<&str> = endpoints
            .iter()
            .filter(|e| e.task)
            .map(|e| e.node_id)
            .collect();
        on_nodes.sort_unstable();
        on_nodes.dedup();
        for node in on_nodes {
            let peers = endpoints
                .iter()
                .filter(|e| e.node_id != node)
                .filter_map(|e| {
                    Some(OverlayPeer {
                        ip: e.ip.to_string(),
                        node_ip: node_ips.get(e.node_id)?.clone(),
                        task_id: e.owner.clone(),
                    })
                })
                .collect();
            let lb_address = nodes_by_id
                .get(node)
                .and_then(|n| n.lb_addresses.iter().find(|a| a.network_id == net_id))
                .map(|a| a.address.clone())
                .unwrap_or_default();
            views
                .entry(node.to_string())
                .or_default()
                .push(OverlayNetwork {
                    network: Some((*network).clone()),
                    peers,
                    lb_address,
                });
        }
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{NetworkAttachment, TaskStatus};

    fn task(id: &str, node: &str, state: TaskState, ip: &str) -> (u64, Task) {
        let t = Task {
            id: id.into(),
            node_id: node.into(),
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            networks: vec![NetworkAttachment {
                network_id: "n1".into(),
                network_name: "front".into(),
                address: format!("{ip}/24"),
            }],
            ..Default::default()
        };
        (1, t)
    }

    fn node(id: &str, addr: &str) -> Node {
        Node {
            id: id.into(),
            addr: addr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_node_sees_the_other_nodes_endpoints() {
        let tasks = vec![
            task("t1", "a", TaskState::Running, "10.0.1.2"),
            task("t2", "b", TaskState::Starting, "10.0.1.3"),
            task("t3", "b", TaskState::Running, "10.0.1.4"),
            // Ended or not placed: no endpoint.
            task("t4", "c", TaskState::Failed, "10.0.1.5"),
            task("t5", "", TaskState::Pending, "10.0.1.6"),
        ];
        let mut nodes = vec![
            node("a", "192.168.5.1:4242"),
            node("b", "192.168.5.2:4242"),
            node("c", "192.168.5.3:4242"),
        ];
        for (n, ip) in nodes.iter_mut().zip(["10.0.1.250", "10.0.1.251"]) {
            n.lb_addresses = vec![NetworkAttachment {
                network_id: "n1".into(),
                network_name: "front".into(),
                address: format!("{ip}/24"),
            }];
        }
        let nets = vec![Network {
            id: "n1".into(),
            vni: 4096,
            ..Default::default()
        }];
        let views = overlay_views(&tasks, &nodes, &nets);
        assert_eq!(views.len(), 2, "only nodes with endpoints: {views:?}");
        let a = &views["a"][0];
        assert_eq!(a.network.as_ref().map(|n| n.vni), Some(4096));
        let peers: Vec<(&str, &str)> = a
            .peers
            .iter()
            .map(|p| (p.ip.as_str(), p.node_ip.as_str()))
            .collect();
        assert_eq!(
            peers,
            vec![
                ("10.0.1.251", "192.168.5.2"),
                ("10.0.1.3", "192.168.5.2"),
                ("10.0.1.4", "192.168.5.2")
            ]
        );
        assert_eq!(a.lb_address, "10.0.1.250/24");
        let b = &views["b"][0];
        let peers: Vec<(&str, &str)> = b
            .peers
            .iter()
            .map(|p| (p.ip.as_str(), p.node_ip.as_str()))
            .collect();
        assert_eq!(
            peers,
            vec![("10.0.1.2", "192.168.5.1"), ("10.0.1.250", "192.168.5.1")]
        );
        assert_eq!(b.lb_address, "10.0.1.251/24");
    }

    #[test]
    fn node_ip_from_advertise_address() {
        assert_eq!(
            node_ip(&node("x", "10.1.2.3:4242")).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(node_ip(&node("x", "10.1.2.3")).as_deref(), Some("10.1.2.3"));
        assert_eq!(node_ip(&node("x", "host.example:4242")), None);
    }
}
