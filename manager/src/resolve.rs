//! Resolving what a user typed into the one object it names: a node by ID,
//! hostname or unique ID prefix; a service, network, secret or config by
//! ID, name or unique ID prefix.

use crate::ops::{OpsError, OpsResult};
use swarmlet_proto::objects::{Network, Node, Service};

/// Finds the one node `reference` names.
pub fn resolve_node(nodes: &[(u64, Node)], reference: &str) -> OpsResult<(u64, Node)> {
    if reference.is_empty() {
        return Err(OpsError::invalid("node name is empty"));
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
        return Err(OpsError::Ambiguous {
            kind: "node",
            reference: reference.to_string(),
            detail: format!(" ({} nodes have this hostname): use its ID", by_name.len()),
        });
    }
    let by_prefix: Vec<_> = nodes
        .iter()
        .filter(|(_, n)| n.id.starts_with(reference))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(OpsError::not_found("node", reference)),
        _ => Err(OpsError::Ambiguous {
            kind: "node",
            reference: reference.to_string(),
            detail: format!(" ({} matches)", by_prefix.len()),
        }),
    }
}

/// Finds the one row `reference` names among `rows` of one kind of object
/// (`kind` names it in errors): its ID, its name, or a unique ID prefix —
/// in that order, as Docker resolves services, networks, secrets and
/// configs.
pub fn resolve_named<T: Clone>(
    rows: &[(u64, T)],
    kind: &'static str,
    reference: &str,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> OpsResult<(u64, T)> {
    if reference.is_empty() {
        return Err(OpsError::invalid(format!("{kind} name is empty")));
    }
    if let Some(row) = rows
        .iter()
        .find(|(_, r)| id(r) == reference || name(r) == reference)
    {
        return Ok(row.clone());
    }
    let by_prefix: Vec<_> = rows
        .iter()
        .filter(|(_, r)| id(r).starts_with(reference))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(OpsError::not_found(kind, reference)),
        _ => Err(OpsError::Ambiguous {
            kind,
            reference: reference.to_string(),
            detail: String::new(),
        }),
    }
}

/// Finds the one service `reference` names: ID, name, or unique ID prefix.
pub fn resolve_service(services: &[(u64, Service)], reference: &str) -> OpsResult<(u64, Service)> {
    resolve_named(
        services,
        "service",
        reference,
        |s| &s.id,
        |s| s.spec.as_ref().map(|x| x.name.as_str()).unwrap_or_default(),
    )
}

/// A network by ID, name, or unique ID prefix.
pub fn resolve_network(networks: &[(u64, Network)], reference: &str) -> OpsResult<(u64, Network)> {
    resolve_named(
        networks,
        "network",
        reference,
        |n| &n.id,
        |n| n.spec.as_ref().map(|x| x.name.as_str()).unwrap_or_default(),
    )
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
    fn id_name_prefix() {
        let rows = vec![
            (1, ("abc1", "web")),
            (2, ("abd2", "db")),
            (3, ("web9", "x")),
        ];
        let find = |r: &str| {
            resolve_named(&rows, "service", r, |t| t.0, |t| t.1).map(|(version, _)| version)
        };
        assert_eq!(find("abd2").expect("id"), 2);
        // A name beats an ID prefix.
        assert_eq!(find("web").expect("name"), 1);
        assert_eq!(find("abc").expect("prefix"), 1);
        let ambiguous = find("ab").expect_err("ambiguous");
        assert!(matches!(ambiguous, OpsError::Ambiguous { .. }));
        assert_eq!(ambiguous.to_string(), "service ab is ambiguous");
        let missing = find("q").expect_err("none");
        assert_eq!(missing, OpsError::not_found("service", "q"));
        assert_eq!(missing.to_string(), "service q not found");
        assert_eq!(
            find("").expect_err("empty").to_string(),
            "service name is empty"
        );
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
        assert!(matches!(
            resolve_node(&nodes, "ab").expect_err("ambiguous"),
            OpsError::Ambiguous { .. }
        ));
        assert_eq!(
            resolve_node(&nodes, "q").expect_err("none"),
            OpsError::not_found("node", "q")
        );
    }
}
