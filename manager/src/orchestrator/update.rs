//! Rolling updates: replaces tasks that run an older spec version, a batch
//! at a time (`parallelism`, `delay`, `order`), watching new tasks for
//! `monitor` and acting on failure (`pause`, `continue`, `rollback`). The
//! update's progress lives in the service's `update_status`, in the store,
//! so a new leader carries on where the old one stopped.

use std::collections::BTreeMap;

use swarmlet_common::task_state::is_terminal;
use swarmlet_proto::objects::{
    FailureAction, Service, ServiceSpec, Task, TaskState, UpdateOrder, UpdateState, UpdateStatus,
};

use super::{shutdown, task_state, Change, Slots};

/// Whether `t` runs the service's current spec.
fn current(service: &Service, t: &Task) -> bool {
    t.service_version >= service.spec_version
}

/// The parts of a spec that its tasks run: all but the replica count and
/// the update policy, which change nothing in a running task.
fn task_relevant(spec: &ServiceSpec) -> ServiceSpec {
    ServiceSpec {
        replicas: 0,
        update: None,
        ..spec.clone()
    }
}

/// Whether `t`, of an older spec version, already runs what the current
/// spec asks (a rollback to the spec it was started with, an update that
/// only touched the update policy): it is kept, as Docker keeps a task
/// that is not "dirty", instead of being replaced for nothing.
fn runs_current_spec(service: &Service, t: &Task) -> bool {
    match (&service.spec, &t.spec) {
        (Some(wanted), Some(running)) => task_relevant(wanted) == task_relevant(running),
        _ => false,
    }
}

/// `t` re-labelled as a task of the current spec version.
fn relabel(version: u64, service: &Service, t: &Task) -> Change {
    let mut t = t.clone();
    t.service_version = service.spec_version;
    t.spec = service.spec.clone();
    Change::Update(version, t)
}

/// The time a task reached `running`, if it did.
fn running_since(t: &Task) -> Option<i64> {
    t.status
        .as_ref()
        .filter(|s| s.state == TaskState::Running as i32)
        .map(|s| s.timestamp_ms)
}

/// Plans this pass of the rolling update of `service` (at store version
/// `sv`): returns task changes, and a new service row if its update state
/// changes. `all` holds every task of the service, `slots` the occupants.
pub fn plan(
    sv: u64,
    service: &Service,
    all: &[(u64, &Task)],
    slots: &Slots,
    new_task: &dyn Fn(&str) -> Task,
    now_ms: i64,
) -> Vec<Change> {
    let spec = service.spec.clone().unwrap_or_default();
    let mut status = service.update_status.clone().unwrap_or_default();
    let rolling_back = matches!(
        status.state(),
        UpdateState::RollbackStarted | UpdateState::RollbackPaused
    );
    // A rollback goes as the spec rolled back from says (its `--rollback-*`),
    // else as updates do.
    let rollback_cfg = service
        .previous_spec
        .as_ref()
        .and_then(|p| p.rollback)
        .or(spec.rollback);
    let cfg = match (rolling_back, rollback_cfg) {
        (true, Some(r)) => r,
        _ => spec.update.unwrap_or_default(),
    };
    let mut changes = Vec::new();
    let mut outdated: BTreeMap<&String, Vec<(u64, &Task)>> = BTreeMap::new();
    for (key, occ) in slots {
        for &(v, t) in occ {
            if current(service, t) || is_terminal(task_state(t)) {
                continue;
            }
            if runs_current_spec(service, t) {
                changes.push(relabel(v, service, t));
            } else {
                outdated.entry(key).or_default().push((v, t));
            }
        }
    }
    // Re-labelled tasks count as current from the next pass on.
    if !changes.is_empty() {
        return changes;
    }
    let set_status = |status: UpdateStatus, changes: &mut Vec<Change>| {
        let mut s = service.clone();
        s.update_status = Some(status);
        changes.push(Change::Service(sv, Box::new(s)));
    };

    // New tasks that are still being watched (not running for `monitor` yet).
    let in_flight = slots
        .values()
        .flatten()
        .filter(|(_, t)| current(service, t) && !is_terminal(task_state(t)))
        .filter(|(_, t)| {
            running_since(t).is_none_or(|since| now_ms - since < cfg.monitor_ms as i64)
        })
        .count();

    let settling = matches!(
        status.state(),
        UpdateState::Updating | UpdateState::RollbackStarted
    );
    if outdated.is_empty() && !settling {
        return changes;
    }
    if matches!(
        status.state(),
        UpdateState::Paused | UpdateState::RollbackPaused
    ) {
        return changes;
    }
    // The start of an update is written in this pass whatever else happens,
    // so that `started_at` stays put (failures are judged against it).
    let starting = !settling;
    if starting {
        status.set_state(UpdateState::Updating);
        status.started_at_ms = now_ms;
        status.last_batch_at_ms = 0;
        status.message = "update in progress".into();
    }

    // A new task that failed since the update started is a failed update,
    // also in the last batch (nothing outdated left, still monitored).
    let failed = all.iter().find(|(_, t)| {
        current(service, t)
            && t.created_at_ms >= status.started_at_ms
            && matches!(task_state(t), TaskState::Failed | TaskState::Rejected)
    });
    if let Some((_, t)) = failed {
        let why = format!("task {} failed during the update", t.id);
        match cfg.failure_action() {
            FailureAction::Continue => {}
            FailureAction::Pause => {
                status.set_state(if rolling_back {
                    UpdateState::RollbackPaused
                } else {
                    UpdateState::Paused
                });
                status.message = format!("update paused: {why}");
                set_status(status, &mut changes);
                return changes;
            }
            FailureAction::Rollback if !rolling_back && service.previous_spec.is_some() => {
                let mut s = service.clone();
                s.spec = service.previous_spec.clone();
                s.previous_spec = service.spec.clone();
                s.spec_version += 1;
                let mut st = UpdateStatus {
                    started_at_ms: now_ms,
                    message: format!("rollback started: {why}"),
                    ..Default::default()
                };
                st.set_state(UpdateState::RollbackStarted);
                s.update_status = Some(st);
                changes.push(Change::Service(sv, Box::new(s)));
                return changes;
            }
            FailureAction::Rollback => {
                status.set_state(UpdateState::RollbackPaused);
                status.message = format!("rollback paused: {why}");
                set_status(status, &mut changes);
                return changes;
            }
        }
    }

    if outdated.is_empty() {
        if in_flight == 0 {
            status.set_state(if rolling_back {
                UpdateState::RollbackCompleted
            } else {
                UpdateState::Completed
            });
            status.message = if rolling_back {
                "rollback completed"
            } else {
                "update completed"
            }
            .into();
            set_status(status, &mut changes);
        }
        return changes;
    }

    let parallelism = if cfg.parallelism == 0 {
        usize::MAX
    } else {
        cfg.parallelism as usize
    };
    let delayed =
        status.last_batch_at_ms > 0 && now_ms < status.last_batch_at_ms + cfg.delay_ms as i64;
    let room = parallelism.saturating_sub(in_flight);
    if room == 0 || delayed {
        // Start-first: retire old tasks whose replacement already runs.
        retire_replaced(service, slots, &mut changes);
        if starting {
            set_status(status, &mut changes);
        }
        return changes;
    }
    for (key, old) in outdated.into_iter().take(room) {
        let has_new = slots
            .get(key)
            .is_some_and(|occ| occ.iter().any(|(_, t)| current(service, t)));
        match cfg.order() {
            UpdateOrder::StopFirst => {
                for (v, t) in old {
                    changes.push(shutdown(v, t, "replaced by the service update"));
                }
                if !has_new {
                    changes.push(Change::Create(new_task(key)));
                }
            }
            UpdateOrder::StartFirst => {
                if !has_new {
                    changes.push(Change::Create(new_task(key)));
                }
            }
        }
    }
    retire_replaced(service, slots, &mut changes);
    status.last_batch_at_ms = now_ms;
    set_status(status, &mut changes);
    changes
}

/// Shuts down old tasks in slots where the new task already runs.
fn retire_replaced(service: &Service, slots: &Slots, changes: &mut Vec<Change>) {
    for occ in slots.values() {
        let new_running = occ
            .iter()
            .any(|(_, t)| current(service, t) && running_since(t).is_some());
        if !new_running {
            continue;
        }
        for (v, t) in occ.iter().filter(|(_, t)| !current(service, t)) {
            if !changes
                .iter()
                .any(|c| matches!(c, Change::Update(_, x) if x.id == t.id))
            {
                changes.push(shutdown(*v, t, "replaced by the service update"));
            }
        }
    }
}
