//! What `apply` observed, for the host's metrics: attempts and tasks ended by outcome, and how long
//! tasks waited to be assigned. Not state: equal whatever it holds, never encoded, of fixed size,
//! and never read by `apply`. Every replica applies the same entries, so every replica counts the
//! same (from the state it loaded at start; a snapshot installed later keeps the counts).

use crate::task::{Outcome, TaskState};

/// Upper bounds (ms, inclusive) of the queue-wait histogram's buckets; one more bucket counts the
/// waits above the last.
pub const QUEUE_WAIT_BUCKETS_MS: [u64; 14] =
    [1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 60_000, 600_000, 3_600_000];

/// The attempt outcomes in `Observed::attempts_ended` order.
pub const OUTCOME_NAMES: [&str; 5] = ["succeeded", "failed", "timed_out", "lost", "cancelled"];
/// The final task states in `Observed::tasks_ended` order.
pub const FINAL_STATE_NAMES: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

#[derive(Clone, Default)]
pub struct Observed {
    /// Attempts ended, by outcome (`OUTCOME_NAMES`).
    pub attempts_ended: [u64; 5],
    /// Tasks that reached a final state, by state (`FINAL_STATE_NAMES`).
    pub tasks_ended: [u64; 4],
    /// Assignments by queue wait: from the time the task could first run (created, its run-at
    /// time, its retry backoff, its previous attempt's end: the latest) to the assignment, in the
    /// state's time. Per bucket (`QUEUE_WAIT_BUCKETS_MS`, then the rest), not cumulative.
    pub queue_wait_buckets: [u64; 15],
    pub queue_wait_sum_ms: u64,
}

impl Observed {
    pub(crate) fn attempt_ended(&mut self, outcome: Outcome) {
        let i = match outcome {
            Outcome::Succeeded => 0,
            Outcome::Failed { .. } => 1,
            Outcome::TimedOut => 2,
            Outcome::Lost => 3,
            Outcome::Cancelled => 4,
        };
        self.attempts_ended[i] += 1;
    }

    pub(crate) fn task_ended(&mut self, state: TaskState) {
        let i = match state {
            TaskState::Succeeded => 0,
            TaskState::Failed => 1,
            TaskState::Cancelled => 2,
            TaskState::Skipped => 3,
            _ => return,
        };
        self.tasks_ended[i] += 1;
    }

    pub(crate) fn assigned_after(&mut self, wait_ms: u64) {
        let i = QUEUE_WAIT_BUCKETS_MS.iter().position(|&le| wait_ms <= le).unwrap_or(QUEUE_WAIT_BUCKETS_MS.len());
        self.queue_wait_buckets[i] += 1;
        self.queue_wait_sum_ms = self.queue_wait_sum_ms.saturating_add(wait_ms);
    }
}
