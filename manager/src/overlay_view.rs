//! What each node must know to program its overlay networks: for every
//! network with an endpoint on the node (and `ingress` on every node), the
//! network (VNI, subnet, gateway), the endpoints on the other nodes with
//! their nodes' data-path IPs, and the services on the network with their
//! VIPs, running backends and published ports. Workers turn this into
//! permanent neighbour and FDB entries, load-balancer rules and DNS
//! answers; computing it from the store on the leader keeps every node in
//! step with the tasks (no learning, no flooding, nothing stale).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use swarmlet_common::task_state::{holds_addresses, is_running, observed};
use swarmlet_proto::dispatcher::{NamedEndpoint, OverlayNetwork, OverlayPeer, ServiceBackends};
use swarmlet_proto::objects::{Network, Node, Service, Task, TaskState};

/// One endpoint: a task's (or a node load balancer's) IP on a network.
struct Endpoint<'a> {
    node_id: &'a str,
    ip: &'a str,
    /// The task ID, or `lb-<node id>` for a load-balancer address.
    owner: String,
    /// Whether it gives its node a view of the network: tasks do, and on
    /// `ingress` load balancers do too (the routing mesh).
    gives_view: bool,
    /// A node's load-balancer address (not a task's).
    load_balancer: bool,
}

/// The data-path IP of a node: its `--data-path-addr`, or else the host
/// part of its advertise address.
pub fn node_ip(node: &Node) -> Option<String> {
    if let Ok(ip) = node.data_addr.parse::<std::net::IpAddr>() {
        return Some(ip.to_string());
    }
    let addr = node.addr.as_str();
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_string());
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// Whether a task is an endpoint on its node: placed there, and holding
/// its addresses.
fn has_endpoint(t: &Task) -> bool {
    !t.node_id.is_empty() && observed(t) >= TaskState::Assigned && holds_addresses(t)
}

/// Whether a service task takes traffic: running (health checks passed)
/// and not being stopped.
fn is_backend(t: &Task) -> bool {
    !t.attachment && !t.service_id.is_empty() && is_running(t)
}

fn ip_of(address: &str) -> &str {
    address.split('/').next().unwrap_or_default()
}

/// The services and containers of each network, by network ID.
#[derive(Default)]
struct NetworkServices {
    services: BTreeMap<String, ServiceBackends>,
    containers: Vec<NamedEndpoint>,
}

/// The entry of service `id` (named `name`) on network `network`.
fn service_entry<'a>(
    out: &'a mut HashMap<String, NetworkServices>,
    network: &str,
    id: &str,
    name: &str,
) -> &'a mut ServiceBackends {
    let entry = out
        .entry(network.to_string())
        .or_default()
        .services
        .entry(id.to_string())
        .or_default();
    entry.service_id = id.to_string();
    entry.name = name.to_string();
    entry
}

/// The aliases of a service on the network named `network`.
fn aliases_on(service: &Service, network: &str) -> Vec<String> {
    service
        .spec
        .as_ref()
        .map(|s| {
            s.network_aliases
                .iter()
                .filter(|a| a.network == network)
                .flat_map(|a| a.aliases.iter().cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// Services (VIP, backends, ingress ports) and named containers by
/// network; `ingress_id` is the ingress network's ID.
fn services_by_network<T: Borrow<Task>>(
    tasks: &[(u64, T)],
    services: &[Service],
    ingress_id: Option<&str>,
) -> HashMap<String, NetworkServices> {
    let mut out: HashMap<String, NetworkServices> = HashMap::new();
    for s in services {
        let name = s
            .spec
            .as_ref()
            .map(|sp| sp.name.clone())
            .unwrap_or_default();
        let endpoint = s.endpoint.clone().unwrap_or_default();
        for vip in &endpoint.vips {
            let entry = service_entry(&mut out, &vip.network_id, &s.id, &name);
            entry.vip = ip_of(&vip.address).to_string();
            entry.aliases = aliases_on(s, &vip.network_name);
        }
        if let Some(ingress) = ingress_id {
            let ports: Vec<_> = endpoint
                .ports
                .iter()
                .filter(|p| p.mode == "ingress" && p.published != 0)
                .cloned()
                .collect();
            if !ports.is_empty() {
                service_entry(&mut out, ingress, &s.id, &name).ports = ports;
            }
        }
    }
    let names: HashMap<&str, &Service> = services.iter().map(|s| (s.id.as_str(), s)).collect();
    for t in tasks.iter().map(|(_, t)| t.borrow()) {
        if t.attachment && has_endpoint(t) {
            let name = t.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
            for a in &t.networks {
                out.entry(a.network_id.clone())
                    .or_default()
                    .containers
                    .push(NamedEndpoint {
                        name: name.clone(),
                        ip: ip_of(&a.address).to_string(),
                    });
            }
            continue;
        }
        if !is_backend(t) {
            continue;
        }
        let Some(service) = names.get(t.service_id.as_str()) else {
            continue;
        };
        for a in &t.networks {
            let entry = out
                .entry(a.network_id.clone())
                .or_default()
                .services
                .entry(t.service_id.clone())
                .or_default();
            entry.service_id = t.service_id.clone();
            entry.name = service
                .spec
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            if entry.aliases.is_empty() {
                entry.aliases = aliases_on(service, &a.network_name);
            }
            entry.backends.push(ip_of(&a.address).to_string());
        }
    }
    for n in out.values_mut() {
        for s in n.services.values_mut() {
            s.backends.sort();
            s.backends.dedup();
        }
        n.containers
            .sort_by(|a, b| (&a.name, &a.ip).cmp(&(&b.name, &b.ip)));
    }
    out
}

/// The overlay state of every node that has an endpoint (and of every node
/// with a load-balancer address on `ingress`), by node ID.
pub fn overlay_views<T: Borrow<Task>>(
    tasks: &[(u64, T)],
    nodes: &[Node],
    networks: &[Network],
    services: &[Service],
) -> HashMap<String, Vec<OverlayNetwork>> {
    let node_ips: HashMap<&str, String> = nodes
        .iter()
        .filter_map(|n| node_ip(n).map(|ip| (n.id.as_str(), ip)))
        .collect();
    let ingress_id = networks
        .iter()
        .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress))
        .map(|n| n.id.as_str());
    // Endpoints by network, in a stable order (views compare equal when
    // nothing changed).
    let mut by_network: BTreeMap<&str, Vec<Endpoint>> = BTreeMap::new();
    if let Some(ingress) = ingress_id {
        by_network.entry(ingress).or_default();
    }
    for t in tasks
        .iter()
        .map(|(_, t)| t.borrow())
        .filter(|t| has_endpoint(t))
    {
        for a in &t.networks {
            let ip = ip_of(&a.address);
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
                    gives_view: true,
                    load_balancer: false,
                });
        }
    }
    // Nodes' load-balancer addresses: replies to balanced connections come
    // back to them, so every node with tasks on the network must reach
    // them. On ingress every node has a view (the routing mesh).
    for n in nodes {
        for a in &n.lb_addresses {
            let ip = ip_of(&a.address);
            if let Some(eps) = by_network.get_mut(a.network_id.as_str()) {
                eps.push(Endpoint {
                    node_id: &n.id,
                    ip,
                    owner: format!("lb-{}", n.id),
                    gives_view: Some(a.network_id.as_str()) == ingress_id,
                    load_balancer: true,
                });
            }
        }
    }
    let mut services = services_by_network(tasks, services, ingress_id);
    let networks: HashMap<&str, &Network> = networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let nodes_by_id: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut views: HashMap<String, Vec<OverlayNetwork>> = HashMap::new();
    for (net_id, mut endpoints) in by_network {
        let Some(network) = networks.get(net_id) else {
            continue;
        };
        let on_network = services.remove(net_id).unwrap_or_default();
        let net_services: Vec<ServiceBackends> = on_network.services.into_values().collect();
        endpoints.sort_by(|a, b| a.ip.cmp(b.ip));
        let mut on_nodes: Vec<&str> = endpoints
            .iter()
            .filter(|e| e.gives_view)
            .map(|e| e.node_id)
            .collect();
        on_nodes.sort_unstable();
        on_nodes.dedup();
        let with_tasks: std::collections::HashSet<&str> = endpoints
            .iter()
            .filter(|e| !e.load_balancer)
            .map(|e| e.node_id)
            .collect();
        for node in on_nodes {
            // A node without tasks here only sends to the tasks; no reply
            // ever comes to it from another node's load balancer, so it
            // needs no entry for them (without this, every node's ingress
            // view listed every other node: quadratic in the cluster size).
            let hosts_tasks = with_tasks.contains(node);
            let peers = endpoints
                .iter()
                .filter(|e| e.node_id != node)
                .filter(|e| hosts_tasks || !e.load_balancer)
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
                    services: net_services.clone(),
                    ingress: Some(net_id) == ingress_id,
                    containers: on_network.containers.clone(),
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
        let views = overlay_views(&tasks, &nodes, &nets, &[]);
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
    fn services_backends_and_the_ingress_view_of_every_node() {
        use swarmlet_proto::objects::{
            Endpoint as SvcEndpoint, NetworkSpec, PortConfig, ServiceSpec,
        };
        let on = |net: &str, ip: &str| NetworkAttachment {
            network_id: net.into(),
            network_name: net.into(),
            address: format!("{ip}/16"),
        };
        let mut t1 = task("t1", "a", TaskState::Running, "10.0.1.2").1;
        t1.service_id = "s1".into();
        t1.desired_state = TaskState::Running as i32;
        t1.networks = vec![on("ing", "10.255.0.5"), on("n1", "10.0.1.2")];
        // Starting (health not passed yet) and stopping tasks take no traffic.
        let mut t2 = t1.clone();
        t2.id = "t2".into();
        t2.status = Some(TaskStatus {
            state: TaskState::Starting as i32,
            ..Default::default()
        });
        t2.networks = vec![on("ing", "10.255.0.6"), on("n1", "10.0.1.3")];
        let mut t3 = t1.clone();
        t3.id = "t3".into();
        t3.desired_state = TaskState::Shutdown as i32;
        t3.networks = vec![on("ing", "10.255.0.7"), on("n1", "10.0.1.4")];
        let mut run = task("r1", "a", TaskState::Running, "10.0.1.9").1;
        run.attachment = true;
        run.spec = Some(ServiceSpec {
            name: "probe".into(),
            ..Default::default()
        });
        let tasks: Vec<(u64, Task)> = [t1, t2, t3, run].into_iter().map(|t| (1, t)).collect();
        let service = Service {
            id: "s1".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                ..Default::default()
            }),
            endpoint: Some(SvcEndpoint {
                ports: vec![PortConfig {
                    published: 8080,
                    target: 80,
                    protocol: "tcp".into(),
                    mode: "ingress".into(),
                }],
                vips: vec![on("ing", "10.255.0.2"), on("n1", "10.0.1.250")],
            }),
            ..Default::default()
        };
        let mut nodes = vec![node("a", "192.168.5.1:4242"), node("b", "192.168.5.2:4242")];
        nodes[0].lb_addresses = vec![on("ing", "10.255.0.3")];
        nodes[1].lb_addresses = vec![on("ing", "10.255.0.4")];
        let nets = vec![
            Network {
                id: "ing".into(),
                spec: Some(NetworkSpec {
                    name: "ingress".into(),
                    ingress: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Network {
                id: "n1".into(),
                ..Default::default()
            },
        ];
        let views = overlay_views(&tasks, &nodes, &nets, &[service]);
        // Node b runs nothing, yet has the ingress network with the tasks
        // of node a as peers and the published port.
        let b = &views["b"];
        assert_eq!(b.len(), 1);
        assert!(b[0].ingress);
        let ports: Vec<u32> = b[0].services[0].ports.iter().map(|p| p.published).collect();
        assert_eq!(ports, vec![8080]);
        assert_eq!(b[0].services[0].backends, vec!["10.255.0.5"]);
        assert!(b[0].peers.iter().any(|p| p.ip == "10.255.0.5"));
        // ... but not node a's load balancer: b runs no task on ingress,
        // so nothing answers a's balanced connections from b. Node a,
        // which runs tasks, must reach b's load balancer.
        assert!(!b[0].peers.iter().any(|p| p.ip == "10.255.0.3"));
        let a_ingress = views["a"]
            .iter()
            .find(|n| n.ingress)
            .cloned()
            .unwrap_or_default();
        assert!(a_ingress.peers.iter().any(|p| p.ip == "10.255.0.4"));
        let n1 = views["a"]
            .iter()
            .find(|n| n.network.as_ref().is_some_and(|n| n.id == "n1"))
            .cloned()
            .unwrap_or_default();
        assert!(!n1.ingress);
        assert_eq!(n1.services.len(), 1);
        assert_eq!(n1.services[0].name, "web");
        assert_eq!(n1.services[0].vip, "10.0.1.250");
        assert_eq!(n1.services[0].backends, vec!["10.0.1.2"]);
        assert!(n1.services[0].ports.is_empty());
        assert_eq!(n1.containers.len(), 1);
        assert_eq!(n1.containers[0].name, "probe");
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

    #[test]
    fn node_ip_from_the_data_path_address_when_given() {
        let mut n = node("x", "10.1.2.3:4242");
        n.data_addr = "10.9.9.3".into();
        assert_eq!(node_ip(&n).as_deref(), Some("10.9.9.3"));
    }
}
