//! Whether this replica is in touch with a quorum: check-quorum for a leader, reachability for a
//! replica that looks for one. Both feed the write and read paths (a fast UNAVAILABLE that names
//! the missing quorum instead of a timeout) and health (`health.rs`).
//!
//! A leader counts a voter as in touch from when it *sent* a request that the voter answered in
//! the leader's term (any answer: success, conflict). It has a quorum while a majority of the
//! voters (itself included) were in touch within `election_timeout_ms_max`; a leader that has not
//! has lost it: it refuses client writes and reads at once, and, as Raft's check-quorum asks,
//! stops acting as leader (openraft 0.9 cannot step down by itself; the replica stops using its
//! leadership until a quorum answers again or a higher term deposes it).

use raftsched_store::NodeId;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::time::Instant;

/// The time from which a majority of `n_voters` was in touch, given when each *other* voter last
/// answered (ms on some monotonic scale); the leader itself counts as always in touch (`now_ms`).
pub fn quorum_since_ms(others_ms: &[u64], n_voters: usize, now_ms: u64) -> Option<u64> {
    let others_needed = (n_voters / 2 + 1).saturating_sub(1);
    if others_needed == 0 {
        return Some(now_ms);
    }
    let mut sorted = others_ms.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.get(others_needed - 1).copied()
}

/// Whether a leader that has led since `leading_since_ms` still has a quorum at `now_ms`.
pub fn leader_has_quorum(now_ms: u64, leading_since_ms: u64, quorum_since_ms: Option<u64>, window_ms: u64) -> bool {
    let since = quorum_since_ms.unwrap_or(0).max(leading_since_ms);
    now_ms.saturating_sub(since) <= window_ms
}

/// What this replica knows of its quorum, shared by the network (which records answers), the
/// election driver (which records what its pre-votes reached) and the request paths.
pub struct Quorum {
    base: Instant,
    answered_ms: Mutex<BTreeMap<NodeId, u64>>,
    /// Set while this replica finds no quorum: why, for errors and health, and since when.
    lost: Mutex<Option<(String, u64)>>,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum { base: Instant::now(), answered_ms: Mutex::default(), lost: Mutex::default() }
    }
}

impl Quorum {
    pub fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    pub fn at_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// `peer` answered, in this replica's term, a request sent at `sent`.
    pub fn answered(&self, peer: NodeId, sent: Instant) {
        let ms = self.at_ms(sent);
        let mut answered = self.answered_ms.lock().unwrap_or_else(|p| p.into_inner());
        let entry = answered.entry(peer).or_insert(0);
        *entry = (*entry).max(ms);
    }

    /// When each of `peers` last answered (0: never).
    pub fn answers(&self, peers: impl Iterator<Item = NodeId>) -> Vec<u64> {
        let answered = self.answered_ms.lock().unwrap_or_else(|p| p.into_inner());
        peers.map(|p| answered.get(&p).copied().unwrap_or(0)).collect()
    }

    pub fn set_lost(&self, why: Option<String>) {
        let now_ms = self.now_ms();
        *self.lost.lock().unwrap_or_else(|p| p.into_inner()) = why.map(|w| (w, now_ms));
    }

    /// Why this replica has no quorum, if it knows it has none, and since when (`now_ms` scale).
    pub fn lost(&self) -> Option<(String, u64)> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trio_needs_one_other_and_a_five_two() {
        assert_eq!(quorum_since_ms(&[100, 40], 3, 500), Some(100));
        assert_eq!(quorum_since_ms(&[0, 0], 3, 500), Some(0));
        assert_eq!(quorum_since_ms(&[100, 40, 90, 10], 5, 500), Some(90));
        assert_eq!(quorum_since_ms(&[100], 5, 500), None);
        assert_eq!(quorum_since_ms(&[], 1, 500), Some(500));
    }

    #[test]
    fn a_leader_keeps_its_quorum_for_one_window_after_the_last_answer() {
        // Led since 1,000; the last majority answer was sent at 2,000; window 300 ms.
        assert!(leader_has_quorum(2_300, 1_000, Some(2_000), 300));
        assert!(!leader_has_quorum(2_301, 1_000, Some(2_000), 300));
        // A new leader gets a whole window before anyone must have answered.
        assert!(leader_has_quorum(1_250, 1_000, None, 300));
        assert!(!leader_has_quorum(1_301, 1_000, Some(10), 300));
    }
}
