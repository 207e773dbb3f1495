//! Worker liveness, held in the leader's memory (issue 18).
//!
//! A heartbeat is not a log entry. The leader answers it once a read-index round that started
//! after the heartbeat arrived confirmed that it still leads, and once it has applied up to that
//! index; it then checks the registration in the applied state (`heartbeat_answer`, the rule
//! `apply` used for `Op::Heartbeat`) and notes, here, when it received the beat. Only decisions go
//! through Raft: registration, drain, and expiry, which stays conditional on the registration's
//! epoch and heartbeat sequence it was decided from.
//!
//! Why a worker's self-fencing still holds (docs/architecture.md, "Worker liveness"): an
//! acknowledged beat was confirmed by a quorum after it was sent, so any leader elected later
//! started its timers after the beat was sent, and expires the worker no sooner than
//! `heartbeat_timeout_ms` after that, while the worker's lease (at most two thirds of it) counts
//! from the sending. The leader that acknowledged the beat counts from its receipt, later still. A
//! new leader answers beats only after applying its own first entry, so an expiry proposed by an
//! earlier leader and committed under the new one is applied before any beat of that
//! registration is acknowledged again (it is then refused as `WorkerNotCurrent`).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

/// The last acknowledged beat of one registration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Beat {
    pub epoch: u64,
    /// When this replica received it (monotonic): what expiry counts from.
    pub received: Instant,
    /// The same moment on this replica's wall clock: what `heartbeat_age_ms` shows.
    pub received_wall_ms: u64,
}

/// Beats by worker id. Entries are added only for registered workers (after `heartbeat_answer`)
/// and the leader loop drops those of workers no longer live, so it is bounded by `workers_max`.
#[derive(Default)]
pub(crate) struct Liveness {
    beats: Mutex<HashMap<String, Beat>>,
}

impl Liveness {
    pub(crate) fn record(&self, worker_id: &str, beat: Beat) {
        let mut beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        match beats.get_mut(worker_id) {
            Some(last) if last.epoch == beat.epoch && last.received >= beat.received => {}
            Some(last) => *last = beat,
            None => {
                beats.insert(worker_id.to_string(), beat);
            }
        }
    }

    /// Runs `f` over the beats (for the leader loop's scan, one lock for the whole fleet).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Beat>) -> R) -> R {
        f(&mut self.beats.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The last beat of `worker_id` at `epoch`, if this replica acknowledged one.
    #[cfg(test)]
    fn last(&self, worker_id: &str, epoch: u64) -> Option<Beat> {
        self.with(|beats| beats.get(worker_id).filter(|b| b.epoch == epoch).copied())
    }

    /// Every beat, as a follower asks for them (`Raft.Heartbeats`).
    pub(crate) fn to_api(&self) -> Vec<raftsched_api::WorkerBeat> {
        self.with(|beats| {
            beats
                .iter()
                .map(|(id, b)| raftsched_api::WorkerBeat {
                    id: id.clone(),
                    epoch: b.epoch,
                    received_ms: b.received_wall_ms,
                })
                .collect()
        })
    }
}

/// Worker id -> (epoch, when the leader received its last acknowledged beat, wall-clock ms).
pub(crate) type BeatTimes = HashMap<String, (u64, u64)>;

/// The later of the state's `last_heartbeat_ms` (beats logged by an older build's leader, or the
/// registration) and the leader's in-memory beat of the same registration.
pub(crate) fn last_heartbeat_ms(node: &raftsched_state::Node, beats: &BeatTimes) -> u64 {
    let beat = beats.get(&node.id).filter(|(epoch, _)| *epoch == node.epoch).map_or(0, |(_, at)| *at);
    node.last_heartbeat_ms.max(beat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_beat_replaces_an_older_one_and_a_new_epoch_replaces_any() {
        let liveness = Liveness::default();
        let t0 = Instant::now();
        let beat =
            |epoch, after_ms| Beat { epoch, received: t0 + Duration::from_millis(after_ms), received_wall_ms: 0 };
        liveness.record("w", beat(1, 10));
        liveness.record("w", beat(1, 5)); // answered out of order: the later receipt stays
        assert_eq!(liveness.last("w", 1).unwrap().received, t0 + Duration::from_millis(10));
        assert!(liveness.last("w", 2).is_none());
        liveness.record("w", beat(2, 1));
        assert!(liveness.last("w", 1).is_none());
        assert_eq!(liveness.last("w", 2).unwrap().received, t0 + Duration::from_millis(1));
    }
}
