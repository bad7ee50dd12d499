//! The load balancer of one overlay namespace as nftables rules (pure: no
//! kernel access; [`super::nft`] applies what this module writes).
//!
//! One table `swarmlet-lb` per namespace:
//! - map `vips` (VIP → `goto` the service's chain) looked up in prerouting:
//!   the service VIPs of the network (endpoint mode `vip`);
//! - map `published` (protocol . port → `goto` a chain) for packets to a
//!   local address: the routing mesh's published ports (ingress only);
//! - one chain per service or published port: `meta mark set numgen random
//!   mod N`, then per running backend `meta mark == i dnat to ip` (no rule
//!   without backends: the packet then ends locally and is refused at
//!   once);
//! - postrouting: what was DNATed and leaves on `br0` is SNATed to this
//!   node's load-balancer IP on the network, so replies from a backend on
//!   another node come back here (every node has the same gateway IP).
//!
//! A change rewrites only the chains and map elements that differ
//! ([`update`]), so applying one backend change costs the same with 10 or
//! 1,000 services.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{json, Value};
use swarmlet_proto::dispatcher::OverlayNetwork;

use super::plan::{parse_cidr, BRIDGE};

/// The table in every overlay namespace.
pub const TABLE: &str = "swarmlet-lb";

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// From a port's protocol string (tcp when empty).
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "" | "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }

    /// The nftables name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Where one chain sends packets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Backends {
    /// Backend IPs (sorted).
    pub ips: Vec<Ipv4Addr>,
    /// For a published port: the protocol and the target port.
    pub to_port: Option<(Proto, u16)>,
}

/// Everything the table of one namespace holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LbRules {
    /// This node's load-balancer IP on the network (the SNAT source).
    pub snat: Option<Ipv4Addr>,
    /// VIP → chain.
    pub vips: BTreeMap<Ipv4Addr, String>,
    /// Published port → chain.
    pub published: BTreeMap<(Proto, u16), String>,
    /// Chain → its backends.
    pub chains: BTreeMap<String, Backends>,
}

/// The rules a network's view asks for.
pub fn rules_for(view: &OverlayNetwork) -> LbRules {
    let mut rules = LbRules {
        snat: parse_cidr(&view.lb_address).map(|(ip, _)| ip),
        ..Default::default()
    };
    for s in &view.services {
        let ips: Vec<Ipv4Addr> = s.backends.iter().filter_map(|b| b.parse().ok()).collect();
        if let Ok(vip) = s.vip.parse::<Ipv4Addr>() {
            let chain = format!("svc-{}", super::plan::short(&s.service_id, 12));
            rules.vips.insert(vip, chain.clone());
            rules.chains.insert(
                chain,
                Backends {
                    ips: ips.clone(),
                    to_port: None,
                },
            );
        }
        if !view.ingress {
            continue;
        }
        for p in &s.ports {
            let (Some(proto), Ok(published), Ok(target)) = (
                Proto::parse(&p.protocol),
                u16::try_from(p.published),
                u16::try_from(p.target),
            ) else {
                continue;
            };
            let chain = format!("pub-{}-{published}", proto.name());
            rules.published.insert((proto, published), chain.clone());
            rules.chains.insert(
                chain,
                Backends {
                    ips: ips.clone(),
                    to_port: Some((proto, target)),
                },
            );
        }
    }
    rules
}

fn obj(kind: &str, body: Value) -> Value {
    json!({ kind: body })
}

fn table() -> Value {
    json!({"table": {"family": "ip", "name": TABLE}})
}

fn chain(name: &str) -> Value {
    json!({"chain": {"family": "ip", "table": TABLE, "name": name}})
}

fn base_chain(name: &str, hook: &str, prio: i32) -> Value {
    json!({"chain": {"family": "ip", "table": TABLE, "name": name,
        "type": "nat", "hook": hook, "prio": prio, "policy": "accept"}})
}

fn rule(chain: &str, expr: Value) -> Value {
    json!({"rule": {"family": "ip", "table": TABLE, "chain": chain, "expr": expr}})
}

fn element(map: &str, elem: Value) -> Value {
    json!({"element": {"family": "ip", "table": TABLE, "name": map, "elem": elem}})
}

fn vip_key(vip: Ipv4Addr) -> Value {
    json!(vip.to_string())
}

fn port_key((proto, port): (Proto, u16)) -> Value {
    json!({"concat": [proto.name(), port]})
}

fn goto(chain: &str) -> Value {
    json!({"goto": {"target": chain}})
}

/// The rules of a backend chain: none without backends; else one rule
/// that draws a number below N into the packet mark, and per backend one
/// rule that DNATs the packets of that number to it.
///
/// Written without an anonymous map (`dnat to numgen random mod N map
/// {…}`) on purpose: `nft` loads every set of the table, anonymous ones
/// included, before it applies any change, so one anonymous map per
/// service made every change slower as services were added. Plain rules
/// are not loaded for a chain flush or a rule add. The mark is only set on
/// the first packet of a connection (NAT chains see no other) and is
/// cleared when the packet crosses into another namespace.
fn balance_rules(chain: &str, b: &Backends) -> Vec<Value> {
    if b.ips.is_empty() {
        return Vec::new();
    }
    let mark = json!({"meta": {"key": "mark"}});
    let mut rules = vec![rule(
        chain,
        json!([{"mangle": {"key": mark,
            "value": {"numgen": {"mode": "random", "mod": b.ips.len(), "offset": 0}}}}]),
    )];
    for (i, ip) in b.ips.iter().enumerate() {
        let pick = json!({"match": {"op": "==", "left": mark, "right": i}});
        let expr = match b.to_port {
            Some((proto, port)) => json!([
                pick,
                {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": proto.name()}},
                {"dnat": {"addr": ip.to_string(), "port": port}}
            ]),
            None => json!([pick, {"dnat": {"addr": ip.to_string()}}]),
        };
        rules.push(rule(chain, expr));
    }
    rules
}

fn snat_rule(ip: Ipv4Addr) -> Value {
    rule(
        "postrouting",
        json!([
            {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": BRIDGE}},
            {"snat": {"addr": ip.to_string()}}
        ]),
    )
}

/// The commands that replace the table with `rules` atomically (first
/// programming, and after the table was deleted behind the node's back).
pub fn full(rules: &LbRules) -> Vec<Value> {
    let mut cmds = vec![
        obj("add", table()),
        obj("delete", table()),
        obj("add", table()),
        obj(
            "add",
            json!({"map": {"family": "ip", "table": TABLE, "name": "vips",
                "type": "ipv4_addr", "map": "verdict"}}),
        ),
        obj(
            "add",
            json!({"map": {"family": "ip", "table": TABLE, "name": "published",
                "type": ["inet_proto", "inet_service"], "map": "verdict"}}),
        ),
        obj("add", base_chain("prerouting", "prerouting", -100)),
        obj("add", base_chain("postrouting", "postrouting", 100)),
        obj(
            "add",
            rule(
                "prerouting",
                json!([{"vmap": {"key": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "data": "@vips"}}]),
            ),
        ),
        obj(
            "add",
            rule(
                "prerouting",
                json!([
                    {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                        "right": "local"}},
                    {"vmap": {"key": {"concat": [{"meta": {"key": "l4proto"}},
                        {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@published"}}
                ]),
            ),
        ),
    ];
    if let Some(ip) = rules.snat {
        cmds.push(obj("add", snat_rule(ip)));
    }
    for (name, b) in &rules.chains {
        cmds.push(obj("add", chain(name)));
        cmds.extend(balance_rules(name, b).into_iter().map(|r| obj("add", r)));
    }
    for (vip, c) in &rules.vips {
        cmds.push(obj(
            "add",
            element("vips", json!([[vip_key(*vip), goto(c)]])),
        ));
    }
    for (port, c) in &rules.published {
        cmds.push(obj(
            "add",
            element("published", json!([[port_key(*port), goto(c)]])),
        ));
    }
    cmds
}

/// Map element changes, deletions first.
fn map_changes<K: Ord + Copy>(
    map: &str,
    old: &BTreeMap<K, String>,
    new: &BTreeMap<K, String>,
    key: impl Fn(K) -> Value,
    deletes: &mut Vec<Value>,
    adds: &mut Vec<Value>,
) {
    for (k, c) in old {
        if new.get(k) != Some(c) {
            deletes.push(obj("delete", element(map, json!([key(*k)]))));
        }
    }
    for (k, c) in new {
        if old.get(k) != Some(c) {
            adds.push(obj("add", element(map, json!([[key(*k), goto(c)]]))));
        }
    }
}

/// The commands that turn a table holding `old` into one holding `new`:
/// only the chains and elements that differ. Empty when nothing does.
pub fn update(old: &LbRules, new: &LbRules) -> Vec<Value> {
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    map_changes(
        "vips",
        &old.vips,
        &new.vips,
        vip_key,
        &mut deletes,
        &mut adds,
    );
    map_changes(
        "published",
        &old.published,
        &new.published,
        port_key,
        &mut deletes,
        &mut adds,
    );
    let mut cmds = deletes;
    if old.snat != new.snat {
        cmds.push(obj(
            "flush",
            json!({"chain": {"family": "ip", "table": TABLE, "name": "postrouting"}}),
        ));
        if let Some(ip) = new.snat {
            cmds.push(obj("add", snat_rule(ip)));
        }
    }
    for (name, b) in &new.chains {
        match old.chains.get(name) {
            Some(ob) if ob == b => {}
            Some(_) => {
                cmds.push(obj("flush", chain(name)));
                cmds.extend(balance_rules(name, b).into_iter().map(|r| obj("add", r)));
            }
            None => {
                cmds.push(obj("add", chain(name)));
                cmds.extend(balance_rules(name, b).into_iter().map(|r| obj("add", r)));
            }
        }
    }
    cmds.extend(adds);
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        cmds.push(obj("delete", chain(name)));
    }
    cmds
}

/// Backends that `old` balanced to and `new` no longer does: their
/// connections must go (conntrack entries deleted).
pub fn removed_backends(old: &LbRules, new: &LbRules) -> Vec<Ipv4Addr> {
    let still: std::collections::BTreeSet<Ipv4Addr> = new
        .chains
        .values()
        .flat_map(|b| b.ips.iter().copied())
        .collect();
    let mut gone: Vec<Ipv4Addr> = old
        .chains
        .values()
        .flat_map(|b| b.ips.iter().copied())
        .filter(|ip| !still.contains(ip))
        .collect();
    gone.sort();
    gone.dedup();
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::dispatcher::ServiceBackends;
    use swarmlet_proto::objects::PortConfig;

    fn view(backends: &[&str], ingress: bool) -> OverlayNetwork {
        OverlayNetwork {
            lb_address: "10.255.0.3/16".into(),
            ingress,
            services: vec![ServiceBackends {
                service_id: "abcdef0123456789".into(),
                name: "web".into(),
                vip: "10.255.0.2".into(),
                backends: backends.iter().map(|s| s.to_string()).collect(),
                ports: vec![PortConfig {
                    published: 8080,
                    target: 80,
                    protocol: "tcp".into(),
                    mode: "ingress".into(),
                }],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn vips_and_published_ports_become_chains() {
        let r = rules_for(&view(&["10.255.0.5", "10.255.0.6"], true));
        assert_eq!(r.snat, Some(Ipv4Addr::new(10, 255, 0, 3)));
        assert_eq!(
            r.vips
                .get(&Ipv4Addr::new(10, 255, 0, 2))
                .map(String::as_str),
            Some("svc-abcdef012345")
        );
        let published = &r.chains["pub-tcp-8080"];
        assert_eq!(published.to_port, Some((Proto::Tcp, 80)));
        assert_eq!(published.ips.len(), 2);
        // Published ports only on the ingress network.
        assert!(rules_for(&view(&["10.255.0.5"], false))
            .published
            .is_empty());
    }

    #[test]
    fn a_backend_change_rewrites_only_its_chains() {
        let old = rules_for(&view(&["10.255.0.5", "10.255.0.6"], true));
        let new = rules_for(&view(&["10.255.0.5"], true));
        let cmds = update(&old, &new);
        let text = serde_json::to_string(&cmds).unwrap_or_default();
        assert_eq!(text.matches("\"flush\"").count(), 2, "{text}");
        assert!(
            !text.contains("\"table\":{\"family\":\"ip\",\"name\""),
            "{text}"
        );
        assert!(!text.contains("element"), "{text}");
        assert_eq!(
            removed_backends(&old, &new),
            vec![Ipv4Addr::new(10, 255, 0, 6)]
        );
        assert!(update(&new, &new).is_empty());
    }

    #[test]
    fn a_removed_service_loses_its_elements_before_its_chains() {
        let old = rules_for(&view(&["10.255.0.5"], true));
        let new = LbRules {
            snat: old.snat,
            ..Default::default()
        };
        let cmds = update(&old, &new);
        let first_chain_delete = cmds
            .iter()
            .position(|c| c["delete"].get("chain").is_some())
            .unwrap_or(0);
        let last_element_delete = cmds
            .iter()
            .rposition(|c| c["delete"].get("element").is_some())
            .unwrap_or(usize::MAX);
        assert!(last_element_delete < first_chain_delete, "{cmds:?}");
    }

    #[test]
    fn no_backends_means_no_rule() {
        let r = rules_for(&view(&[], true));
        let text = serde_json::to_string(&full(&r)).unwrap_or_default();
        assert!(!text.contains("numgen"), "{text}");
        assert!(!text.contains("{\"dnat\":"), "{text}");
        assert!(text.contains("svc-abcdef012345"));
    }

    #[test]
    fn each_backend_gets_one_numbered_dnat() {
        let b = Backends {
            ips: vec![
                Ipv4Addr::new(10, 0, 0, 5),
                Ipv4Addr::new(10, 0, 0, 6),
                Ipv4Addr::new(10, 0, 0, 7),
            ],
            to_port: Some((Proto::Udp, 53)),
        };
        let rules = balance_rules("pub-udp-53", &b);
        assert_eq!(rules.len(), 4);
        let draw = serde_json::to_string(&rules[0]).unwrap_or_default();
        assert!(draw.contains("\"mod\":3"), "{draw}");
        for (i, ip) in b.ips.iter().enumerate() {
            let text = serde_json::to_string(&rules[i + 1]).unwrap_or_default();
            assert!(text.contains(&format!("\"right\":{i}")), "{text}");
            assert!(
                text.contains(&format!("\"addr\":\"{ip}\",\"port\":53")),
                "{text}"
            );
            assert!(text.contains("\"udp\""), "{text}");
        }
    }
}
