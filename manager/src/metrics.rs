//! The manager's part of `/metrics`: figures read from this manager's copy
//! of the cluster state at scrape time (nodes and tasks by state, the Raft
//! term, indexes and leadership). The figures measured in place are in
//! [`swarmlet_common::metrics`].

use swarmlet_common::metrics::{gauge, gauge_family};
use swarmlet_common::names::status_name;
use swarmlet_common::task_state::state_name;
use swarmlet_proto::objects::{Node, NodeStatus, Task, TaskState};

use crate::manager::Manager;
use crate::store::StoreError;

const NODE_STATES: [NodeStatus; 4] = [
    NodeStatus::Ready,
    NodeStatus::Down,
    NodeStatus::Disconnected,
    NodeStatus::Unknown,
];

const TASK_STATES: [TaskState; 13] = [
    TaskState::New,
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Accepted,
    TaskState::Preparing,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Remove,
    TaskState::Orphaned,
];

/// Appends the manager's gauges to `out`.
pub fn render(m: &Manager, out: &mut String) -> Result<(), StoreError> {
    let nodes = m.store.list::<Node>()?;
    let node_counts: Vec<(&str, i64)> = NODE_STATES
        .iter()
        .map(|s| {
            let n = nodes.iter().filter(|(_, n)| n.status == *s as i32).count();
            (status_name(*s), n as i64)
        })
        .collect();
    gauge_family(
        out,
        "swarmlet_nodes",
        "Nodes of the cluster by status.",
        "state",
        &node_counts,
    );
    let tasks = m.store.list::<Task>()?;
    let task_counts: Vec<(&str, i64)> = TASK_STATES
        .iter()
        .map(|s| {
            let n = tasks
                .iter()
                .filter(|(_, t)| t.status.as_ref().map_or(0, |st| st.state) == *s as i32)
                .count();
            (state_name(*s), n as i64)
        })
        .collect();
    gauge_family(
        out,
        "swarmlet_tasks",
        "Tasks kept in the cluster state, by observed state.",
        "state",
        &task_counts,
    );
    let raft = m.raft.status();
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        out,
        "swarmlet_raft_term",
        "Current Raft term.",
        as_i64(raft.term),
    );
    gauge(
        out,
        "swarmlet_raft_commit_index",
        "Raft commit index on this manager.",
        as_i64(raft.commit),
    );
    gauge(
        out,
        "swarmlet_raft_applied_index",
        "Raft index applied to this manager's store.",
        as_i64(raft.applied),
    );
    gauge(
        out,
        "swarmlet_raft_leader",
        "1 when this manager is the Raft leader.",
        i64::from(raft.is_leader()),
    );
    gauge(
        out,
        "swarmlet_raft_voters",
        "Voting members of the Raft group.",
        raft.voters.len() as i64,
    );
    Ok(())
}
