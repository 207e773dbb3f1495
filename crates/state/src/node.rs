//! The worker registry's record. Workers arrive in a later issue; the type is here so the state
//! machine's shape (and snapshot format) already has room for them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    Ready,
    Down,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub addr: String,
    pub slots: u32,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    /// Bumped each time a worker with this id registers again (a restart).
    pub epoch: u64,
    pub last_heartbeat_ms: u64,
}
