//! Jobs: services whose tasks run to completion (`--mode replicated-job`,
//! `--mode global-job`), as Docker 20.10 has them.
//!
//! A run of a job is its spec version: tasks of an older version are
//! stopped (if still running) and kept as history; a new version (`service
//! update --force`, or any change) runs the job again. A replicated job
//! needs `replicas` completions, one per slot `1..=replicas`, with at most
//! `max_concurrent` tasks at once (0: `replicas`); a global job one
//! completion on every eligible node. A task that exits 0 completes its
//! slot for good; one that fails is replaced in the same slot as the
//! restart policy says (a job never restarts a completed task, so
//! condition `any` acts as `on-failure`); a slot whose restarts ran out
//! stays failed, and the job with it.

use std::collections::{BTreeSet, HashMap};

use swarmlet_common::task_state::is_terminal;
use swarmlet_proto::objects::{
    Node, NodeAvailability, NodeStatus, RestartCondition, Service, ServiceMode, Task, TaskState,
};

use super::restart::{self, RestartDecision};
use super::{desired, eligible_for_global, new_task, shutdown, task_state, Change};

/// Where a job stands in its current run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    /// Slots completed.
    pub completed: u64,
    /// Slots failed for good.
    pub failed: u64,
    /// Tasks running (or on their way).
    pub active: u64,
}

/// Whether a service is a job.
pub fn is_job(service: &Service) -> bool {
    matches!(
        service.spec.as_ref().map(|s| s.mode()),
        Some(ServiceMode::ReplicatedJob | ServiceMode::GlobalJob)
    )
}

/// The slot of a job task: its number, or its node for a global job.
fn slot_of(global: bool, t: &Task) -> String {
    if global {
        t.node_id.clone()
    } else {
        t.slot.to_string()
    }
}

/// Counts the current run's tasks of a job.
pub fn progress<'a>(service: &Service, tasks: impl IntoIterator<Item = &'a Task>) -> JobProgress {
    let mut p = JobProgress::default();
    for t in tasks {
        if t.service_id != service.id || t.service_version != service.spec_version {
            continue;
        }
        match task_state(t) {
            TaskState::Complete => p.completed += 1,
            s if is_terminal(s) && desired(t) <= TaskState::Running => p.failed += 1,
            s if !is_terminal(s) && desired(t) <= TaskState::Running => p.active += 1,
            _ => {}
        }
    }
    p
}

/// What one pass over a job's tasks shares with the service orchestrator.
pub(super) struct JobPass<'a> {
    pub nodes: &'a [Node],
    pub nodes_by_id: &'a HashMap<&'a str, &'a Node>,
    pub history_limit: usize,
    pub now_ms: i64,
}

/// The changes that bring a job's tasks in line with its spec.
pub(super) fn reconcile(
    service: &Service,
    tasks: &[(u64, &Task)],
    pass: &JobPass<'_>,
    budget: &mut usize,
) -> Vec<Change> {
    let spec = service.spec.clone().unwrap_or_default();
    let global = spec.mode() == ServiceMode::GlobalJob;
    let now_ms = pass.now_ms;
    let mut changes = Vec::new();
    // Slots of this run that are done, failed for good, or busy.
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut active = 0u64;
    let mut history: Vec<(u64, &Task)> = Vec::new();
    let mut policy = spec.restart.unwrap_or_default();
    if policy.condition() == RestartCondition::Any {
        policy.set_condition(RestartCondition::OnFailure);
    }
    for &(version, task) in tasks {
        let state = task_state(task);
        let current = task.service_version == service.spec_version;
        if !current || desired(task) > TaskState::Running {
            if !is_terminal(state) && desired(task) <= TaskState::Running {
                changes.push(shutdown(version, task, "the job runs again"));
            } else if is_terminal(state) {
                history.push((version, task));
            }
            continue;
        }
        let slot = slot_of(global, task);
        let node = pass.nodes_by_id.get(task.node_id.as_str());
        let misplaced = !task.node_id.is_empty()
            && !is_terminal(state)
            && node.is_none_or(|n| {
                n.status() == NodeStatus::Down || n.availability() == NodeAvailability::Drain
            });
        if misplaced {
            // Its slot is free again (a global job's node no longer counts).
            changes.push(shutdown(version, task, "node is down or drained"));
            continue;
        }
        match state {
            TaskState::Complete => {
                taken.insert(slot);
            }
            s if is_terminal(s) => match restart::decide(&policy, task, s, now_ms) {
                RestartDecision::Stay => {
                    taken.insert(slot);
                }
                RestartDecision::Restart {
                    attempt,
                    window_start_ms,
                    not_before_ms,
                } => {
                    changes.push(shutdown(version, task, "task failed"));
                    if taken.insert(slot.clone()) {
                        let mut t = job_task(service, global, &slot, now_ms);
                        t.attempt = attempt;
                        t.attempts_window_start_ms = window_start_ms;
                        t.not_before_ms = not_before_ms;
                        changes.push(Change::Create(t));
                        active += 1;
                    }
                }
            },
            _ => {
                if taken.insert(slot) {
                    active += 1;
                }
            }
        }
    }
    if global {
        for n in pass.nodes {
            if *budget == 0 {
                break;
            }
            if eligible_for_global(n, service) && !taken.contains(&n.id) {
                changes.push(Change::Create(job_task(service, true, &n.id, now_ms)));
                *budget -= 1;
            }
        }
    } else {
        let total = spec.replicas;
        let limit = match spec.max_concurrent {
            0 => total,
            m => m,
        };
        let mut room = limit.saturating_sub(active);
        for slot in 1..=total {
            if room == 0 || *budget == 0 {
                break;
            }
            let key = slot.to_string();
            if !taken.contains(&key) {
                changes.push(Change::Create(job_task(service, false, &key, now_ms)));
                room -= 1;
                *budget -= 1;
            }
        }
    }
    // History: the newest `history_limit` ended tasks of past runs and
    // replaced attempts (this run's completions are the job's record).
    history.sort_by_key(|(_, t)| std::cmp::Reverse(t.created_at_ms));
    for (version, t) in history.into_iter().skip(pass.history_limit) {
        changes.push(Change::Delete(version, t.id.clone()));
    }
    changes
}

fn job_task(service: &Service, global: bool, slot: &str, now_ms: i64) -> Task {
    if global {
        new_task(service, 0, slot, now_ms)
    } else {
        new_task(service, slot.parse().unwrap_or(0), "", now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{ServiceSpec, TaskStatus};

    fn job(replicas: u64, max_concurrent: u64) -> Service {
        let mut spec = ServiceSpec {
            name: "batch".into(),
            image: "img".into(),
            replicas,
            max_concurrent,
            ..Default::default()
        };
        spec.set_mode(ServiceMode::ReplicatedJob);
        Service {
            id: "j1".into(),
            spec: Some(spec),
            spec_version: 1,
            ..Default::default()
        }
    }

    fn node(id: &str) -> Node {
        let mut n = Node {
            id: id.into(),
            ..Default::default()
        };
        n.set_status(NodeStatus::Ready);
        n
    }

    /// Runs passes, finishing each new task with `outcome` (by its slot and
    /// attempt), until nothing changes; the most tasks active at once.
    struct World {
        service: Service,
        nodes: Vec<Node>,
        tasks: Vec<(u64, Task)>,
        most_active: u64,
    }

    impl World {
        fn new(service: Service, nodes: Vec<Node>) -> Self {
            World {
                service,
                nodes,
                tasks: Vec::new(),
                most_active: 0,
            }
        }

        fn pass(&mut self) -> usize {
            let by_id: HashMap<&str, &Node> =
                self.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
            let refs: Vec<(u64, &Task)> = self.tasks.iter().map(|(v, t)| (*v, t)).collect();
            let p = JobPass {
                nodes: &self.nodes,
                nodes_by_id: &by_id,
                history_limit: 5,
                now_ms: 0,
            };
            let mut budget = usize::MAX;
            let changes = reconcile(&self.service, &refs, &p, &mut budget);
            let n = changes.len();
            for c in changes {
                match c {
                    Change::Create(t) => self.tasks.push((1, t)),
                    Change::Update(_, t) => {
                        if let Some(x) = self.tasks.iter_mut().find(|(_, x)| x.id == t.id) {
                            x.1 = t;
                        }
                    }
                    Change::Delete(_, id) => self.tasks.retain(|(_, t)| t.id != id),
                    Change::Service(..) => {}
                }
            }
            let active = progress(&self.service, self.tasks.iter().map(|(_, t)| t)).active;
            self.most_active = self.most_active.max(active);
            n
        }

        /// Ends every running task: `fails(slot, attempt)` says which fail.
        fn finish(&mut self, fails: impl Fn(u64, u64) -> bool) {
            for (_, t) in &mut self.tasks {
                if !is_terminal(task_state(t)) && desired(t) <= TaskState::Running {
                    let state = if fails(t.slot, t.attempt) {
                        TaskState::Failed
                    } else {
                        TaskState::Complete
                    };
                    t.status = Some(TaskStatus {
                        state: state as i32,
                        ..Default::default()
                    });
                }
            }
        }

        fn run(&mut self, fails: impl Fn(u64, u64) -> bool) -> JobProgress {
            for _ in 0..50 {
                let changed = self.pass();
                self.finish(&fails);
                if changed == 0 {
                    break;
                }
            }
            progress(&self.service, self.tasks.iter().map(|(_, t)| t))
        }
    }

    #[test]
    fn a_replicated_job_completes_its_replicas_never_more_than_max_concurrent_at_once() {
        let mut w = World::new(job(5, 2), vec![node("a")]);
        let p = w.run(|_, _| false);
        assert_eq!(
            p,
            JobProgress {
                completed: 5,
                failed: 0,
                active: 0
            }
        );
        assert_eq!(w.most_active, 2, "max concurrent 2");
        assert_eq!(w.tasks.len(), 5, "one task per completion");
    }

    #[test]
    fn failed_tasks_are_retried_in_their_slot_and_a_slot_can_fail_for_good() {
        // Slot 3 fails once, then completes: retried.
        let mut w = World::new(job(4, 0), vec![node("a")]);
        let p = w.run(|slot, attempt| slot == 3 && attempt == 0);
        assert_eq!((p.completed, p.failed), (4, 0));
        // Slot 2 always fails, with 2 attempts: the job fails.
        let mut s = job(3, 0);
        if let Some(spec) = s.spec.as_mut() {
            spec.restart = Some(swarmlet_proto::objects::RestartPolicy {
                max_attempts: 2,
                ..Default::default()
            });
        }
        let mut w = World::new(s, vec![node("a")]);
        let p = w.run(|slot, _| slot == 2);
        assert_eq!((p.completed, p.failed, p.active), (2, 1, 0));
    }

    #[test]
    fn a_new_spec_version_runs_the_job_again() {
        let mut w = World::new(job(2, 0), vec![node("a")]);
        assert_eq!(w.run(|_, _| false).completed, 2);
        w.service.spec_version = 2;
        let p = w.run(|_, _| false);
        assert_eq!(p.completed, 2, "this run's completions");
        assert_eq!(w.tasks.len(), 4, "the first run kept as history");
    }

    #[test]
    fn a_global_job_runs_once_on_every_eligible_node() {
        let mut s = job(0, 0);
        if let Some(spec) = s.spec.as_mut() {
            spec.set_mode(ServiceMode::GlobalJob);
        }
        let mut drained = node("c");
        drained.set_availability(NodeAvailability::Drain);
        let mut w = World::new(s, vec![node("a"), node("b"), drained]);
        let p = w.run(|_, _| false);
        assert_eq!(p.completed, 2);
        let nodes: BTreeSet<&str> = w.tasks.iter().map(|(_, t)| t.node_id.as_str()).collect();
        assert_eq!(nodes, BTreeSet::from(["a", "b"]));
    }
}
