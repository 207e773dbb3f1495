//! A task's replicated record and its life cycle.

use serde::{Deserialize, Serialize};

pub use crate::spec::TaskId;
use crate::spec::TaskSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Pending,
    Assigned,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Waiting for its `run_at_ms` (`submit --at`); becomes pending then. Last in the enum so the
    /// older states keep their encodings.
    Scheduled,
    /// Waiting for its dependencies (`submit --after`) to end; then pending (or scheduled), or
    /// skipped. From format 6, after the states before it.
    Waiting,
    /// Over for good without running: a dependency it needed to succeed did not (`After::skipped_by`).
    Skipped,
}

/// How many task states there are (`TaskState as usize` indexes arrays of this length).
pub const TASK_STATES: usize = 9;

impl TaskState {
    pub const ALL: [TaskState; TASK_STATES] = [
        TaskState::Waiting,
        TaskState::Scheduled,
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Scheduled => "scheduled",
            TaskState::Waiting => "waiting",
            TaskState::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Terminal states never change again; their result is recorded exactly once.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Skipped)
    }

    /// States in which a worker holds the task (and so an assignment with a fencing token exists).
    pub fn is_held(self) -> bool {
        matches!(self, TaskState::Assigned | TaskState::Running)
    }
}

/// Which worker holds a task, and the fencing token that proves it: the log index of the entry that
/// made the assignment. A report carrying any other token is stale and refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub worker_id: String,
    /// The worker registration (epoch) that holds the task.
    pub epoch: u64,
    pub token: u64,
    pub assigned_at_ms: u64,
}

/// How one attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    Failed {
        exit_code: i32,
    },
    TimedOut,
    /// The worker was declared down (or restarted) while holding the attempt.
    Lost,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Lost => "lost",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One assignment of a task to a worker, kept for the task's whole life so every attempt is
/// visible in `get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub worker_id: String,
    pub epoch: u64,
    pub token: u64,
    pub assigned_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub exit_code: i32,
    /// The last bytes of output, at most `limits::OUTPUT_TAIL_BYTES_MAX`: stdout's alone when
    /// `streams` is set, else both streams as the worker joined them (results before format 5).
    pub output_tail: String,
    /// Stderr's tail and each stream's length, from workers that keep them apart (recorded from
    /// cluster version `OUTPUT_APART_VERSION` on). Not in this type's own encoding, which every
    /// earlier format's snapshot body pins: the format layer carries it beside the state.
    #[serde(skip)]
    pub streams: Option<Box<Streams>>,
}

/// What a result keeps of an attempt's two output streams beyond stdout's tail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streams {
    /// The last bytes of stderr, at most `limits::OUTPUT_TAIL_BYTES_MAX`.
    pub stderr_tail: String,
    /// Bytes the attempt wrote to stdout in all (more than the tail's length: the tail was cut).
    pub stdout_bytes: u64,
    /// Bytes the attempt wrote to stderr in all.
    pub stderr_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub key: String,
    pub spec: TaskSpec,
    pub state: TaskState,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Every assignment so far, oldest first; at most `spec.max_attempts`.
    pub attempts: Vec<Attempt>,
    /// Set while a worker holds the task (assigned or running).
    pub assignment: Option<Assignment>,
    pub result: Option<TaskResult>,
    /// A retry is not dispatched before this time (backoff after a failed or lost attempt).
    pub not_before_ms: u64,
    /// Log index of the last change to this task; watchers wait for it to move.
    pub version: u64,
    /// The schedule occurrence that created this task, if a schedule did.
    pub origin: Option<Occurrence>,
    /// What it waits for (`submit --after`). Not in this type's own encoding, which every earlier
    /// format's snapshot body pins: the format layer carries it beside the state from format 6 on.
    #[serde(skip)]
    pub after: Option<Box<crate::after::After>>,
    /// Its concurrency key (`submit --concurrency-key`): carried beside the state from format 7.
    #[serde(skip)]
    pub concurrency: Option<Box<crate::concurrency::Concurrency>>,
}

/// One occurrence of a schedule: at most one task is ever created for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    pub schedule: String,
    pub occurrence_ms: u64,
}

impl Task {
    /// Number of attempts made so far.
    pub fn attempt(&self) -> u32 {
        self.attempts.len() as u32
    }
}
