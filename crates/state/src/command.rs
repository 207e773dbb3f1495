//! Commands the leader proposes through Raft, and what `apply` answers.

use serde::{Deserialize, Serialize};

use crate::spec::TaskSpec;
use crate::task::{TaskId, TaskState};

/// One replicated command. `now_ms` is the proposing leader's wall clock when it proposed: the only
/// way time enters the state machine, so every replica computes the same timestamps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub now_ms: u64,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a task unless `key` already names one. Same key + same spec: the existing id.
    /// Same key + different spec: `Rejection::KeyConflict`.
    Submit { key: String, spec: TaskSpec },
    /// Cancel a pending task. Cancelling a cancelled task succeeds again (idempotent).
    Cancel { id: TaskId },
}

impl Op {
    /// Whether this op only makes sense once per intent; used by the edge for logging.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Submit { .. } => "submit",
            Op::Cancel { .. } => "cancel",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `created` is false when the key already named this task (a retry).
    Submitted {
        id: TaskId,
        created: bool,
    },
    Cancelled {
        id: TaskId,
    },
    /// The answer for Raft's own entries (blank, membership), which carry no command.
    Noop,
    Rejected(Rejection),
}

/// Why `apply` refused a command. Refusals change nothing in the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("idempotency key {key:?} already names task {existing_id} with a different spec")]
    KeyConflict { key: String, existing_id: TaskId },
    #[error("no task with id {id}")]
    NotFound { id: TaskId },
    #[error("task {id} is {} and cannot be cancelled (only pending tasks can)", state.as_str())]
    NotCancellable { id: TaskId, state: TaskState },
    #[error("{count} tasks pending, at tasks_pending_max {limit}")]
    TooManyPending { count: usize, limit: usize },
    #[error("{count} tasks held, at tasks_total_max {limit}")]
    TooManyTasks { count: usize, limit: usize },
    #[error("invalid request: {reason}")]
    Invalid { reason: String },
}
