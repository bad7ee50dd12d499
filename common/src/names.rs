//! The names the API and the CLI use for enum values (`manager`, `drain`, `ready`, …).

use swarmlet_proto::objects::{NodeAvailability, NodeRole, NodeStatus, ServiceMode};

/// `replicated`, `global`, `replicated-job` or `global-job`.
pub fn mode_name(mode: ServiceMode) -> &'static str {
    match mode {
        ServiceMode::Replicated => "replicated",
        ServiceMode::Global => "global",
        ServiceMode::ReplicatedJob => "replicated-job",
        ServiceMode::GlobalJob => "global-job",
    }
}

/// `manager` or `worker`.
pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

/// Parses `manager` or `worker`.
pub fn parse_role(s: &str) -> Option<NodeRole> {
    match s {
        "manager" => Some(NodeRole::Manager),
        "worker" => Some(NodeRole::Worker),
        _ => None,
    }
}

/// `active`, `pause` or `drain`.
pub fn availability_name(a: NodeAvailability) -> &'static str {
    match a {
        NodeAvailability::Active => "active",
        NodeAvailability::Pause => "pause",
        NodeAvailability::Drain => "drain",
    }
}

/// Parses `active`, `pause` or `drain`.
pub fn parse_availability(s: &str) -> Option<NodeAvailability> {
    match s {
        "active" => Some(NodeAvailability::Active),
        "pause" => Some(NodeAvailability::Pause),
        "drain" => Some(NodeAvailability::Drain),
        _ => None,
    }
}

/// `ready`, `down`, `unknown` or `disconnected`.
pub fn status_name(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Unknown => "unknown",
        NodeStatus::Down => "down",
        NodeStatus::Ready => "ready",
        NodeStatus::Disconnected => "disconnected",
    }
}
