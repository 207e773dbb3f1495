//! Dependencies between tasks (`submit --after`): a task waits in `waiting` until every task it
//! names has ended, then becomes pending (or scheduled, if its run-at time is still ahead), or
//! ends `skipped` when a dependency it needed to succeed did not, and so, in turn, do the tasks
//! waiting on it (a cascade through `dependents`, bounded by the tasks there are: each task ends
//! once).
//!
//! Decided in `apply`: the dependencies must exist when the submit applies (ids, or idempotency
//! keys resolved there); each task names at most `DEPENDENCIES_PER_TASK_MAX`; at most
//! `TASKS_WAITING_MAX` tasks wait at once. A dependency that has already ended counts at once.
//! Proposed only from cluster version `AFTER_VERSION` (format 6, which carries `After` beside the
//! state in snapshots and `Op::SubmitAfter` in the log).

use serde::{Deserialize, Serialize};

use crate::spec::TaskId;

/// The cluster version from which `Op::SubmitAfter` is proposed: format 6.
pub const AFTER_VERSION: u32 = 6;

/// When a dependency lets its dependents go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AfterPolicy {
    /// Once it succeeded; its failure, cancellation or skip skips the dependent.
    Success,
    /// Once it ended, whatever the outcome.
    Finished,
}

impl AfterPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterPolicy::Success => "success",
            AfterPolicy::Finished => "finished",
        }
    }

    pub fn parse(text: &str) -> Option<AfterPolicy> {
        [AfterPolicy::Success, AfterPolicy::Finished].into_iter().find(|p| p.as_str() == text)
    }
}

/// What a submit waits for: task ids and idempotency keys (resolved in `apply`), and the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterSpec {
    pub ids: Vec<TaskId>,
    pub keys: Vec<String>,
    pub policy: AfterPolicy,
}

/// What a task waits for, as recorded with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct After {
    /// Every dependency, in id order, without repeats.
    pub ids: Vec<TaskId>,
    pub policy: AfterPolicy,
    /// The dependencies that have not ended yet (a subset of `ids`); empty once released.
    pub left: Vec<TaskId>,
    /// The dependency whose outcome skipped this task.
    pub skipped_by: Option<TaskId>,
}
