//! The pure part of the data plane: names of namespaces and interfaces,
//! MACs derived from IPs, and the diff between the neighbour/FDB entries a
//! network's VXLAN device has and the ones the managers' view asks for.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Interface MTU inside overlays (1500 minus the VXLAN encapsulation).
pub const OVERLAY_MTU: u32 = 1450;

/// UDP port of VXLAN (IANA).
pub const VXLAN_PORT: u16 = 4789;

/// Prefix of the overlay namespaces this node owns.
pub fn ns_prefix(node_id: &str) -> String {
    format!("ovl-{}-", short(node_id, 8))
}

/// The namespace of network `network_id` on node `node_id`; the node is in
/// the name so that several nodes on one machine (test clusters) never
/// share one.
pub fn ns_name(node_id: &str, network_id: &str) -> String {
    format!("{}{}", ns_prefix(node_id), short(network_id, 10))
}

/// The network ID prefix in a namespace name made by [`ns_name`].
pub fn network_of_ns<'a>(node_id: &str, ns: &'a str) -> Option<&'a str> {
    ns.strip_prefix(&ns_prefix(node_id))
}

/// The VXLAN device of a network (unique on the node: one VNI per network).
pub fn vxlan_name(vni: u32) -> String {
    format!("vx-{vni}")
}

/// The bridge in every overlay namespace.
pub const BRIDGE: &str = "br0";

/// The bridge-side end of a task's veth (in the overlay namespace).
pub fn veth_host(task_id: &str) -> String {
    format!("ve-{}", short(task_id, 10))
}

/// The container-side end before it is moved and renamed.
pub fn veth_temp(task_id: &str) -> String {
    format!("vc-{}", short(task_id, 10))
}

/// The interface name in the container for its `index`-th network.
pub fn container_ifname(index: usize) -> String {
    format!("eth{index}")
}

/// The first `n` characters of an ID (all of it when shorter): IDs in
/// interface, namespace, chain and table names.
pub fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// The MAC of an endpoint: locally administered, from its IPv4 address
/// (as Docker does: 02:42:a:b:c:d), so every node derives the same one.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Parses `10.0.1.5/24` (or a bare IP, taken as /32) into address and prefix.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/').unwrap_or((s, "32"));
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}

/// Changes that bring a set of keyed entries to the wanted one.
#[derive(Debug, PartialEq, Eq)]
pub struct Diff<K, V> {
    /// Entries to add, or to replace (the value differs).
    pub put: Vec<(K, V)>,
    /// Entries to delete.
    pub delete: Vec<K>,
}

/// The diff from `have` to `want`.
pub fn diff<K: Ord + Clone, V: PartialEq + Clone>(
    have: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
) -> Diff<K, V> {
    Diff {
        put: want
            .iter()
            .filter(|(k, v)| have.get(k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        delete: have
            .keys()
            .filter(|k| !want.contains_key(k))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_limits() {
        let id = "abcdefghijklmnopqrstuvwxy";
        for name in [veth_host(id), veth_temp(id), vxlan_name(16_777_215)] {
            assert!(name.len() <= 15, "{name}");
        }
        let ns = ns_name("node1234567", "net9876543210");
        assert_eq!(ns, "ovl-node1234-net9876543");
        assert_eq!(network_of_ns("node1234567", &ns), Some("net9876543"));
        assert_eq!(network_of_ns("other", &ns), None);
    }

    #[test]
    fn mac_follows_ip() {
        assert_eq!(
            mac_for(Ipv4Addr::new(10, 0, 1, 5)),
            [0x02, 0x42, 10, 0, 1, 5]
        );
    }

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("10.0.1.5/24"),
            Some((Ipv4Addr::new(10, 0, 1, 5), 24))
        );
        assert_eq!(
            parse_cidr("10.0.1.5"),
            Some((Ipv4Addr::new(10, 0, 1, 5), 32))
        );
        assert_eq!(parse_cidr("10.0.1.5/33"), None);
        assert_eq!(parse_cidr("nope/24"), None);
    }

    #[test]
    fn diff_adds_replaces_and_deletes() {
        let have = BTreeMap::from([(1, "a"), (2, "b"), (3, "c")]);
        let want = BTreeMap::from([(2, "b"), (3, "x"), (4, "d")]);
        let d = diff(&have, &want);
        assert_eq!(d.put, vec![(3, "x"), (4, "d")]);
        assert_eq!(d.delete, vec![1]);
        let same = diff(&want, &want);
        assert!(same.put.is_empty() && same.delete.is_empty());
    }
}
