//! The worker registry's record. (In this crate a worker is always called a worker; "node" in
//! openraft and the store means a replica.)

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::task::TaskId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    Ready,
    /// Gets no new tasks; its running tasks finish.
    Draining,
    /// Declared dead by the leader; its tasks went back to pending.
    Down,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Down => "down",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub id: String,
    pub addr: String,
    pub slots: u32,
    pub labels: BTreeMap<String, String>,
    pub state: WorkerState,
    /// Bumped each time the worker registers (a new process, or the same one after being down).
    pub epoch: u64,
    /// Random per worker process: tells a restarted or second process from the registered one.
    pub instance: u64,
    /// Leader time of the last heartbeat applied.
    pub last_heartbeat_ms: u64,
    /// Heartbeats applied for this epoch; the expiry command names the one it was decided from.
    pub heartbeat_seq: u64,
    /// Tasks this worker holds now (assigned or running).
    pub held: BTreeSet<TaskId>,
}

impl Worker {
    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.held.len() as u32)
    }

    /// Whether the worker offers every label in `constraints`.
    pub fn satisfies(&self, constraints: &BTreeMap<String, String>) -> bool {
        constraints.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// Checks a worker id against its bounds.
pub fn validate_worker_id(worker_id: &str) -> Result<(), String> {
    if worker_id.is_empty() || worker_id.len() > limits::WORKER_ID_BYTES_MAX || worker_id.contains('\0') {
        return Err(format!("worker id must be 1..={} bytes without NUL", limits::WORKER_ID_BYTES_MAX));
    }
    Ok(())
}
