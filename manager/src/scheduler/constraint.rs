//! Placement constraints: `node.hostname==x`, `node.role!=manager`,
//! `node.labels.k==v`, `node.id==…`.

use swarmlet_common::names::role_name;
use swarmlet_proto::objects::Node;

/// One parsed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    key: Key,
    equal: bool,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Id,
    Hostname,
    Role,
    Label(String),
}

/// Why a constraint does not parse.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid constraint {0:?}: expected node.id|node.hostname|node.role|node.labels.KEY followed by == or != and a value")]
pub struct ConstraintError(pub String);

impl Constraint {
    /// Parses `KEY==VALUE` or `KEY!=VALUE`.
    pub fn parse(expr: &str) -> Result<Self, ConstraintError> {
        let err = || ConstraintError(expr.to_string());
        let (key, equal, value) = if let Some((k, v)) = expr.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = expr.split_once("==") {
            (k, true, v)
        } else {
            return Err(err());
        };
        let key = match key.trim() {
            "node.id" => Key::Id,
            "node.hostname" => Key::Hostname,
            "node.role" => Key::Role,
            k => match k.strip_prefix("node.labels.") {
                Some(l) if !l.is_empty() => Key::Label(l.to_string()),
                _ => return Err(err()),
            },
        };
        let value = value.trim();
        if value.is_empty() || value.contains("==") || value.contains("!=") {
            return Err(err());
        }
        Ok(Constraint {
            key,
            equal,
            value: value.to_string(),
        })
    }

    /// Whether `node` satisfies the constraint.
    pub fn matches(&self, node: &Node) -> bool {
        let actual = match &self.key {
            Key::Id => Some(node.id.as_str()),
            Key::Hostname => Some(node.hostname.as_str()),
            Key::Role => Some(role_name(node.role())),
            Key::Label(l) => node.labels.get(l).map(String::as_str),
        };
        match actual {
            Some(a) => (a == self.value) == self.equal,
            // A missing label never equals, and always differs.
            None => !self.equal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::NodeRole;

    #[test]
    fn parse_and_match() {
        let mut n = Node {
            id: "abc".into(),
            hostname: "h1".into(),
            ..Default::default()
        };
        n.set_role(NodeRole::Worker);
        n.labels.insert("zone".into(), "a".into());
        let ok = |e: &str| Constraint::parse(e).expect(e).matches(&n);
        assert!(ok("node.hostname==h1"));
        assert!(ok("node.role!=manager"));
        assert!(ok("node.labels.zone==a"));
        assert!(!ok("node.labels.zone!=a"));
        assert!(!ok("node.labels.rack==1"));
        assert!(ok("node.labels.rack!=1"));
        assert!(ok("node.id == abc"));
        for bad in [
            "node.hostname",
            "foo==bar",
            "node.labels.==x",
            "node.role==",
            "a=b",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }
}
