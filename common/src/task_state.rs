//! The task state machine, in one place.
//!
//! `new → pending → assigned → accepted → preparing → starting → running →
//! complete | failed | shutdown | rejected`, plus `remove` and `orphaned`.
//! Managers own the states up to `assigned`, workers the rest. A task's
//! observed state and its desired state only ever move forward; the numeric
//! values of [`TaskState`] are ordered so that "forward" is "greater".

use swarmlet_proto::objects::{Task, TaskState};

/// The lowercase name shown by the CLI (`running`, `pending`, …).
pub fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::New => "new",
        TaskState::Pending => "pending",
        TaskState::Assigned => "assigned",
        TaskState::Accepted => "accepted",
        TaskState::Preparing => "preparing",
        TaskState::Starting => "starting",
        TaskState::Running => "running",
        TaskState::Complete => "complete",
        TaskState::Shutdown => "shutdown",
        TaskState::Failed => "failed",
        TaskState::Rejected => "rejected",
        TaskState::Remove => "remove",
        TaskState::Orphaned => "orphaned",
    }
}

/// Whether a task in this state will never run again.
pub fn is_terminal(s: TaskState) -> bool {
    s >= TaskState::Complete
}

/// Whether an observed state may move from `from` to `to` (forward only).
pub fn may_advance(from: TaskState, to: TaskState) -> bool {
    to > from
}

/// A task's observed state (`new` before any status).
pub fn observed(t: &Task) -> TaskState {
    t.status
        .as_ref()
        .and_then(|s| TaskState::try_from(s.state).ok())
        .unwrap_or(TaskState::New)
}

/// A task's desired state (`new` if unknown).
pub fn desired(t: &Task) -> TaskState {
    TaskState::try_from(t.desired_state).unwrap_or(TaskState::New)
}

/// Whether a task waits for a node: meant to run, still `pending`.
pub fn is_pending(t: &Task) -> bool {
    desired(t) == TaskState::Running && observed(t) == TaskState::Pending
}

/// Whether a task keeps its network addresses: it has not ended yet (a
/// task being stopped still holds them until its container is gone).
pub fn holds_addresses(t: &Task) -> bool {
    !is_terminal(observed(t))
}

/// Whether a task occupies its node (counts toward spread, limits and
/// reservations): placed, meant to run, and not ended.
pub fn occupies_node(t: &Task) -> bool {
    !t.node_id.is_empty() && desired(t) <= TaskState::Running && holds_addresses(t)
}

/// Whether a task is running and meant to.
pub fn is_running(t: &Task) -> bool {
    desired(t) == TaskState::Running && observed(t) == TaskState::Running
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::TaskStatus;

    fn task(desired: TaskState, observed: Option<TaskState>, node: &str) -> Task {
        Task {
            desired_state: desired as i32,
            status: observed.map(|s| TaskStatus {
                state: s as i32,
                ..Default::default()
            }),
            node_id: node.into(),
            ..Default::default()
        }
    }

    #[test]
    fn predicates_over_desired_and_observed_states() {
        use TaskState::*;
        assert!(is_pending(&task(Running, Some(Pending), "")));
        assert!(!is_pending(&task(Shutdown, Some(Pending), "")));
        assert!(!is_pending(&task(Running, Some(Assigned), "n1")));
        assert!(holds_addresses(&task(Shutdown, Some(Running), "n1")));
        assert!(holds_addresses(&task(Running, None, "")));
        assert!(!holds_addresses(&task(Running, Some(Failed), "n1")));
        assert!(occupies_node(&task(Running, Some(Starting), "n1")));
        assert!(!occupies_node(&task(Running, Some(Starting), "")));
        assert!(!occupies_node(&task(Shutdown, Some(Running), "n1")));
        assert!(!occupies_node(&task(Running, Some(Complete), "n1")));
        assert!(is_running(&task(Running, Some(Running), "n1")));
        assert!(!is_running(&task(Shutdown, Some(Running), "n1")));
    }

    #[test]
    fn states_only_move_forward() {
        assert!(may_advance(TaskState::Assigned, TaskState::Running));
        assert!(may_advance(TaskState::Running, TaskState::Failed));
        assert!(!may_advance(TaskState::Running, TaskState::Starting));
        assert!(!may_advance(TaskState::Shutdown, TaskState::Running));
        assert!(is_terminal(TaskState::Rejected) && !is_terminal(TaskState::Running));
    }
}
