//! Resolving what a user typed (a node ID, a unique ID prefix, or a hostname).

use swarmlet_proto::objects::Node;
use tonic::Status;

/// Finds the one node `reference` names.
pub fn resolve_node(nodes: &[(u64, Node)], reference: &str) -> Result<(u64, Node), Status> {
    if reference.is_empty() {
        return Err(Status::invalid_argument("node name is empty"));
    }
    if let Some(n) = nodes.iter().find(|(_, n)| n.id == reference) {
        return Ok(n.clone());
    }
    let by_name: Vec<_> = nodes
        .iter()
        .filter(|(_, n)| n.hostname == reference)
        .collect();
    if let [one] = by_name.as_slice() {
        return Ok((*one).clone());
    }
    if by_name.len() > 1 {
        return Err(Status::invalid_argument(format!(
            "node {reference} is ambiguous ({} nodes have this hostname): use its ID",
            by_name.len()
        )));
    }
    let by_prefix: Vec<_> = nodes
        .iter()
        .filter(|(_, n)| n.id.starts_with(reference))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Status::not_found(format!("node {reference} not found"))),
        _ => Err(Status::invalid_argument(format!(
            "node {reference} is ambiguous ({} matches)",
            by_prefix.len()
        ))),
    }
}

/// Finds the one service `reference` names: ID, name, or unique ID prefix.
pub fn resolve_service(
    services: &[(u64, swarmlet_proto::objects::Service)],
    reference: &str,
) -> Result<(u64, swarmlet_proto::objects::Service), Status> {
    let name = |s: &swarmlet_proto::objects::Service| {
        s.spec.as_ref().map(|x| x.name.clone()).unwrap_or_default()
    };
    if reference.is_empty() {
        return Err(Status::invalid_argument("service name is empty"));
    }
    if let Some(s) = services
        .iter()
        .find(|(_, s)| s.id == reference || name(s) == reference)
    {
        return Ok(s.clone());
    }
    let by_prefix: Vec<_> = services
        .iter()
        .filter(|(_, s)| s.id.starts_with(reference))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Status::not_found(format!("service {reference} not found"))),
        _ => Err(Status::invalid_argument(format!(
            "service {reference} is ambiguous"
        ))),
    }
}

/// A network by ID, name, or unique ID prefix.
pub fn resolve_network(
    networks: &[(u64, swarmlet_proto::objects::Network)],
    reference: &str,
) -> Result<(u64, swarmlet_proto::objects::Network), Status> {
    let name = |n: &swarmlet_proto::objects::Network| {
        n.spec.as_ref().map(|x| x.name.clone()).unwrap_or_default()
    };
    if reference.is_empty() {
        return Err(Status::invalid_argument("network name is empty"));
    }
    if let Some(n) = networks
        .iter()
        .find(|(_, n)| n.id == reference || name(n) == reference)
    {
        return Ok(n.clone());
    }
    let by_prefix: Vec<_> = networks
        .iter()
        .filter(|(_, n)| n.id.starts_with(reference))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Status::not_found(format!("network {reference} not found"))),
        _ => Err(Status::invalid_argument(format!(
            "network {reference} is ambiguous"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: &str, host: &str) -> (u64, Node) {
        (
            1,
            Node {
                id: id.into(),
                hostname: host.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn id_hostname_prefix() {
        let nodes = vec![n("abc123", "one"), n("abd456", "two"), n("xyz", "two2")];
        assert_eq!(
            resolve_node(&nodes, "abc123").expect("id").1.hostname,
            "one"
        );
        assert_eq!(resolve_node(&nodes, "two").expect("host").1.id, "abd456");
        assert_eq!(resolve_node(&nodes, "x").expect("prefix").1.id, "xyz");
        assert_eq!(
            resolve_node(&nodes, "ab").expect_err("ambiguous").code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            resolve_node(&nodes, "q").expect_err("none").code(),
            tonic::Code::NotFound
        );
    }
}
