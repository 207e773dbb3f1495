//! Concurrency keys (`submit --concurrency-key K --concurrency-limit N`): a task with key K is
//! assigned only while fewer than N tasks with key K are held (assigned or running), across the
//! cluster. Decided in `apply` (the plan skips such tasks, and `assign_one` refuses them), so it
//! holds across leader changes. A held attempt stops counting only when it ends; a worker's
//! attempts end as lost only when it is declared down, which the leader does only after the
//! worker's self-fencing lease has surely expired, so an attempt on a vanished worker counts until
//! it can no longer be running.
//!
//! Proposed only from cluster version `CONCURRENCY_VERSION` (format 7, which carries each task's
//! `Concurrency` beside the state in snapshots and `Op::SubmitWith` in the log). Each task is
//! checked against its own limit: tasks of one key are meant to share one limit (`keys` shows the
//! newest task's).

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::spec::TaskId;

/// The cluster version from which `Op::SubmitWith` (concurrency keys) is proposed: format 7.
pub const CONCURRENCY_VERSION: u32 = 7;
/// The cluster version from which `Op::CreateScheduleWith` (schedules whose tasks get a
/// concurrency key) is proposed: format 9.
pub const SCHEDULE_CONCURRENCY_VERSION: u32 = 9;

/// A task's concurrency key and the most tasks with that key it may run beside (itself included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    pub key: String,
    pub limit: u32,
}

impl Concurrency {
    pub fn validate(&self) -> Result<(), String> {
        if self.key.is_empty() || self.key.len() > limits::CONCURRENCY_KEY_BYTES_MAX {
            return Err(format!(
                "a concurrency key must be 1 to {} bytes (concurrency_key_bytes_max)",
                limits::CONCURRENCY_KEY_BYTES_MAX
            ));
        }
        if self.limit == 0 || self.limit > limits::CONCURRENCY_LIMIT_MAX {
            return Err(format!(
                "a concurrency limit must be 1 to {} (concurrency_limit_max)",
                limits::CONCURRENCY_LIMIT_MAX
            ));
        }
        Ok(())
    }
}

/// How a concurrency key is used now, over the tasks that have not ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyUse {
    /// Tasks with the key held by a worker (assigned or running).
    pub held: u32,
    /// Tasks with the key not yet held (waiting, scheduled, pending).
    pub queued: u32,
    /// The limit of the newest such task.
    pub limit: u32,
    pub(crate) newest: TaskId,
}
