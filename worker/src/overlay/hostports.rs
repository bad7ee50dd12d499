//! Ports published in `mode=host`: reachable on the task's own node only.
//!
//! A task with such ports gets a leg to the node's namespace: a veth
//! `swh-<task id:10>` there and `host0` in the container, a /30 of the
//! host pool ([`super::host_pool`]; node side `.1`, container side `.2`; the container's
//! default route goes back through it, so replies reach any client). The
//! node's routing-mesh table ([`super::ingress::host_ruleset`]) DNATs the
//! published port on the node's local addresses to the container's side,
//! at the target port. The scheduler never puts two tasks publishing the
//! same host port on one node.

use swarmlet_proto::objects::Task;

use super::lb::Proto;

/// The container side of the leg.
pub const CONTAINER_LEG: &str = "host0";

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

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{PortConfig, ServiceSpec};

    #[test]
    fn leg_names_fit_an_interface_name() {
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
