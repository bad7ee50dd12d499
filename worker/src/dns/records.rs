//! What the embedded DNS answers, from the managers' view of the node's
//! networks (pure: no sockets).
//!
//! For an asker attached to some networks, on those networks only:
//! - `<service>` → the service's VIP (endpoint mode `vip`), or the IPs of
//!   its running tasks (`dnsrr`);
//! - `tasks.<service>` → the IPs of its running tasks;
//! - the service's aliases on a network (Compose's `aliases`) as its name;
//! - `<container>` (a `swarmctl run --name` container) → its IP.
//!
//! Names are matched without case and without a trailing dot, also with
//! the containers' search domain [`SEARCH_DOMAIN`] appended (`web.swarmlet`
//! is `web`). A name none of these match is not ours: the server forwards
//! it upstream, except in the search domain, which is ours alone (an empty
//! answer, so that the resolver goes on with the bare name).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use swarmlet_proto::dispatcher::OverlayNetwork;

/// The search domain of containers (their resolv.conf `search` line).
pub const SEARCH_DOMAIN: &str = "swarmlet";

/// How a name resolves for one asker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A name of the cluster: these addresses (possibly none: a service
    /// without running tasks has no `tasks.` answers).
    Cluster(Vec<Ipv4Addr>),
    /// A name in the search domain that is no cluster name.
    NoSuchName,
    /// Not a cluster name: ask the upstream resolvers.
    Upstream,
}

/// The names of the node's networks, by network ID.
#[derive(Debug, Clone, Default)]
pub struct Records {
    networks: HashMap<String, NetworkNames>,
}

#[derive(Debug, Clone, Default)]
struct NetworkNames {
    /// Lower-case name → addresses.
    names: HashMap<String, Vec<Ipv4Addr>>,
}

impl NetworkNames {
    fn add(&mut self, name: &str, ips: impl IntoIterator<Item = Ipv4Addr>) {
        let entry = self.names.entry(name.to_ascii_lowercase()).or_default();
        entry.extend(ips);
    }
}

fn parse_all(ips: &[String]) -> Vec<Ipv4Addr> {
    ips.iter().filter_map(|ip| ip.parse().ok()).collect()
}

impl Records {
    /// The names of every network in the view.
    pub fn from_view(view: &[OverlayNetwork]) -> Records {
        let mut networks = HashMap::new();
        for n in view {
            let Some(id) = n.network.as_ref().map(|net| net.id.clone()) else {
                continue;
            };
            let mut names = NetworkNames::default();
            for s in &n.services {
                if s.name.is_empty() {
                    continue;
                }
                let tasks = parse_all(&s.backends);
                for name in std::iter::once(&s.name).chain(&s.aliases) {
                    match s.vip.parse::<Ipv4Addr>() {
                        Ok(vip) => names.add(name, [vip]),
                        Err(_) => names.add(name, tasks.clone()),
                    }
                    names.add(&format!("tasks.{name}"), tasks.clone());
                }
            }
            for c in &n.containers {
                if let (false, Ok(ip)) = (c.name.is_empty(), c.ip.parse::<Ipv4Addr>()) {
                    names.add(&c.name, [ip]);
                }
            }
            networks.insert(id, names);
        }
        Records { networks }
    }

    /// How `name` resolves for an asker on `networks`.
    pub fn resolve(&self, networks: &[String], name: &str) -> Resolution {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(short) = name
            .strip_suffix(SEARCH_DOMAIN)
            .and_then(|n| n.strip_suffix('.'))
        {
            return match self.resolve(networks, short) {
                Resolution::Upstream => Resolution::NoSuchName,
                found => found,
            };
        }
        if name == SEARCH_DOMAIN {
            return Resolution::NoSuchName;
        }
        let mut found = false;
        let mut ips = BTreeSet::new();
        for id in networks {
            if let Some(v) = self.networks.get(id).and_then(|n| n.names.get(&name)) {
                found = true;
                ips.extend(v.iter().copied());
            }
        }
        if found {
            Resolution::Cluster(ips.into_iter().collect())
        } else {
            Resolution::Upstream
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::dispatcher::{NamedEndpoint, ServiceBackends};
    use swarmlet_proto::objects::Network;

    fn network(id: &str, services: Vec<ServiceBackends>) -> OverlayNetwork {
        OverlayNetwork {
            network: Some(Network {
                id: id.into(),
                ..Default::default()
            }),
            services,
            ..Default::default()
        }
    }

    fn service(name: &str, vip: &str, backends: &[&str]) -> ServiceBackends {
        ServiceBackends {
            name: name.into(),
            vip: vip.into(),
            backends: backends.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn ips(list: &[&str]) -> Resolution {
        Resolution::Cluster(list.iter().filter_map(|s| s.parse().ok()).collect())
    }

    #[test]
    fn services_tasks_and_containers_on_shared_networks_only() {
        let mut front = network(
            "front",
            vec![
                service("web", "10.0.1.2", &["10.0.1.5", "10.0.1.4"]),
                service("db", "", &["10.0.1.9"]),
                service("idle", "10.0.1.3", &[]),
            ],
        );
        front.containers = vec![NamedEndpoint {
            name: "probe".into(),
            ip: "10.0.1.20".into(),
        }];
        let back = network("back", vec![service("secret", "10.0.2.2", &["10.0.2.4"])]);
        let r = Records::from_view(&[front, back]);
        let asker = vec!["front".to_string()];
        assert_eq!(r.resolve(&asker, "web"), ips(&["10.0.1.2"]));
        assert_eq!(r.resolve(&asker, "WEB."), ips(&["10.0.1.2"]));
        assert_eq!(
            r.resolve(&asker, "tasks.web"),
            ips(&["10.0.1.4", "10.0.1.5"])
        );
        // dnsrr: the task IPs.
        assert_eq!(r.resolve(&asker, "db"), ips(&["10.0.1.9"]));
        // A service without running tasks is still ours (no upstream leak).
        assert_eq!(r.resolve(&asker, "tasks.idle"), ips(&[]));
        assert_eq!(r.resolve(&asker, "probe"), ips(&["10.0.1.20"]));
        // The containers' search domain.
        assert_eq!(r.resolve(&asker, "web.swarmlet."), ips(&["10.0.1.2"]));
        assert_eq!(
            r.resolve(&asker, "nothing.swarmlet"),
            Resolution::NoSuchName
        );
        // Not on a shared network: not ours.
        assert_eq!(r.resolve(&asker, "secret"), Resolution::Upstream);
        assert_eq!(r.resolve(&asker, "example.org"), Resolution::Upstream);
        assert_eq!(
            r.resolve(&["back".to_string()], "secret"),
            ips(&["10.0.2.2"])
        );
    }

    #[test]
    fn aliases_resolve_as_the_service_on_their_network() {
        let mut web = service("app_web", "10.0.1.2", &["10.0.1.5"]);
        web.aliases = vec!["web".into()];
        let r = Records::from_view(&[network("back", vec![web])]);
        let asker = vec!["back".to_string()];
        assert_eq!(r.resolve(&asker, "web"), ips(&["10.0.1.2"]));
        assert_eq!(r.resolve(&asker, "tasks.web"), ips(&["10.0.1.5"]));
        assert_eq!(r.resolve(&asker, "app_web"), ips(&["10.0.1.2"]));
        assert_eq!(
            r.resolve(&["front".to_string()], "web"),
            Resolution::Upstream
        );
    }
}
