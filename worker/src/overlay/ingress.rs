//! The routing mesh's way in on one node.
//!
//! The ingress network's namespace is the node's *ingress sandbox*
//! (`ingress_sbox-<node>`): besides `br0` on the ingress overlay (with the
//! node's load-balancer IP there), it has a leg `gw0` (the first /30 of the
//! host pool, `.2`; [`super::host_pool`]) to the node's namespace, whose end
//! there is `swi-<node>` (`.1`), and a default route back through it. In the node's namespace, the table
//! `swarmlet-mesh-<node>` DNATs every published port on a local address
//! (the node's own IPs and localhost) to the sandbox, whose `swarmlet-lb`
//! table balances it over the service's tasks on any node
//! ([`super::lb`]). Connections from the node itself are masqueraded to
//! the leg's node side (localhost sources need `route_localnet` on the leg). The
//! table's NAT turns connection tracking on in the node's namespace; the
//! VXLAN packets (UDP 4789) are exempt (`notrack`): every overlay flow
//! would otherwise cost a tracked UDP "connection" on both nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::lb::Proto;
use super::plan::VXLAN_PORT;
use crate::kernel::nft::{add_base_chain, add_rule, replace_table};

/// Prefix length of the leg's point-to-point subnet.
pub const LEG_PREFIX: u8 = 30;
/// The sandbox's leg interface.
pub const SBOX_LEG: &str = "gw0";

fn short(node_id: &str) -> &str {
    super::plan::short(node_id, 8)
}

/// The ingress sandbox's namespace name.
pub fn sbox_name(node_id: &str) -> String {
    format!("ingress_sbox-{}", short(node_id))
}

/// The node side of the leg.
pub fn host_leg(node_id: &str) -> String {
    format!("swi-{}", short(node_id))
}

/// The sandbox side of the leg before it is moved and renamed.
pub fn temp_leg(node_id: &str) -> String {
    format!("swj-{}", short(node_id))
}

/// The node's routing-mesh table.
pub fn host_table(node_id: &str) -> String {
    format!("swarmlet-mesh-{}", short(node_id))
}

/// The commands that (re)write the node's routing-mesh table so that
/// `published` ports on local addresses go to the sandbox. Small, so it is
/// always replaced whole, atomically.
pub fn host_ruleset(
    node_id: &str,
    sbox_ip: Ipv4Addr,
    published: &BTreeSet<(Proto, u16)>,
    host_ports: &BTreeMap<(Proto, u16), (Ipv4Addr, u16)>,
) -> Vec<Value> {
    let table = host_table(node_id);
    let base = |name: &str, kind: &str, hook: &str, prio: i32| {
        add_base_chain(&table, name, kind, hook, prio)
    };
    let rule = |chain: &str, expr: Value| add_rule(&table, chain, expr);
    let elems: Vec<Value> = published
        .iter()
        .map(|(proto, port)| json!({"concat": [proto.name(), port]}))
        .collect();
    let mut set = json!({"family": "ip", "table": table, "name": "published",
        "type": ["inet_proto", "inet_service"]});
    if !elems.is_empty() {
        set["elem"] = json!(elems);
    }
    let to_sandbox = json!([
        {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
        {"match": {"op": "==", "left": {"concat": [{"meta": {"key": "l4proto"}},
            {"payload": {"protocol": "th", "field": "dport"}}]}, "right": "@published"}},
        {"dnat": {"addr": sbox_ip.to_string()}}
    ]);
    let leg = host_leg(node_id);
    let mut host_rules = Vec::new();
    for ((proto, port), (ip, target)) in host_ports {
        let expr = json!([
            {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": proto.name()}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": port}},
            {"dnat": {"addr": ip.to_string(), "port": target}}
        ]);
        host_rules.push(rule("prerouting", expr.clone()));
        host_rules.push(rule("output", expr));
    }
    let mut cmds = replace_table(&table).to_vec();
    cmds.extend([
        json!({"add": {"set": set}}),
        base("prerouting", "nat", "prerouting", -100),
        base("output", "nat", "output", -100),
        base("postrouting", "nat", "postrouting", 100),
        rule("prerouting", to_sandbox.clone()),
        rule("output", to_sandbox),
        rule(
            "postrouting",
            json!([
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": leg}},
                {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["saddr"]}}, "right": "local"}},
                {"masquerade": null}
            ]),
        ),
        rule(
            "postrouting",
            json!([
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "swh-*"}},
                {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["saddr"]}}, "right": "local"}},
                {"masquerade": null}
            ]),
        ),
    ]);
    cmds.extend(host_rules);
    for (chain, hook) in [("raw-prerouting", "prerouting"), ("raw-output", "output")] {
        cmds.push(base(chain, "filter", hook, -300));
        cmds.push(rule(
            chain,
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": VXLAN_PORT}},
                {"notrack": null}
            ]),
        ));
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_node() {
        assert_eq!(sbox_name("abcdef0123"), "ingress_sbox-abcdef01");
        assert_eq!(host_leg("abcdef0123"), "swi-abcdef01");
        assert!(host_leg("abcdef0123").len() <= 15);
        assert_eq!(host_table("abcdef0123"), "swarmlet-mesh-abcdef01");
    }

    #[test]
    fn published_ports_are_sent_to_the_sandbox() {
        let ports: BTreeSet<_> = [(Proto::Tcp, 8080), (Proto::Udp, 5353)].into();
        let host: BTreeMap<_, _> =
            [((Proto::Tcp, 9000), (Ipv4Addr::new(198, 18, 0, 6), 80))].into();
        let sbox = Ipv4Addr::new(198, 18, 0, 2);
        let text = serde_json::to_string(&host_ruleset("abcdef0123", sbox, &ports, &host))
            .unwrap_or_default();
        assert!(
            text.contains("\"addr\":\"198.18.0.6\",\"port\":80"),
            "{text}"
        );
        assert!(text.contains("\"concat\":[\"tcp\",8080]"), "{text}");
        assert!(text.contains("\"concat\":[\"udp\",5353]"), "{text}");
        assert!(
            text.contains("\"dnat\":{\"addr\":\"198.18.0.2\"}"),
            "{text}"
        );
        assert!(text.contains("swi-abcdef01"));
        // VXLAN is not tracked.
        assert!(
            text.contains(r#""right":4789}},{"notrack":null}"#),
            "{text}"
        );
    }
}
