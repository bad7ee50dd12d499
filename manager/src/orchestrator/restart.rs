//! The restart policy: whether a task that ended is replaced, and when.

use swarmlet_proto::objects::{RestartCondition, RestartPolicy, Task, TaskState};

/// What to do with a slot whose task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start a replacement (its attempt count, window start, earliest start).
    Restart {
        /// Restarts of the slot including this one.
        attempt: u64,
        /// Start of the current counting window.
        window_start_ms: i64,
        /// The replacement does not start before this time.
        not_before_ms: i64,
    },
    /// Leave the slot with its ended task.
    Stay,
}

/// Decides for `task`, which ended in `state`, at `now_ms`.
pub fn decide(
    policy: &RestartPolicy,
    task: &Task,
    state: TaskState,
    now_ms: i64,
) -> RestartDecision {
    let wanted = match policy.condition() {
        RestartCondition::Any => true,
        RestartCondition::None => false,
        RestartCondition::OnFailure => matches!(state, TaskState::Failed | TaskState::Rejected),
    };
    if !wanted {
        return RestartDecision::Stay;
    }
    let mut attempt = task.attempt;
    let mut window_start_ms = task.attempts_window_start_ms;
    let window = i64::try_from(policy.window_ms).unwrap_or(i64::MAX);
    if window_start_ms == 0 || (window > 0 && now_ms - window_start_ms > window) {
        attempt = 0;
        window_start_ms = now_ms;
    }
    if policy.max_attempts > 0 && attempt >= policy.max_attempts {
        return RestartDecision::Stay;
    }
    RestartDecision::Restart {
        attempt: attempt + 1,
        window_start_ms,
        not_before_ms: now_ms + i64::try_from(policy.delay_ms).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(condition: RestartCondition, max_attempts: u64, window_ms: u64) -> RestartPolicy {
        let mut p = RestartPolicy {
            delay_ms: 100,
            max_attempts,
            window_ms,
            ..Default::default()
        };
        p.set_condition(condition);
        p
    }

    #[test]
    fn conditions() {
        let t = Task::default();
        assert_eq!(
            decide(
                &policy(RestartCondition::None, 0, 0),
                &t,
                TaskState::Failed,
                1000
            ),
            RestartDecision::Stay
        );
        assert_eq!(
            decide(
                &policy(RestartCondition::OnFailure, 0, 0),
                &t,
                TaskState::Complete,
                1000
            ),
            RestartDecision::Stay
        );
        assert_eq!(
            decide(
                &policy(RestartCondition::OnFailure, 0, 0),
                &t,
                TaskState::Failed,
                1000
            ),
            RestartDecision::Restart {
                attempt: 1,
                window_start_ms: 1000,
                not_before_ms: 1100
            }
        );
    }

    #[test]
    fn attempts_within_a_window() {
        let p = policy(RestartCondition::Any, 2, 10_000);
        let mut t = Task::default();
        let mut now = 1_000;
        for expected in 1..=2 {
            match decide(&p, &t, TaskState::Failed, now) {
                RestartDecision::Restart {
                    attempt,
                    window_start_ms,
                    ..
                } => {
                    assert_eq!(attempt, expected);
                    t.attempt = attempt;
                    t.attempts_window_start_ms = window_start_ms;
                }
                RestartDecision::Stay => panic!("attempt {expected} allowed"),
            }
            now += 1_000;
        }
        assert_eq!(
            decide(&p, &t, TaskState::Failed, now),
            RestartDecision::Stay,
            "max attempts reached"
        );
        // After the window, counting starts over.
        assert!(matches!(
            decide(&p, &t, TaskState::Failed, now + 20_000),
            RestartDecision::Restart { attempt: 1, .. }
        ));
    }
}
