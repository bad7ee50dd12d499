//! What a task controller does next, decided without side effects.
//!
//! A controller advances its task one step at a time (as swarmkit's
//! `exec.Do`): from what it has seen of the task ([`Observed`]: the last
//! state it reported, whether it holds a container) and the task's desired
//! state, [`next_step`] names one [`Action`]; the controller performs it
//! through the executor, reports the state it reached, and asks again. A
//! step interrupted because the task is to stop reports nothing; the next
//! question then answers [`Action::Stop`].

use swarmlet_common::task_state::is_terminal;
use swarmlet_proto::objects::TaskState;

/// What a controller has seen of its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The last state reported (for a new task, the managers' `assigned`;
    /// for one this node ran before this process, the managers' view).
    pub state: TaskState,
    /// Whether the task has a container on this node (created or adopted).
    pub container: bool,
    /// The task ran on this node before this process started, and its
    /// container has not been looked for yet.
    pub adopting: bool,
}

impl Observed {
    /// A task new to this node.
    pub fn fresh() -> Self {
        Observed {
            state: TaskState::Assigned,
            container: false,
            adopting: false,
        }
    }

    /// A task this node ran before it restarted, last seen in `state`.
    pub fn adopted(state: TaskState) -> Self {
        Observed {
            state,
            container: false,
            adopting: true,
        }
    }
}

/// One step of a task's life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look for the container left by the previous process: `running`
    /// again, or `failed` when it is gone.
    Adopt,
    /// Take the task on: `accepted`.
    Accept,
    /// Announce the preparation: `preparing`.
    BeginPreparing,
    /// Write its secrets and configs and create its container: `starting`,
    /// or `rejected`.
    Prepare,
    /// Plug the container into its networks, start it and wait until it is
    /// ready: `running`, `rejected` or `failed`.
    Start,
    /// Wait until the container exits: `complete` or `failed`.
    Wait,
    /// Stop and remove the container: `shutdown`.
    Stop,
    /// The task is to stop before it had a container: `shutdown`.
    ShutdownUnstarted,
    /// The task has ended; nothing more to do.
    Done,
}

/// The next step for a task seen as `seen` whose desired state is `desired`.
pub fn next_step(desired: TaskState, seen: &Observed) -> Action {
    if is_terminal(seen.state) {
        return Action::Done;
    }
    if seen.adopting {
        return Action::Adopt;
    }
    if desired > TaskState::Running {
        return if seen.container {
            Action::Stop
        } else {
            Action::ShutdownUnstarted
        };
    }
    match seen.state {
        s if s < TaskState::Accepted => Action::Accept,
        TaskState::Accepted => Action::BeginPreparing,
        _ if !seen.container => Action::Prepare,
        TaskState::Preparing | TaskState::Starting => Action::Start,
        _ => Action::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    fn seen(state: TaskState, container: bool) -> Observed {
        Observed {
            state,
            container,
            adopting: false,
        }
    }

    #[test]
    fn a_new_task_goes_through_every_state_in_order() {
        let steps = [
            (seen(Assigned, false), Action::Accept),
            (seen(Accepted, false), Action::BeginPreparing),
            (seen(Preparing, false), Action::Prepare),
            (seen(Starting, true), Action::Start),
            (seen(Running, true), Action::Wait),
        ];
        for (s, want) in steps {
            assert_eq!(next_step(Running, &s), want, "from {s:?}");
        }
    }

    #[test]
    fn an_ended_task_has_nothing_left_to_do_whatever_is_desired() {
        for state in [Complete, Shutdown, Failed, Rejected] {
            for desired in [Running, Shutdown, Remove] {
                assert_eq!(next_step(desired, &seen(state, true)), Action::Done);
            }
        }
    }

    #[test]
    fn a_stop_before_the_container_exists_only_reports() {
        for state in [Assigned, Accepted, Preparing] {
            assert_eq!(
                next_step(Shutdown, &seen(state, false)),
                Action::ShutdownUnstarted
            );
        }
        assert_eq!(
            next_step(Remove, &Observed::fresh()),
            Action::ShutdownUnstarted
        );
    }

    #[test]
    fn a_stop_with_a_container_stops_it() {
        for state in [Starting, Running] {
            assert_eq!(next_step(Shutdown, &seen(state, true)), Action::Stop);
            assert_eq!(next_step(Remove, &seen(state, true)), Action::Stop);
        }
    }

    #[test]
    fn an_adopted_task_looks_for_its_container_first_even_when_it_is_to_stop() {
        for desired in [Running, Shutdown] {
            assert_eq!(
                next_step(desired, &Observed::adopted(Running)),
                Action::Adopt
            );
        }
        // Found: it runs on (or is stopped) like any other.
        assert_eq!(next_step(Running, &seen(Running, true)), Action::Wait);
        assert_eq!(next_step(Shutdown, &seen(Running, true)), Action::Stop);
    }
}
