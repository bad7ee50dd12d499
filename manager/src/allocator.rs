//! The network allocator (pure, run by the leader before the scheduler):
//! one virtual IP per service per network (endpoint mode `vip`) and one
//! address per task per network, from each network's subnet. A service's
//! networks are its `--network`s plus `ingress` when it publishes a port in
//! ingress mode. A task is scheduled only once it has all its addresses; a
//! task whose subnet is full stays `pending` with the reason in its error.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use swarmlet_proto::objects::{Network, NetworkAttachment, Node, Service, ServiceSpec, Task};

use crate::ipam::{self, Subnet};
use swarmlet_common::task_state::{holds_addresses, is_pending};

/// A change the allocator wants.
#[derive(Debug, Clone, PartialEq)]
pub enum Allocation {
    /// The service (at this version) with its VIPs set.
    Service(u64, Box<Service>),
    /// The task (at this version) with addresses or an error set.
    Task(u64, Box<Task>),
    /// The node (at this version) with its load-balancer addresses set.
    Node(u64, Box<Node>),
}

struct Pool<'a> {
    net: &'a Network,
    subnet: Subnet,
    used: HashSet<u32>,
}

impl Pool<'_> {
    fn take(&mut self) -> Option<String> {
        let ip = ipam::next_address(&self.subnet, &self.used)?;
        self.used.insert(ip);
        Some(format!("{}/{}", Ipv4Addr::from(ip), self.subnet.len))
    }

    fn name(&self) -> String {
        self.net
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }
}

/// The networks a spec's tasks join, by network ID, in spec order.
pub fn wanted_networks<'a>(spec: &ServiceSpec, networks: &'a [Network]) -> Vec<&'a Network> {
    let by_ref = |r: &str| {
        networks
            .iter()
            .find(|n| n.id == r || n.spec.as_ref().is_some_and(|s| s.name == r))
    };
    let mut out: Vec<&Network> = Vec::new();
    if spec.ports.iter().any(|p| p.mode == "ingress") {
        if let Some(ingress) = networks
            .iter()
            .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress))
        {
            out.push(ingress);
        }
    }
    for r in &spec.networks {
        if let Some(n) = by_ref(r) {
            if !out.iter().any(|o| o.id == n.id) {
                out.push(n);
            }
        }
    }
    out
}

/// Whether `task` has an address on every network its spec asks for.
pub fn has_addresses(task: &Task, networks: &[Network]) -> bool {
    let Some(spec) = task.spec.as_ref() else {
        return true;
    };
    wanted_networks(spec, networks)
        .iter()
        .all(|n| task.networks.iter().any(|a| a.network_id == n.id))
}

/// Allocates what is missing: service VIPs, task addresses, and each
/// node's load-balancer address on ingress and on every network it has a
/// task on (released when it has none left there).
pub fn allocate<T: Borrow<Task>>(
    networks: &[Network],
    services: &[(u64, Service)],
    tasks: &[(u64, T)],
    nodes: &[(u64, Node)],
) -> Vec<Allocation> {
    if networks.is_empty() {
        return Vec::new();
    }
    let mut pools: HashMap<&str, Pool> = networks
        .iter()
        .filter_map(|n| {
            let subnet = Subnet::parse(&n.subnet).ok()?;
            let mut used = HashSet::new();
            if let Some(gw) = ipam::parse_address(&n.gateway) {
                used.insert(gw);
            }
            Some((
                n.id.as_str(),
                Pool {
                    net: n,
                    subnet,
                    used,
                },
            ))
        })
        .collect();
    let mut mark = |a: &NetworkAttachment| {
        if let (Some(p), Some(ip)) = (
            pools.get_mut(a.network_id.as_str()),
            ipam::parse_address(&a.address),
        ) {
            p.used.insert(ip);
        }
    };
    for (_, s) in services {
        for a in s.endpoint.iter().flat_map(|e| e.vips.iter()) {
            mark(a);
        }
    }
    for t in tasks
        .iter()
        .map(|(_, t)| t.borrow())
        .filter(|t| holds_addresses(t))
    {
        for a in &t.networks {
            mark(a);
        }
    }
    for (_, n) in nodes {
        for a in &n.lb_addresses {
            mark(a);
        }
    }
    let mut out = Vec::new();
    for (version, s) in services {
        let spec = s.spec.clone().unwrap_or_default();
        let vip_mode = spec.endpoint_mode != "dnsrr";
        let wanted = if vip_mode {
            wanted_networks(&spec, networks)
        } else {
            Vec::new()
        };
        let endpoint = s.endpoint.clone().unwrap_or_default();
        let mut vips: Vec<NetworkAttachment> = endpoint
            .vips
            .iter()
            .filter(|a| wanted.iter().any(|n| n.id == a.network_id))
            .cloned()
            .collect();
        for n in &wanted {
            if vips.iter().any(|a| a.network_id == n.id) {
                continue;
            }
            if let Some(pool) = pools.get_mut(n.id.as_str()) {
                if let Some(address) = pool.take() {
                    vips.push(NetworkAttachment {
                        network_id: n.id.clone(),
                        network_name: pool.name(),
                        address,
                    });
                }
            }
        }
        if vips != endpoint.vips {
            let mut s = s.clone();
            s.endpoint.get_or_insert_with(Default::default).vips = vips;
            out.push(Allocation::Service(*version, Box::new(s)));
        }
    }
    let no_spec = ServiceSpec::default();
    for (version, t) in tasks {
        let t: &Task = t.borrow();
        if !is_pending(t) {
            continue;
        }
        let spec = t.spec.as_ref().unwrap_or(&no_spec);
        let wanted = wanted_networks(spec, networks);
        let missing: Vec<&&Network> = wanted
            .iter()
            .filter(|n| !t.networks.iter().any(|a| a.network_id == n.id))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let mut task = t.clone();
        let mut error = None;
        for n in missing {
            let Some(pool) = pools.get_mut(n.id.as_str()) else {
                continue;
            };
            match pool.take() {
                Some(address) => task.networks.push(NetworkAttachment {
                    network_id: n.id.clone(),
                    network_name: pool.name(),
                    address,
                }),
                None => {
                    error = Some(format!(
                        "no address left in subnet {} of network {}",
                        pool.subnet.display(),
                        pool.name()
                    ));
                    break;
                }
            }
        }
        if let Some(err) = error {
            // Give back what this pass took for the task; keep it pending.
            task.networks = t.networks.clone();
            let status = task.status.get_or_insert_with(Default::default);
            if status.err == err {
                continue;
            }
            status.err = err;
        }
        out.push(Allocation::Task(*version, Box::new(task)));
    }
    allocate_lb(networks, tasks, nodes, &mut pools, &mut out);
    out
}

/// Load-balancer addresses: one per node on ingress and on each network
/// where the node has a placed task holding an address.
fn allocate_lb<T: Borrow<Task>>(
    networks: &[Network],
    tasks: &[(u64, T)],
    nodes: &[(u64, Node)],
    pools: &mut HashMap<&str, Pool>,
    out: &mut Vec<Allocation>,
) {
    let ingress = networks
        .iter()
        .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress));
    let mut on_node: HashMap<&str, HashSet<&str>> = HashMap::new();
    for t in tasks
        .iter()
        .map(|(_, t)| t.borrow())
        .filter(|t| holds_addresses(t))
    {
        if t.node_id.is_empty() {
            continue;
        }
        for a in &t.networks {
            on_node
                .entry(t.node_id.as_str())
                .or_default()
                .insert(a.network_id.as_str());
        }
    }
    for (version, node) in nodes {
        let mut wanted: Vec<&Network> = networks
            .iter()
            .filter(|n| {
                on_node
                    .get(node.id.as_str())
                    .is_some_and(|ids| ids.contains(n.id.as_str()))
            })
            .collect();
        if let Some(i) = ingress {
            if !wanted.iter().any(|n| n.id == i.id) {
                wanted.insert(0, i);
            }
        }
        let mut lb: Vec<NetworkAttachment> = node
            .lb_addresses
            .iter()
            .filter(|a| wanted.iter().any(|n| n.id == a.network_id))
            .cloned()
            .collect();
        for n in wanted {
            if lb.iter().any(|a| a.network_id == n.id) {
                continue;
            }
            if let Some(pool) = pools.get_mut(n.id.as_str()) {
                if let Some(address) = pool.take() {
                    lb.push(NetworkAttachment {
                        network_id: n.id.clone(),
                        network_name: pool.name(),
                        address,
                    });
                }
            }
        }
        if lb != node.lb_addresses {
            let mut n = node.clone();
            n.lb_addresses = lb;
            out.push(Allocation::Node(*version, Box::new(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{Endpoint, NetworkSpec, PortConfig, TaskState, TaskStatus};

    fn net(id: &str, name: &str, subnet: &str, gw: &str, ingress: bool) -> Network {
        Network {
            id: id.into(),
            spec: Some(NetworkSpec {
                name: name.into(),
                ingress,
                ..Default::default()
            }),
            subnet: subnet.into(),
            gateway: gw.into(),
            ..Default::default()
        }
    }

    fn pending(id: &str, spec: &ServiceSpec) -> (u64, Task) {
        (
            1,
            Task {
                id: id.into(),
                desired_state: TaskState::Running as i32,
                status: Some(TaskStatus {
                    state: TaskState::Pending as i32,
                    ..Default::default()
                }),
                spec: Some(spec.clone()),
                ..Default::default()
            },
        )
    }

    #[test]
    fn vips_and_task_addresses_then_exhaustion() {
        let nets = vec![
            net("i", "ingress", "10.255.0.0/16", "10.255.0.1", true),
            net("b", "backend", "10.0.5.0/29", "10.0.5.1", false),
        ];
        let spec = ServiceSpec {
            networks: vec!["backend".into()],
            ports: vec![PortConfig {
                published: 8080,
                target: 80,
                protocol: "tcp".into(),
                mode: "ingress".into(),
            }],
            ..Default::default()
        };
        let svc = Service {
            id: "s".into(),
            spec: Some(spec.clone()),
            endpoint: Some(Endpoint::default()),
            ..Default::default()
        };
        // /29: 6 hosts, minus the gateway, minus the VIP = 4 task addresses.
        let tasks: Vec<(u64, Task)> = (0..5).map(|i| pending(&format!("t{i}"), &spec)).collect();
        let out = allocate(&nets, &[(1, svc)], &tasks, &[]);
        let Allocation::Service(_, s) = &out[0] else {
            panic!("service first: {out:?}")
        };
        let vips: Vec<&str> = s
            .endpoint
            .as_ref()
            .map(|e| e.vips.iter().map(|a| a.address.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(vips, vec!["10.255.0.2/16", "10.0.5.2/29"]);
        let tasks_out: Vec<&Task> = out
            .iter()
            .filter_map(|a| match a {
                Allocation::Task(_, t) => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(tasks_out.len(), 5);
        assert_eq!(tasks_out[0].networks[1].address, "10.0.5.3/29");
        assert!(has_addresses(tasks_out[3], &nets));
        let last = tasks_out[4];
        assert!(!has_addresses(last, &nets));
        assert_eq!(
            last.status.as_ref().map(|s| s.err.as_str()),
            Some("no address left in subnet 10.0.5.0/29 of network backend")
        );
    }

    #[test]
    fn dnsrr_has_no_vip_and_finished_tasks_free_addresses() {
        let nets = vec![net("b", "backend", "10.0.5.0/30", "10.0.5.1", false)];
        let spec = ServiceSpec {
            networks: vec!["b".into()],
            endpoint_mode: "dnsrr".into(),
            ..Default::default()
        };
        let svc = Service {
            id: "s".into(),
            spec: Some(spec.clone()),
            ..Default::default()
        };
        let mut done = pending("old", &spec).1;
        done.networks = vec![NetworkAttachment {
            network_id: "b".into(),
            network_name: "backend".into(),
            address: "10.0.5.2/30".into(),
        }];
        done.status = Some(TaskStatus {
            state: TaskState::Failed as i32,
            ..Default::default()
        });
        let out = allocate(&nets, &[(1, svc)], &[(1, done), pending("new", &spec)], &[]);
        assert_eq!(out.len(), 1, "{out:?}");
        let Allocation::Task(_, t) = &out[0] else {
            panic!("task")
        };
        assert_eq!(t.networks[0].address, "10.0.5.2/30");
    }

    #[test]
    fn load_balancer_addresses_follow_tasks() {
        let nets = vec![
            net("i", "ingress", "10.255.0.0/16", "10.255.0.1", true),
            net("b", "backend", "10.0.5.0/24", "10.0.5.1", false),
        ];
        let node = |id: &str| {
            (
                1,
                Node {
                    id: id.into(),
                    ..Default::default()
                },
            )
        };
        let mut placed = pending("t", &ServiceSpec::default()).1;
        placed.node_id = "a".into();
        placed.status = Some(TaskStatus {
            state: TaskState::Running as i32,
            ..Default::default()
        });
        placed.networks = vec![NetworkAttachment {
            network_id: "b".into(),
            network_name: "backend".into(),
            address: "10.0.5.2/24".into(),
        }];
        let tasks = vec![(1, placed.clone())];
        let out = allocate(&nets, &[], &tasks, &[node("a"), node("z")]);
        let lb = |id: &str| -> Vec<String> {
            out.iter()
                .find_map(|a| match a {
                    Allocation::Node(_, n) if n.id == id => {
                        Some(n.lb_addresses.iter().map(|a| a.address.clone()).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default()
        };
        // Every node on ingress; "a" also on backend, where its task runs
        // (the task's own address is not reused).
        assert_eq!(lb("a"), vec!["10.255.0.2/16", "10.0.5.3/24"]);
        assert_eq!(lb("z"), vec!["10.255.0.3/16"]);

        // The task ended: "a" gives its backend address back.
        let mut a = node("a");
        a.1.lb_addresses = vec![
            NetworkAttachment {
                network_id: "i".into(),
                network_name: "ingress".into(),
                address: "10.255.0.2/16".into(),
            },
            NetworkAttachment {
                network_id: "b".into(),
                network_name: "backend".into(),
                address: "10.0.5.3/24".into(),
            },
        ];
        let mut ended = placed;
        ended.status = Some(TaskStatus {
            state: TaskState::Complete as i32,
            ..Default::default()
        });
        let out = allocate(&nets, &[], &[(1, ended)], &[a]);
        let Some(Allocation::Node(_, n)) = out.first() else {
            panic!("node change: {out:?}")
        };
        assert_eq!(n.lb_addresses.len(), 1);
        assert_eq!(n.lb_addresses[0].network_id, "i");
    }
}
