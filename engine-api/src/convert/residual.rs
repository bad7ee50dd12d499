//! The part of a client's JSON spec that Swarmlet does not model, kept
//! beside the spec so that it survives a read-modify-write by the client
//! (`docker service update` sends back everything it read).
//!
//! [`residual`] removes from the client's JSON every key that Swarmlet's
//! own rendering of the spec has (objects recursively; arrays and scalars
//! whole); [`merge`] lays the rendering over the residual again. A field
//! Swarmlet models therefore always shows its current value, whoever
//! changed it last (`swarmctl` or `docker`).

use serde_json::{Map, Value};

/// `raw` without the keys `ours` has, empty objects dropped.
pub fn residual(raw: &Value, ours: &Value) -> Value {
    match (raw, ours) {
        (Value::Object(r), Value::Object(o)) => {
            let mut left = Map::new();
            for (k, v) in r {
                let kept = match o.get(k) {
                    None => v.clone(),
                    Some(ov @ Value::Object(_)) if v.is_object() => residual(v, ov),
                    Some(_) => continue,
                };
                if !is_empty_object(&kept) && !kept.is_null() {
                    left.insert(k.clone(), kept);
                }
            }
            Value::Object(left)
        }
        _ => Value::Object(Map::new()),
    }
}

/// `ours` laid over `residual`: objects merged key by key, everything else
/// taken from `ours` where it has the key.
pub fn merge(ours: Value, residual: &Value) -> Value {
    match (ours, residual) {
        (Value::Object(mut o), Value::Object(r)) => {
            for (k, rv) in r {
                match o.remove(k) {
                    Some(ov) => {
                        let merged = if ov.is_object() && rv.is_object() {
                            merge(ov, rv)
                        } else {
                            ov
                        };
                        o.insert(k.clone(), merged);
                    }
                    None => {
                        o.insert(k.clone(), rv.clone());
                    }
                }
            }
            Value::Object(o)
        }
        (ours, _) => ours,
    }
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_what_we_do_not_model() {
        let raw = json!({
            "Name": "web",
            "TaskTemplate": {"ContainerSpec": {"Image": "nginx", "Privileges": {"NoNewPrivileges": true}}},
            "Mode": {"Replicated": {}}
        });
        let ours = json!({
            "Name": "web",
            "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}},
            "Mode": {"Replicated": {"Replicas": 1}}
        });
        let left = residual(&raw, &ours);
        assert_eq!(
            left,
            json!({"TaskTemplate": {"ContainerSpec": {"Privileges": {"NoNewPrivileges": true}}}})
        );
        // A later change of ours wins; the unmodelled field comes back.
        let mut now = ours.clone();
        now["TaskTemplate"]["ContainerSpec"]["Image"] = json!("nginx:2");
        let merged = merge(now, &left);
        assert_eq!(merged["TaskTemplate"]["ContainerSpec"]["Image"], "nginx:2");
        assert_eq!(
            merged["TaskTemplate"]["ContainerSpec"]["Privileges"]["NoNewPrivileges"],
            true
        );
        assert_eq!(merged["Mode"]["Replicated"]["Replicas"], 1);
    }
}
