//! The worker registry's record.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::task::TaskId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    Ready,
    /// Gets no new tasks; its running tasks finish.
    Draining,
    /// Declared dead by the leader; its tasks went back to pending.
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Down => "down",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub addr: String,
    pub slots: u32,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
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

impl Node {
    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.held.len() as u32)
    }

    /// Whether the worker offers every label in `constraints`.
    pub fn satisfies(&self, constraints: &BTreeMap<String, String>) -> bool {
        constraints.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}
