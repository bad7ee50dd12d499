//! The task state machine, in one place.
//!
//! `new → pending → assigned → accepted → preparing → starting → running →
//! complete | failed | shutdown | rejected`, plus `remove` and `orphaned`.
//! Managers own the states up to `assigned`, workers the rest. A task's
//! observed state and its desired state only ever move forward; the numeric
//! values of [`TaskState`] are ordered so that "forward" is "greater".

use swarmlet_proto::objects::TaskState;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        assert!(may_advance(TaskState::Assigned, TaskState::Running));
        assert!(may_advance(TaskState::Running, TaskState::Failed));
        assert!(!may_advance(TaskState::Running, TaskState::Starting));
        assert!(!may_advance(TaskState::Shutdown, TaskState::Running));
        assert!(is_terminal(TaskState::Rejected) && !is_terminal(TaskState::Running));
    }
}
