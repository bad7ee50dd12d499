//! Convergence of a service after `create|update|scale|rollback`: polls the
//! service and its tasks until every desired task runs the current spec, and
//! draws live progress on a terminal (indicatif): an overall counter and, for
//! up to [`MAX_SLOT_LINES`] slots, one line per slot with its task's state.
//! Fails with the tasks' own reason when the service stops making progress.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{ListTasksRequest, ServiceRef};
use swarmlet_proto::objects::{ServiceMode, Task, TaskState, UpdateState};
use tonic::transport::Channel;

use crate::output::status;

/// Services with more slots show only the overall counter (as Docker does).
const MAX_SLOT_LINES: usize = 20;
/// No new running task for this long: the service cannot converge.
const STALL: Duration = Duration::from_secs(15);

/// What a terminal shows while waiting.
struct Display {
    multi: MultiProgress,
    overall: ProgressBar,
    slots: BTreeMap<String, ProgressBar>,
}

impl Display {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("overall progress: {pos} out of {len} tasks {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Display {
            multi,
            overall,
            slots: BTreeMap::new(),
        }
    }

    fn show(&mut self, running: u64, desired: u64, tasks: &[&Task]) {
        self.overall.set_length(desired);
        self.overall.set_position(running.min(desired));
        if tasks.len() > MAX_SLOT_LINES {
            return;
        }
        for t in tasks {
            let key = if t.slot > 0 {
                format!("{:>4}", t.slot)
            } else {
                t.node_id.chars().take(12).collect()
            };
            let bar = self.slots.entry(key.clone()).or_insert_with(|| {
                let b = self.multi.insert_before(&self.overall, ProgressBar::new(1));
                b.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.set_prefix(key);
                b
            });
            let state = t
                .status
                .as_ref()
                .map(|s| swarmlet_common::task_state::state_name(s.state()))
                .unwrap_or("new");
            let err = t.status.as_ref().map(|s| s.err.as_str()).unwrap_or("");
            bar.set_message(if err.is_empty() {
                state.to_string()
            } else {
                format!("{state}: {err}")
            });
        }
    }

    fn finish(&self, message: &str) {
        self.overall.finish_with_message(message.to_string());
        for b in self.slots.values() {
            b.finish();
        }
    }
}

/// Waits until the service runs its desired tasks on the current spec.
pub async fn converge(
    client: &mut ControlClient<Channel>,
    service: &str,
    expect_rollback: bool,
) -> anyhow::Result<()> {
    let mut last_progress = Instant::now();
    let mut best = None;
    let mut display = Display::new();
    loop {
        let info = client
            .inspect_service(ServiceRef {
                service: service.into(),
            })
            .await
            .map_err(status)?
            .into_inner();
        let tasks = client
            .list_tasks(ListTasksRequest {
                service: service.into(),
                node: String::new(),
            })
            .await
            .map_err(status)?
            .into_inner()
            .tasks;
        let wanted: Vec<&Task> = tasks
            .iter()
            .filter_map(|t| t.task.as_ref())
            .filter(|t| t.desired_state() == TaskState::Running)
            .collect();
        let spec_mode = info.spec.as_ref().map(|s| s.mode());
        let job = matches!(
            spec_mode,
            Some(ServiceMode::ReplicatedJob | ServiceMode::GlobalJob)
        );
        if job {
            let name = info.spec.as_ref().map_or(service, |s| s.name.as_str());
            // A job is done when every task of this run completed; it failed
            // when a task failed for good and nothing runs any more.
            let (done, failed) = (info.jobs_completed, info.jobs_failed);
            let current: Vec<&Task> = wanted
                .iter()
                .copied()
                .filter(|t| t.service_version >= info.spec_version)
                .collect();
            display.show(done, info.replicas_desired, &current);
            let active = current
                .iter()
                .filter(|t| {
                    t.status
                        .as_ref()
                        .is_some_and(|s| s.state < TaskState::Complete as i32)
                })
                .count();
            if info.replicas_desired > 0 && done == info.replicas_desired {
                display.finish("- job complete");
                return Ok(());
            }
            if failed > 0 && active == 0 {
                let reason = current
                    .iter()
                    .filter_map(|t| t.status.as_ref())
                    .map(|s| s.err.clone())
                    .find(|e| !e.is_empty())
                    .unwrap_or_else(|| "a task failed".into());
                display.finish("- job failed");
                bail!("job {name} failed: {failed} task(s) failed: {reason}");
            }
            if best != Some(done) {
                best = Some(done);
                last_progress = Instant::now();
            }
            // A job's tasks may run long: only a job that never starts stalls.
            if active == 0 && last_progress.elapsed() > STALL {
                display.finish("- not converging");
                bail!("job {name} does not progress: no task runs");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let running = info.replicas_running;
        let desired = info.replicas_desired;
        display.show(running, desired, &wanted);
        let update = info.update_status.clone().unwrap_or_default();
        match update.state() {
            UpdateState::Paused | UpdateState::RollbackPaused => {
                display.finish("paused");
                bail!("service {service}: {}", update.message);
            }
            UpdateState::RollbackCompleted if !expect_rollback => {
                display.finish("rolled back");
                bail!("service {service} was rolled back: {}", update.message);
            }
            _ => {}
        }
        let updating = matches!(
            update.state(),
            UpdateState::Updating | UpdateState::RollbackStarted
        );
        let all_current = wanted
            .iter()
            .all(|t| t.service_version >= info.spec_version);
        if running == desired && wanted.len() as u64 == desired && all_current && !updating {
            display.finish("- converged");
            return Ok(());
        }
        if best != Some(running) {
            best = Some(running);
            last_progress = Instant::now();
        }
        if last_progress.elapsed() > STALL {
            let reason = wanted
                .iter()
                .filter_map(|t| t.status.as_ref())
                .map(|s| s.err.clone())
                .find(|e| !e.is_empty())
                .unwrap_or_else(|| "tasks did not reach running".into());
            display.finish("- not converging");
            bail!("service {service} did not converge: {reason}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
