//! Published ports: checks a service's port list and allocates its
//! endpoint, picking dynamic ports from 30000–32767 and refusing a port
//! another service already publishes (Docker Swarm's rules: an ingress port
//! is taken cluster-wide; host-mode ports are placed by the scheduler).

use std::collections::{HashMap, HashSet};

use swarmlet_proto::objects::{Endpoint, Node, PortConfig, Service, ServiceSpec};

/// The range dynamic published ports come from.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

/// Why a service's ports are refused; the message is what the user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The spec itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Another service already publishes the port.
    #[error("port {port}/{protocol} is already published by service {service}")]
    InUse {
        /// The port.
        port: u32,
        /// tcp or udp.
        protocol: String,
        /// The service holding it.
        service: String,
    },
    /// A node's swarmd listens on the port itself.
    #[error("port {port}/tcp is swarmd's own port on node {node}: publish another port")]
    Daemon {
        /// The port.
        port: u32,
        /// A node whose swarmd listens on it.
        node: String,
    },
    /// No dynamic port is left.
    #[error("no free port left in the dynamic range 30000-32767")]
    Exhausted,
}

/// Normalises and checks a spec's ports (defaults: tcp, ingress).
pub fn normalise(spec: &mut ServiceSpec) -> Result<(), PortError> {
    let dnsrr = spec.endpoint_mode == "dnsrr";
    let mut seen = HashSet::new();
    for p in &mut spec.ports {
        if p.protocol.is_empty() {
            p.protocol = "tcp".into();
        }
        if p.mode.is_empty() {
            p.mode = "ingress".into();
        }
        if p.protocol != "tcp" && p.protocol != "udp" {
            return Err(PortError::Invalid(format!(
                "invalid protocol {:?}: expected tcp or udp",
                p.protocol
            )));
        }
        if p.mode != "ingress" && p.mode != "host" {
            return Err(PortError::Invalid(format!(
                "invalid publish mode {:?}: expected ingress or host",
                p.mode
            )));
        }
        if p.target == 0 || p.target > 65535 || p.published > 65535 {
            return Err(PortError::Invalid(format!(
                "invalid port {}:{}: ports are 1-65535",
                p.published, p.target
            )));
        }
        if dnsrr && p.mode == "ingress" {
            return Err(PortError::Invalid(
                "port published with ingress mode can't be used with dnsrr endpoint mode".into(),
            ));
        }
        if p.published != 0 && !seen.insert((p.published, p.protocol.clone())) {
            return Err(PortError::Invalid(format!(
                "port {}/{} is published more than once",
                p.published, p.protocol
            )));
        }
    }
    Ok(())
}

/// The TCP ports the nodes' own daemons listen on, each with a node that
/// does (reported in heartbeats): a published port there would let the
/// routing mesh capture the cluster's own traffic.
pub fn daemon_ports(nodes: &[Node]) -> HashMap<u32, String> {
    let mut ports = HashMap::new();
    for n in nodes {
        for p in &n.daemon_ports {
            ports.entry(*p).or_insert_with(|| n.hostname.clone());
        }
    }
    ports
}

/// The endpoint of service `me` (`spec` already normalised), given every
/// service in the cluster and the nodes' own ports ([`daemon_ports`]). A
/// port `me` already had keeps its number.
pub fn allocate(
    me: &str,
    spec: &ServiceSpec,
    previous: Option<&Endpoint>,
    services: &[Service],
    daemon: &HashMap<u32, String>,
) -> Result<Endpoint, PortError> {
    // (port, protocol) → name of the service publishing it in ingress mode.
    let mut taken: HashMap<(u32, String), String> = HashMap::new();
    for s in services.iter().filter(|s| s.id != me) {
        let name = s.spec.as_ref().map(|x| x.name.clone()).unwrap_or_default();
        for p in s.endpoint.iter().flat_map(|e| e.ports.iter()) {
            if p.mode == "ingress" {
                taken.insert((p.published, p.protocol.clone()), name.clone());
            }
        }
    }
    let mut ports = Vec::with_capacity(spec.ports.len());
    for p in &spec.ports {
        let mut port = p.clone();
        if let (Some(node), "tcp") = (daemon.get(&p.published), p.protocol.as_str()) {
            return Err(PortError::Daemon {
                port: p.published,
                node: node.clone(),
            });
        }
        if let Some(holder) = taken.get(&(p.published, p.protocol.clone())) {
            if p.published != 0 {
                return Err(PortError::InUse {
                    port: p.published,
                    protocol: p.protocol.clone(),
                    service: holder.clone(),
                });
            }
        }
        if port.published == 0 && port.mode == "ingress" {
            let kept = previous.into_iter().flat_map(|e| e.ports.iter()).find(|q| {
                q.target == p.target
                    && q.protocol == p.protocol
                    && q.mode == "ingress"
                    && DYNAMIC_PORTS.contains(&q.published)
                    && !taken.contains_key(&(q.published, q.protocol.clone()))
            });
            port.published = match kept {
                Some(q) => q.published,
                None => DYNAMIC_PORTS
                    .clone()
                    .find(|n| {
                        let daemons = p.protocol == "tcp" && daemon.contains_key(n);
                        let mine =
                            spec.ports.iter().chain(ports.iter()).any(|q: &PortConfig| {
                                q.published == *n && q.protocol == p.protocol
                            });
                        !(taken.contains_key(&(*n, p.protocol.clone())) || daemons || mine)
                    })
                    .ok_or(PortError::Exhausted)?,
            };
        }
        if port.mode == "ingress" {
            taken.insert((port.published, port.protocol.clone()), spec.name.clone());
        }
        ports.push(port);
    }
    let vips = previous.map(|e| e.vips.clone()).unwrap_or_default();
    Ok(Endpoint { ports, vips })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(published: u32, target: u32, mode: &str) -> PortConfig {
        PortConfig {
            published,
            target,
            protocol: String::new(),
            mode: mode.into(),
        }
    }

    fn service(id: &str, name: &str, ports: Vec<PortConfig>) -> Service {
        let mut spec = ServiceSpec {
            name: name.into(),
            ports,
            ..Default::default()
        };
        normalise(&mut spec).expect("valid");
        let endpoint = allocate(id, &spec, None, &[], &HashMap::new()).expect("free");
        Service {
            id: id.into(),
            spec: Some(spec),
            endpoint: Some(endpoint),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_validation() {
        let mut spec = ServiceSpec {
            ports: vec![port(8080, 80, "")],
            ..Default::default()
        };
        normalise(&mut spec).expect("valid");
        assert_eq!(spec.ports[0].protocol, "tcp");
        assert_eq!(spec.ports[0].mode, "ingress");
        let mut bad = ServiceSpec {
            ports: vec![port(8080, 0, "")],
            ..Default::default()
        };
        assert!(normalise(&mut bad).is_err());
        let mut twice = ServiceSpec {
            ports: vec![port(8080, 80, ""), port(8080, 81, "")],
            ..Default::default()
        };
        assert!(normalise(&mut twice).is_err());
        let mut dnsrr = ServiceSpec {
            endpoint_mode: "dnsrr".into(),
            ports: vec![port(8080, 80, "")],
            ..Default::default()
        };
        assert!(normalise(&mut dnsrr).is_err());
    }

    #[test]
    fn conflicts_and_dynamic_ports() {
        let web = service(
            "w",
            "web",
            vec![port(8080, 80, "ingress"), port(0, 443, "")],
        );
        let none = HashMap::new();
        let ep = web.endpoint.clone().expect("endpoint");
        assert_eq!(ep.ports[1].published, 30000);
        let mut other = ServiceSpec {
            name: "api".into(),
            ports: vec![port(8080, 80, "")],
            ..Default::default()
        };
        normalise(&mut other).expect("valid");
        let err = allocate("a", &other, None, std::slice::from_ref(&web), &none)
            .expect_err("8080 is taken");
        assert_eq!(
            err.to_string(),
            "port 8080/tcp is already published by service web"
        );
        // A dynamic port skips the taken one; the service itself keeps its own.
        other.ports = vec![port(0, 80, "")];
        normalise(&mut other).expect("valid");
        let ep2 = allocate("a", &other, None, std::slice::from_ref(&web), &none).expect("free");
        assert_eq!(ep2.ports[0].published, 30001);
        let again = allocate(
            "w",
            web.spec.as_ref().expect("spec"),
            Some(&ep),
            std::slice::from_ref(&web),
            &none,
        )
        .expect("own ports");
        assert_eq!(again, ep);
        // udp is a different port space.
        other.ports = vec![PortConfig {
            protocol: "udp".into(),
            ..port(8080, 80, "ingress")
        }];
        normalise(&mut other).expect("valid");
        assert!(allocate("a", &other, None, &[web], &none).is_ok());
    }

    #[test]
    fn the_daemons_own_ports_are_never_published() {
        let nodes = vec![
            Node {
                hostname: "h1".into(),
                daemon_ports: vec![4242, 9323],
                ..Default::default()
            },
            Node {
                hostname: "h2".into(),
                daemon_ports: vec![4242, 30000],
                ..Default::default()
            },
        ];
        let daemon = daemon_ports(&nodes);
        let mut spec = ServiceSpec {
            name: "web".into(),
            ports: vec![port(4242, 80, "")],
            ..Default::default()
        };
        normalise(&mut spec).expect("valid");
        let err = allocate("w", &spec, None, &[], &daemon).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "port 4242/tcp is swarmd's own port on node h1: publish another port"
        );
        spec.ports = vec![port(9323, 80, "host")];
        normalise(&mut spec).expect("valid");
        assert!(
            allocate("w", &spec, None, &[], &daemon).is_err(),
            "host mode too"
        );
        // udp is another port space; a dynamic port skips the daemons' ports.
        spec.ports = vec![PortConfig {
            protocol: "udp".into(),
            ..port(4242, 53, "")
        }];
        normalise(&mut spec).expect("valid");
        assert!(allocate("w", &spec, None, &[], &daemon).is_ok());
        spec.ports = vec![port(0, 80, "")];
        normalise(&mut spec).expect("valid");
        let ep = allocate("w", &spec, None, &[], &daemon).expect("dynamic");
        assert_eq!(ep.ports[0].published, 30001);
    }
}
