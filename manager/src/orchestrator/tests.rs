//! Orchestrator tests with a controllable clock: each pass gets `now`, and a
//! small in-memory "store" applies the changes between passes.

use super::*;
use swarmlet_proto::objects::{
    FailureAction, RestartPolicy, ServiceSpec, UpdateConfig, UpdateState,
};

fn service(replicas: u64, mode: ServiceMode) -> Service {
    let mut spec = ServiceSpec {
        name: "web".into(),
        replicas,
        image: "v1".into(),
        ..Default::default()
    };
    spec.set_mode(mode);
    Service {
        id: "s1".into(),
        spec: Some(spec),
        spec_version: 1,
        ..Default::default()
    }
}

fn node(id: &str, status: NodeStatus) -> Node {
    let mut n = Node {
        id: id.into(),
        ..Default::default()
    };
    n.set_status(status);
    n
}

/// A tiny store: services and tasks with versions.
struct World {
    services: Vec<(u64, Service)>,
    tasks: Vec<(u64, Task)>,
    nodes: Vec<Node>,
    version: u64,
}

impl World {
    fn new(s: Service, nodes: Vec<Node>) -> Self {
        World {
            services: vec![(1, s)],
            tasks: vec![],
            nodes,
            version: 1,
        }
    }

    fn pass(&mut self, now: i64) -> Vec<Change> {
        let changes = reconcile(&self.services, &self.tasks, &self.nodes, 5, usize::MAX, now);
        for c in changes.clone() {
            self.version += 1;
            let v = self.version;
            match c {
                Change::Create(t) => self.tasks.push((v, t)),
                Change::Update(_, t) => {
                    if let Some(x) = self.tasks.iter_mut().find(|(_, x)| x.id == t.id) {
                        *x = (v, t);
                    }
                }
                Change::Delete(_, id) => self.tasks.retain(|(_, t)| t.id != id),
                Change::Service(_, s) => self.services[0] = (v, *s),
            }
        }
        changes
    }

    /// Places pending tasks on node "a" and marks them running at `now`
    /// (what scheduler and worker would do); image "bad" fails instead.
    fn run_all(&mut self, now: i64) {
        for (v, t) in self.tasks.iter_mut() {
            let st = t.status.get_or_insert_with(Default::default);
            if t.desired_state == TaskState::Running as i32 && st.state < TaskState::Running as i32
            {
                if t.not_before_ms > now {
                    continue;
                }
                let bad = t.spec.as_ref().is_some_and(|s| s.image == "bad");
                st.state = if bad {
                    TaskState::Failed
                } else {
                    TaskState::Running
                } as i32;
                st.timestamp_ms = now;
                if t.node_id.is_empty() {
                    t.node_id = "a".into();
                }
                *v += 1000;
            }
            if t.desired_state > TaskState::Running as i32 && st.state <= TaskState::Running as i32
            {
                st.state = TaskState::Shutdown as i32;
            }
        }
    }

    fn active(&self) -> Vec<&Task> {
        self.tasks
            .iter()
            .map(|(_, t)| t)
            .filter(|t| {
                t.desired_state == TaskState::Running as i32 && task_state(t) == TaskState::Running
            })
            .collect()
    }

    fn update_state(&self) -> UpdateState {
        self.services[0]
            .1
            .update_status
            .clone()
            .unwrap_or_default()
            .state()
    }

    fn set_spec(&mut self, edit: impl Fn(&mut ServiceSpec)) {
        let s = &mut self.services[0].1;
        s.previous_spec = s.spec.clone();
        edit(s.spec.as_mut().expect("spec"));
        s.spec_version += 1;
    }
}

fn created(changes: &[Change]) -> usize {
    changes
        .iter()
        .filter(|c| matches!(c, Change::Create(_)))
        .count()
}

#[test]
fn replicated_fills_slots_scales_down_and_settles() {
    let mut w = World::new(
        service(3, ServiceMode::Replicated),
        vec![node("a", NodeStatus::Ready)],
    );
    assert_eq!(created(&w.pass(0)), 3);
    w.run_all(0);
    assert!(w.pass(1).is_empty(), "settled");
    w.services[0].1.spec.as_mut().expect("spec").replicas = 1;
    w.pass(2);
    w.run_all(2);
    assert_eq!(w.active().len(), 1);
    assert_eq!(w.active()[0].slot, 1);
}

#[test]
fn a_large_service_is_filled_over_several_passes() {
    let mut w = World::new(
        service(10, ServiceMode::Replicated),
        vec![node("a", NodeStatus::Ready)],
    );
    let limited = |w: &World| reconcile(&w.services, &w.tasks, &w.nodes, 5, 4, 0);
    let mut slots = Vec::new();
    for expected in [4, 4, 2, 0] {
        let changes = limited(&w);
        assert_eq!(created(&changes), expected);
        for c in changes {
            if let Change::Create(t) = c {
                slots.push(t.slot);
                w.version += 1;
                w.tasks.push((w.version, t));
            }
        }
    }
    slots.sort_unstable();
    assert_eq!(slots, (1..=10).collect::<Vec<u64>>(), "each slot once");
}

#[test]
fn tasks_on_a_down_node_are_replaced() {
    let mut w = World::new(
        service(1, ServiceMode::Replicated),
        vec![node("a", NodeStatus::Ready), node("b", NodeStatus::Ready)],
    );
    w.pass(0);
    w.run_all(0);
    w.nodes[0].set_status(NodeStatus::Down);
    let c = w.pass(1);
    assert_eq!(created(&c), 1);
    assert!(c.iter().any(
        |c| matches!(c, Change::Update(_, t) if t.desired_state == TaskState::Shutdown as i32)
    ));
}

#[test]
fn global_follows_nodes() {
    let mut drained = node("c", NodeStatus::Ready);
    drained.set_availability(NodeAvailability::Drain);
    let mut w = World::new(
        service(0, ServiceMode::Global),
        vec![
            node("a", NodeStatus::Ready),
            node("b", NodeStatus::Ready),
            drained,
        ],
    );
    let c = w.pass(0);
    let on: HashSet<String> = c
        .iter()
        .filter_map(|c| match c {
            Change::Create(t) => Some(t.node_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(on, HashSet::from(["a".to_string(), "b".to_string()]));
}

#[test]
fn restart_policy_delay_and_max_attempts() {
    let mut s = service(1, ServiceMode::Replicated);
    s.spec.as_mut().expect("spec").image = "bad".into();
    s.spec.as_mut().expect("spec").restart = Some(RestartPolicy {
        delay_ms: 1_000,
        max_attempts: 2,
        ..Default::default()
    });
    let mut w = World::new(s, vec![node("a", NodeStatus::Ready)]);
    w.pass(0);
    w.run_all(0); // attempt 0 fails
    w.pass(10); // replacement, not before 1010
    w.run_all(500);
    let waiting = w
        .tasks
        .iter()
        .filter(|(_, t)| task_state(t) == TaskState::Pending)
        .count();
    assert_eq!(waiting, 1, "restart delay holds the replacement");
    w.run_all(1_010); // attempt 1 fails
    w.pass(1_020);
    w.run_all(2_100); // attempt 2 fails
    w.pass(2_200);
    w.run_all(4_000);
    assert!(
        w.pass(5_000).is_empty(),
        "max attempts reached: no more restarts"
    );
    let attempts = w
        .tasks
        .iter()
        .filter(|(_, t)| task_state(t) == TaskState::Failed)
        .count();
    assert_eq!(attempts, 3, "the first run and two restarts");
}

#[test]
fn rolling_update_one_at_a_time_with_monitor() {
    let mut s = service(3, ServiceMode::Replicated);
    s.spec.as_mut().expect("spec").update = Some(UpdateConfig {
        parallelism: 1,
        monitor_ms: 1_000,
        ..Default::default()
    });
    let mut w = World::new(s, vec![node("a", NodeStatus::Ready)]);
    w.pass(0);
    w.run_all(0);
    w.set_spec(|s| s.image = "v2".into());
    let mut now = 10;
    let mut max_new_unproven = 0;
    for _ in 0..20 {
        w.pass(now);
        w.run_all(now);
        let unproven = w
            .active()
            .iter()
            .filter(|t| t.spec.as_ref().is_some_and(|s| s.image == "v2"))
            .filter(|t| now - t.status.as_ref().map(|s| s.timestamp_ms).unwrap_or(0) < 1_000)
            .count();
        max_new_unproven = max_new_unproven.max(unproven);
        now += 400;
    }
    assert_eq!(
        max_new_unproven, 1,
        "parallelism 1: one new task monitored at a time"
    );
    assert_eq!(w.active().len(), 3);
    assert!(w
        .active()
        .iter()
        .all(|t| t.spec.as_ref().is_some_and(|s| s.image == "v2")));
    assert_eq!(w.update_state(), UpdateState::Completed);
}

#[test]
fn failed_update_rolls_back() {
    let mut s = service(2, ServiceMode::Replicated);
    let mut cfg = UpdateConfig {
        parallelism: 1,
        monitor_ms: 500,
        ..Default::default()
    };
    cfg.set_failure_action(FailureAction::Rollback);
    s.spec.as_mut().expect("spec").update = Some(cfg);
    let mut w = World::new(s, vec![node("a", NodeStatus::Ready)]);
    w.pass(0);
    w.run_all(0);
    let before: HashSet<String> = w.active().iter().map(|t| t.id.clone()).collect();
    w.set_spec(|s| s.image = "bad".into());
    let mut now = 10;
    for _ in 0..30 {
        w.pass(now);
        w.run_all(now);
        now += 300;
    }
    assert_eq!(w.update_state(), UpdateState::RollbackCompleted);
    assert_eq!(w.active().len(), 2);
    assert!(w
        .active()
        .iter()
        .all(|t| t.spec.as_ref().is_some_and(|s| s.image == "v1")));
    // The slot the update never reached keeps its task: it already runs
    // the spec rolled back to.
    let kept = w.active().iter().filter(|t| before.contains(&t.id)).count();
    assert_eq!(kept, 1, "only the updated slot is replaced");
    let version = w.services[0].1.spec_version;
    assert!(w.active().iter().all(|t| t.service_version == version));
    // A task shut down before any node got it is over, not pending forever.
    assert!(w.tasks.iter().all(|(_, t)| !t.node_id.is_empty()
        || t.desired_state == TaskState::Running as i32
        || is_terminal(task_state(t))));
}

/// The last batch is watched too: with one replica the first batch is the
/// last, and nothing is outdated once it started (this hung in CI).
#[test]
fn failure_in_the_last_batch_rolls_back() {
    let mut s = service(1, ServiceMode::Replicated);
    let mut cfg = UpdateConfig {
        parallelism: 1,
        monitor_ms: 3_000,
        ..Default::default()
    };
    cfg.set_failure_action(FailureAction::Rollback);
    s.spec.as_mut().expect("spec").update = Some(cfg);
    let mut w = World::new(s, vec![node("a", NodeStatus::Ready)]);
    w.pass(0);
    w.run_all(0);
    w.set_spec(|s| s.image = "bad".into());
    let mut now = 10;
    for _ in 0..40 {
        w.pass(now);
        w.run_all(now);
        now += 300;
    }
    assert_eq!(w.update_state(), UpdateState::RollbackCompleted);
    assert!(w
        .active()
        .iter()
        .all(|t| t.spec.as_ref().is_some_and(|s| s.image == "v1")));
}

#[test]
fn failed_update_pauses_by_default() {
    let mut s = service(2, ServiceMode::Replicated);
    s.spec.as_mut().expect("spec").update = Some(UpdateConfig {
        parallelism: 1,
        ..Default::default()
    });
    let mut w = World::new(s, vec![node("a", NodeStatus::Ready)]);
    w.pass(0);
    w.run_all(0);
    w.set_spec(|s| s.image = "bad".into());
    let mut now = 10;
    for _ in 0..10 {
        w.pass(now);
        w.run_all(now);
        now += 300;
    }
    assert_eq!(w.update_state(), UpdateState::Paused);
    // One slot was tried; the other still runs the old spec.
    assert!(w
        .active()
        .iter()
        .any(|t| t.spec.as_ref().is_some_and(|s| s.image == "v1")));
}

#[test]
fn removed_service_tasks_are_stopped_then_deleted() {
    let mut w = World::new(
        service(1, ServiceMode::Replicated),
        vec![node("a", NodeStatus::Ready)],
    );
    w.pass(0);
    w.run_all(0);
    w.services.clear();
    let c = w.pass(1);
    assert!(
        matches!(&c[..], [Change::Update(_, x)] if x.desired_state == TaskState::Remove as i32)
    );
    w.run_all(2);
    let c = w.pass(3);
    assert!(matches!(&c[..], [Change::Delete(_, _)]));
}

/// A rollback goes as the spec rolled back from says (`--rollback-*`), not
/// as its updates do: the update to v2 replaced every task at once; the
/// rollback asked for goes one task at a time with a long delay, so after
/// its first batch it is still under way.
#[test]
fn a_rollback_follows_the_rollback_config() {
    let mut s = service(3, ServiceMode::Replicated);
    let update = UpdateConfig {
        parallelism: 0,
        monitor_ms: 500,
        ..Default::default()
    };
    let rollback = UpdateConfig {
        parallelism: 1,
        delay_ms: 1_000_000,
        monitor_ms: 500,
        ..Default::default()
    };
    let spec = s.spec.as_mut().expect("spec");
    spec.update = Some(update);
    spec.rollback = Some(rollback);
    let mut w = World::new(s, vec![node("a", NodeStatus::Ready)]);
    let run = |w: &mut World, now: &mut i64| {
        for _ in 0..30 {
            w.pass(*now);
            w.run_all(*now);
            *now += 300;
        }
    };
    let mut now = 0;
    run(&mut w, &mut now);
    w.set_spec(|s| s.image = "v2".into());
    run(&mut w, &mut now);
    assert_eq!(w.update_state(), UpdateState::Completed);
    // `service rollback`, as the operation writes it.
    let svc = &mut w.services[0].1;
    let target = svc.previous_spec.take();
    svc.previous_spec = svc.spec.take();
    svc.spec = target;
    svc.spec_version += 1;
    let mut st = swarmlet_proto::objects::UpdateStatus::default();
    st.set_state(UpdateState::RollbackStarted);
    svc.update_status = Some(st);
    run(&mut w, &mut now);
    assert_eq!(w.update_state(), UpdateState::RollbackStarted);
    let image = |w: &World, i: &str| {
        w.active()
            .iter()
            .filter(|t| t.spec.as_ref().is_some_and(|s| s.image == i))
            .count()
    };
    assert_eq!(
        (image(&w, "v1"), image(&w, "v2")),
        (1, 2),
        "one batch of one"
    );
}
