//! How tasks are named, in one place: `<service>.<slot>` for a replicated
//! task, `<service>.<node id>` for a global one (as `docker service ps`
//! shows them), and a `swarmctl run` container's own name for an
//! attachment. Containers add the task ID: `<service>.<slot>.<task id>`.

use swarmlet_proto::objects::Task;

/// The task's name as the CLI shows it, and its container's hostname.
pub fn task_name(t: &Task) -> String {
    if t.attachment {
        return t.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    }
    if t.slot > 0 {
        format!("{}.{}", t.service_name, t.slot)
    } else {
        format!("{}.{}", t.service_name, t.node_id)
    }
}

/// The name of the task's container: `<task name>.<task id>`, or for a
/// `swarmctl run` container the name it was given (as `docker run --name`).
pub fn container_name(t: &Task) -> String {
    if t.attachment {
        task_name(t)
    } else {
        format!("{}.{}", task_name(t), t.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::ServiceSpec;

    fn task(slot: u64, node: &str, attachment: bool) -> Task {
        Task {
            id: "t1d".into(),
            service_name: "web".into(),
            slot,
            node_id: node.into(),
            attachment,
            spec: Some(ServiceSpec {
                name: "probe".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn replicated_global_and_attached_tasks() {
        assert_eq!(task_name(&task(2, "n1", false)), "web.2");
        assert_eq!(container_name(&task(2, "n1", false)), "web.2.t1d");
        assert_eq!(task_name(&task(0, "n1", false)), "web.n1");
        assert_eq!(container_name(&task(0, "n1", false)), "web.n1.t1d");
        assert_eq!(task_name(&task(0, "n1", true)), "probe");
        assert_eq!(container_name(&task(0, "n1", true)), "probe");
    }
}
