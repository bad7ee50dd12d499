//! The load balancer of one overlay namespace as nftables rules (pure: no
//! kernel access; [`crate::kernel::nft`] applies what this module writes).
//!
//! One table `swarmlet-lb` per namespace, where every service is a few map
//! elements and no service has a chain or rule of its own:
//! - map `vips` (VIP → `goto pick-N`, N its number of running backends)
//!   and map `backends` (VIP . i → the i-th backend), for endpoint mode
//!   `vip`;
//! - map `published` (protocol . port → `goto pub-pick-N`), map `pub_addr`
//!   (protocol . port . i → backend) and map `pub_port` (protocol . port →
//!   target port), for the routing mesh's published ports (ingress only,
//!   packets to a local address);
//! - one chain per backend count in use: `pick-N` is `meta mark set numgen
//!   random mod N` then `dnat to ip daddr . meta mark map @backends`
//!   (`pub-pick-N` likewise, to `pub_addr` : `pub_port`). A service without
//!   backends has no `vips` element: its VIP ends locally and is refused at
//!   once;
//! - postrouting: what was DNATed and leaves on `br0` is SNATed to this
//!   node's load-balancer IP on the network, so replies from a backend on
//!   another node come back here (every node has the same gateway IP).
//!
//! A backend change is element deletes and adds only ([`update`]). `nft`
//! loads the table's chains and sets before any change, so a chain or an
//! anonymous map per service made every change slower as services were
//! added; map elements are not loaded, so a change costs the same with 10
//! or 1,000 services. The mark is set on the first packet of a connection
//! only (NAT chains see no other) and is cleared when the packet crosses
//! into another namespace.

use std::collections::{BTreeMap, BTreeSet};
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

/// Where a published port sends packets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// The tasks' port.
    pub target: u16,
    /// Backend IPs (sorted).
    pub ips: Vec<Ipv4Addr>,
}

/// Everything the table of one namespace holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LbRules {
    /// This node's load-balancer IP on the network (the SNAT source).
    pub snat: Option<Ipv4Addr>,
    /// VIP → its backends (sorted).
    pub vips: BTreeMap<Ipv4Addr, Vec<Ipv4Addr>>,
    /// Published port → its target and backends.
    pub published: BTreeMap<(Proto, u16), Published>,
}

impl LbRules {
    /// The backend counts the `pick-N` chains serve.
    fn vip_counts(&self) -> BTreeSet<usize> {
        self.vips
            .values()
            .map(Vec::len)
            .filter(|n| *n > 0)
            .collect()
    }

    /// The backend counts the `pub-pick-N` chains serve.
    fn published_counts(&self) -> BTreeSet<usize> {
        self.published
            .values()
            .map(|p| p.ips.len())
            .filter(|n| *n > 0)
            .collect()
    }
}

/// The rules a network's view asks for.
pub fn rules_for(view: &OverlayNetwork) -> LbRules {
    let mut rules = LbRules {
        snat: parse_cidr(&view.lb_address).map(|(ip, _)| ip),
        ..Default::default()
    };
    for s in &view.services {
        let mut ips: Vec<Ipv4Addr> = s.backends.iter().filter_map(|b| b.parse().ok()).collect();
        ips.sort();
        ips.dedup();
        if let Ok(vip) = s.vip.parse::<Ipv4Addr>() {
            rules.vips.insert(vip, ips.clone());
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
            rules.published.insert(
                (proto, published),
                Published {
                    target,
                    ips: ips.clone(),
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

fn map(name: &str, key: Value, data: &str) -> Value {
    json!({"map": {"family": "ip", "table": TABLE, "name": name, "type": key, "map": data}})
}

fn rule(chain: &str, expr: Value) -> Value {
    json!({"rule": {"family": "ip", "table": TABLE, "chain": chain, "expr": expr}})
}

fn elements(map: &str, elem: Vec<Value>) -> Value {
    json!({"element": {"family": "ip", "table": TABLE, "name": map, "elem": elem}})
}

fn goto(chain: String) -> Value {
    json!({"goto": {"target": chain}})
}

fn pick_chain(n: usize) -> String {
    format!("pick-{n}")
}

fn pub_pick_chain(n: usize) -> String {
    format!("pub-pick-{n}")
}

fn mark() -> Value {
    json!({"meta": {"key": "mark"}})
}

fn proto_port() -> [Value; 2] {
    [
        json!({"meta": {"key": "l4proto"}}),
        json!({"payload": {"protocol": "th", "field": "dport"}}),
    ]
}

/// Draws a number below `n` into the packet mark.
fn draw(chain: &str, n: usize) -> Value {
    rule(
        chain,
        json!([{"mangle": {"key": mark(),
            "value": {"numgen": {"mode": "random", "mod": n, "offset": 0}}}}]),
    )
}

/// `pick-N`: the drawn backend of the VIP.
fn pick_rules(n: usize) -> Vec<Value> {
    let c = pick_chain(n);
    vec![
        draw(&c, n),
        rule(
            &c,
            json!([{"dnat": {"addr": {"map": {
                "key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, mark()]},
                "data": "@backends"}}}}]),
        ),
    ]
}

/// `pub-pick-N`: the drawn backend of the published port, at its target.
fn pub_pick_rules(n: usize) -> Vec<Value> {
    let c = pub_pick_chain(n);
    let [proto, port] = proto_port();
    vec![
        draw(&c, n),
        rule(
            &c,
            json!([{"dnat": {
                "addr": {"map": {"key": {"concat": [proto, port, mark()]}, "data": "@pub_addr"}},
                "port": {"map": {"key": {"concat": proto_port()}, "data": "@pub_port"}}}}]),
        ),
    ]
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

fn port_key((proto, port): (Proto, u16)) -> Value {
    json!({"concat": [proto.name(), port]})
}

/// The elements of one VIP: (its `vips` element, its `backends` elements).
fn vip_elements(vip: Ipv4Addr, ips: &[Ipv4Addr]) -> (Value, Vec<Value>) {
    let backends = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| json!([{"concat": [vip.to_string(), i]}, ip.to_string()]))
        .collect();
    (
        json!([vip.to_string(), goto(pick_chain(ips.len()))]),
        backends,
    )
}

fn vip_keys(vip: Ipv4Addr, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"concat": [vip.to_string(), i]}))
        .collect()
}

/// The elements of one published port: `published`, `pub_port`, `pub_addr`.
fn published_elements(key: (Proto, u16), p: &Published) -> (Value, Value, Vec<Value>) {
    let addrs = p
        .ips
        .iter()
        .enumerate()
        .map(|(i, ip)| json!([{"concat": [key.0.name(), key.1, i]}, ip.to_string()]))
        .collect();
    (
        json!([port_key(key), goto(pub_pick_chain(p.ips.len()))]),
        json!([port_key(key), p.target]),
        addrs,
    )
}

fn published_keys(key: (Proto, u16), n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"concat": [key.0.name(), key.1, i]}))
        .collect()
}

/// Commands that add `rules`' elements (the maps and chains exist).
fn add_vip(cmds: &mut Vec<Value>, vip: Ipv4Addr, ips: &[Ipv4Addr]) {
    if ips.is_empty() {
        return;
    }
    let (entry, backends) = vip_elements(vip, ips);
    cmds.push(obj("add", elements("backends", backends)));
    cmds.push(obj("add", elements("vips", vec![entry])));
}

fn delete_vip(cmds: &mut Vec<Value>, vip: Ipv4Addr, ips: &[Ipv4Addr]) {
    if ips.is_empty() {
        return;
    }
    cmds.push(obj(
        "delete",
        elements("vips", vec![json!(vip.to_string())]),
    ));
    cmds.push(obj(
        "delete",
        elements("backends", vip_keys(vip, ips.len())),
    ));
}

fn add_published(cmds: &mut Vec<Value>, key: (Proto, u16), p: &Published) {
    if p.ips.is_empty() {
        return;
    }
    let (entry, port, addrs) = published_elements(key, p);
    cmds.push(obj("add", elements("pub_addr", addrs)));
    cmds.push(obj("add", elements("pub_port", vec![port])));
    cmds.push(obj("add", elements("published", vec![entry])));
}

fn delete_published(cmds: &mut Vec<Value>, key: (Proto, u16), p: &Published) {
    if p.ips.is_empty() {
        return;
    }
    cmds.push(obj("delete", elements("published", vec![port_key(key)])));
    cmds.push(obj("delete", elements("pub_port", vec![port_key(key)])));
    cmds.push(obj(
        "delete",
        elements("pub_addr", published_keys(key, p.ips.len())),
    ));
}

fn add_pick_chains(cmds: &mut Vec<Value>, counts: &BTreeSet<usize>, published: bool) {
    for n in counts {
        let (name, rules) = if published {
            (pub_pick_chain(*n), pub_pick_rules(*n))
        } else {
            (pick_chain(*n), pick_rules(*n))
        };
        cmds.push(obj("add", chain(&name)));
        cmds.extend(rules.into_iter().map(|r| obj("add", r)));
    }
}

/// The commands that replace the table with `rules` atomically (first
/// programming, and after the table was deleted behind the node's back).
pub fn full(rules: &LbRules) -> Vec<Value> {
    let mut cmds = vec![
        obj("add", table()),
        obj("delete", table()),
        obj("add", table()),
        obj("add", map("vips", json!("ipv4_addr"), "verdict")),
        obj(
            "add",
            map("backends", json!(["ipv4_addr", "mark"]), "ipv4_addr"),
        ),
        obj(
            "add",
            map(
                "published",
                json!(["inet_proto", "inet_service"]),
                "verdict",
            ),
        ),
        obj(
            "add",
            map(
                "pub_addr",
                json!(["inet_proto", "inet_service", "mark"]),
                "ipv4_addr",
            ),
        ),
        obj(
            "add",
            map(
                "pub_port",
                json!(["inet_proto", "inet_service"]),
                "inet_service",
            ),
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
                    {"vmap": {"key": {"concat": proto_port()}, "data": "@published"}}
                ]),
            ),
        ),
    ];
    if let Some(ip) = rules.snat {
        cmds.push(obj("add", snat_rule(ip)));
    }
    add_pick_chains(&mut cmds, &rules.vip_counts(), false);
    add_pick_chains(&mut cmds, &rules.published_counts(), true);
    for (vip, ips) in &rules.vips {
        add_vip(&mut cmds, *vip, ips);
    }
    for (key, p) in &rules.published {
        add_published(&mut cmds, *key, p);
    }
    cmds
}

/// The commands that turn a table holding `old` into one holding `new`:
/// the elements of the services that changed (deleted, then added again),
/// the `pick-N` chains that come or go. Empty when nothing differs.
pub fn update(old: &LbRules, new: &LbRules) -> Vec<Value> {
    let mut cmds = Vec::new();
    // Elements out first, chains in, elements in, chains out: no element
    // ever names a missing chain.
    for (vip, ips) in &old.vips {
        if new.vips.get(vip) != Some(ips) {
            delete_vip(&mut cmds, *vip, ips);
        }
    }
    for (key, p) in &old.published {
        if new.published.get(key) != Some(p) {
            delete_published(&mut cmds, *key, p);
        }
    }
    if old.snat != new.snat {
        cmds.push(obj(
            "flush",
            json!({"chain": {"family": "ip", "table": TABLE, "name": "postrouting"}}),
        ));
        if let Some(ip) = new.snat {
            cmds.push(obj("add", snat_rule(ip)));
        }
    }
    let (old_vc, new_vc) = (old.vip_counts(), new.vip_counts());
    let (old_pc, new_pc) = (old.published_counts(), new.published_counts());
    add_pick_chains(
        &mut cmds,
        &new_vc.difference(&old_vc).copied().collect(),
        false,
    );
    add_pick_chains(
        &mut cmds,
        &new_pc.difference(&old_pc).copied().collect(),
        true,
    );
    for (vip, ips) in &new.vips {
        if old.vips.get(vip) != Some(ips) {
            add_vip(&mut cmds, *vip, ips);
        }
    }
    for (key, p) in &new.published {
        if old.published.get(key) != Some(p) {
            add_published(&mut cmds, *key, p);
        }
    }
    for n in old_vc.difference(&new_vc) {
        cmds.push(obj("delete", chain(&pick_chain(*n))));
    }
    for n in old_pc.difference(&new_pc) {
        cmds.push(obj("delete", chain(&pub_pick_chain(*n))));
    }
    cmds
}

/// Backends that `old` balanced to and `new` no longer does: their
/// connections must go (conntrack entries deleted).
pub fn removed_backends(old: &LbRules, new: &LbRules) -> Vec<Ipv4Addr> {
    let all = |r: &LbRules| -> BTreeSet<Ipv4Addr> {
        r.vips
            .values()
            .flatten()
            .chain(r.published.values().flat_map(|p| p.ips.iter()))
            .copied()
            .collect()
    };
    all(old).difference(&all(new)).copied().collect()
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
                aliases: Vec::new(),
            }],
            ..Default::default()
        }
    }

    fn text(cmds: &[Value]) -> String {
        serde_json::to_string(cmds).unwrap_or_default()
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);

    #[test]
    fn vips_and_published_ports_become_map_elements() {
        let r = rules_for(&view(&["10.255.0.6", "10.255.0.5"], true));
        assert_eq!(r.snat, Some(Ipv4Addr::new(10, 255, 0, 3)));
        assert_eq!(
            r.vips.get(&VIP),
            Some(&vec![
                Ipv4Addr::new(10, 255, 0, 5),
                Ipv4Addr::new(10, 255, 0, 6)
            ])
        );
        let published = &r.published[&(Proto::Tcp, 8080)];
        assert_eq!((published.target, published.ips.len()), (80, 2));
        let t = text(&full(&r));
        assert!(
            t.contains(r#"["10.255.0.2",{"goto":{"target":"pick-2"}}]"#),
            "{t}"
        );
        assert!(
            t.contains(r#"[{"concat":["10.255.0.2",1]},"10.255.0.6"]"#),
            "{t}"
        );
        assert!(
            t.contains(r#"[{"concat":["tcp",8080,0]},"10.255.0.5"]"#),
            "{t}"
        );
        assert!(t.contains(r#"[{"concat":["tcp",8080]},80]"#), "{t}");
        assert!(t.contains(r#""name":"pub-pick-2""#), "{t}");
        // Published ports only on the ingress network.
        assert!(rules_for(&view(&["10.255.0.5"], false))
            .published
            .is_empty());
    }

    #[test]
    fn a_backend_change_is_element_changes_only() {
        let three = rules_for(&view(&["10.255.0.5", "10.255.0.6", "10.255.0.7"], false));
        let mut other = three.clone();
        other.vips.insert(
            Ipv4Addr::new(10, 255, 0, 9),
            vec![Ipv4Addr::new(10, 255, 1, 1); 3],
        );
        let mut changed = other.clone();
        changed.vips.insert(
            VIP,
            vec![
                Ipv4Addr::new(10, 255, 0, 5),
                Ipv4Addr::new(10, 255, 0, 8),
                Ipv4Addr::new(10, 255, 0, 7),
            ],
        );
        let cmds = update(&other, &changed);
        let t = text(&cmds);
        assert!(!t.contains(r#""rule""#) && !t.contains(r#""chain""#), "{t}");
        assert!(
            !t.contains("10.255.0.9"),
            "the other service is untouched: {t}"
        );
        assert_eq!(
            removed_backends(&other, &changed),
            vec![Ipv4Addr::new(10, 255, 0, 6)]
        );
        assert!(update(&changed, &changed).is_empty());
    }

    #[test]
    fn pick_chains_follow_the_backend_counts_in_use() {
        let two = rules_for(&view(&["10.255.0.5", "10.255.0.6"], false));
        let one = rules_for(&view(&["10.255.0.5"], false));
        let t = text(&update(&two, &one));
        // pick-1 comes before its first element, pick-2 goes after the last.
        let add_chain = t.find(r#"{"add":{"chain":{"family":"ip","name":"pick-1""#);
        let add_elem = t.find(r#"{"goto":{"target":"pick-1"}}"#);
        let del_chain = t.find(r#"{"delete":{"chain":{"family":"ip","name":"pick-2""#);
        let del_elem = t.find(r#"{"delete":{"element""#);
        assert!(add_chain < add_elem && del_elem < del_chain, "{t}");
        assert!(add_chain.is_some() && del_chain.is_some(), "{t}");
    }

    #[test]
    fn no_backends_means_no_elements() {
        let r = rules_for(&view(&[], true));
        let t = text(&full(&r));
        assert!(!t.contains("numgen"), "{t}");
        assert!(!t.contains(r#""element""#), "{t}");
        // Gaining its first backend adds the elements and pick-1.
        let t = text(&update(&r, &rules_for(&view(&["10.255.0.5"], true))));
        assert!(
            t.contains(r#""name":"pick-1""#) && t.contains(r#""name":"pub-pick-1""#),
            "{t}"
        );
    }
}
