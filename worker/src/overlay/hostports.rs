//! Ports published in `mode=host`: reachable on the task's own node only.
//!
//! A task with such ports gets a leg to the node's namespace: a veth
//! `swh-<task id:10>` there and `host0` in the container, a /30 from
//! 172.19.0.0/16 (node side `.1`, container side `.2`; the container's
//! default route goes back through it, so replies reach any client). The
//! node's routing-mesh table ([`super::ingress::host_ruleset`]) DNATs the
//! published port on the node's local addresses to the container's side,
//! at the target port. The scheduler never puts two tasks publishing the
//! same host port on one node.

use std::net::Ipv4Addr;

use swarmlet_proto::objects::Task;

use super::lb::Proto;

/// The container side of the leg.
pub const CONTAINER_LEG: &str = "host0";

/// Number of /30 slots in 172.19.0.0/16.
pub const SLOTS: u32 = 16384;

/// One host-mode port of a task: (protocol, published, target).
pub type HostPort = (Proto, u16, u16);

/// The host-mode ports of a task's spec (a published port of 0 is skipped:
/// host mode needs an explicit port).
pub fn host_ports(task: &Task) -> Vec<HostPort> {
    let Some(spec) = task.spec.as_ref() else {
        return Vec::new();
    };
    spec.ports
        .iter()
        .filter(|p| p.mode == "host" && p.published != 0)
        .filter_map(|p| {
            Some((
                Proto::parse(&p.protocol)?,
                u16::try_from(p.published).ok()?,
                u16::try_from(p.target).ok()?,
            ))
        })
        .collect()
}

/// The node side of a task's leg.
pub fn node_leg(task_id: &str) -> String {
    format!("swh-{}", super::plan::short(task_id, 10))
}

/// The container side before it is moved and renamed.
pub fn temp_leg(task_id: &str) -> String {
    format!("swk-{}", super::plan::short(task_id, 10))
}

/// The (node side, container side) addresses of slot `slot` (/30).
pub fn slot_ips(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = (172u32 << 24) | (19 << 16) | ((slot % SLOTS) << 2);
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// The slot of a node-side address (inverse of [`slot_ips`]).
pub fn slot_of(node_side: Ipv4Addr) -> Option<u32> {
    let v = u32::from(node_side);
    (v >> 16 == (172 << 8 | 19) && v & 3 == 1).then_some((v >> 2) & (SLOTS - 1))
}

/// The first slot from the task's hash on that `taken` does not hold.
pub fn pick_slot(task_id: &str, taken: &[u32]) -> u32 {
    let start = task_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % SLOTS;
    (0..SLOTS)
        .map(|i| (start + i) % SLOTS)
        .find(|s| !taken.contains(s))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{PortConfig, ServiceSpec};

    #[test]
    fn slots_and_addresses() {
        assert_eq!(
            slot_ips(0),
            (Ipv4Addr::new(172, 19, 0, 1), Ipv4Addr::new(172, 19, 0, 2))
        );
        assert_eq!(
            slot_ips(65),
            (Ipv4Addr::new(172, 19, 1, 5), Ipv4Addr::new(172, 19, 1, 6))
        );
        assert_eq!(slot_of(Ipv4Addr::new(172, 19, 1, 5)), Some(65));
        assert_eq!(slot_of(Ipv4Addr::new(172, 19, 1, 6)), None);
        let s = pick_slot("abc", &[]);
        assert_ne!(pick_slot("abc", &[s]), s);
        assert!(node_leg("0123456789abcdef").len() <= 15);
    }

    #[test]
    fn only_host_mode_ports_with_a_number() {
        let task = Task {
            spec: Some(ServiceSpec {
                ports: vec![
                    PortConfig {
                        published: 8080,
                        target: 80,
                        protocol: "tcp".into(),
                        mode: "host".into(),
                    },
                    PortConfig {
                        published: 9090,
                        target: 90,
                        protocol: "udp".into(),
                        mode: "ingress".into(),
                    },
                    PortConfig {
                        published: 0,
                        target: 70,
                        protocol: "tcp".into(),
                        mode: "host".into(),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(host_ports(&task), vec![(Proto::Tcp, 8080, 80)]);
    }
}
