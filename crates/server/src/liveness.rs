//! Worker liveness, held in the leader's memory (issue 18).
//!
//! A heartbeat is not a log entry. The leader answers it once a read-index round that started
//! after the heartbeat arrived confirmed that it still leads, and once it has applied up to that
//! index; it then checks the registration in the applied state (`heartbeat_answer`, the rule
//! `apply` used for `Op::Heartbeat`) and notes, here, when it received the beat. Only decisions go
//! through Raft: registration, drain, and expiry, which stays conditional on the registration's
//! epoch and heartbeat sequence it was decided from.
//!
//! Why a worker's self-fencing still holds (docs/design-notes.md, "Worker liveness"): an
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

/// The heartbeat interval workers are asked for and the silence after which the leader declares
/// one down, for a registry of `n` workers. With `per_second_max` 0 they are fixed (the worker's
/// own interval, `timeout_ms`); otherwise both grow by the factor that keeps a fleet beating at the
/// reference interval under `per_second_max` heartbeats a second (Nomad scales its clients' TTL
/// the same way): one heartbeat costs the leader a gRPC call (~40 us on this hardware), and
/// 10,000 workers at 500 ms would be 20,000 calls a second.
///
/// Why a timeout told to a worker is never undercut (with the same policy on every replica): `n`
/// counts registrations, live or down, and no command removes one, so it never decreases along
/// the log. Only the leader tells terms (`worker_service.rs`; a follower forwarding a beat tells
/// none, and its registration answers are unscaled), read from its applied state before the
/// beat is answered. Its own later expiry scans read a later state. A later leader scans only after
/// applying up to a read index taken when it began to lead (`leader_loop.rs`), which covers every
/// entry the earlier leader had applied, because `beat` answers only at or after a read index.
/// (If a command ever removes registrations, this argument must be redone: keep the largest count.
/// `recover --force-new-cluster` can lose registrations: docs/operations.md says what to wait.)
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatPolicy {
    /// The unscaled timeout (`--heartbeat-timeout-ms`).
    pub timeout_ms: u64,
    /// Heartbeats a second the fleet is held under (`--heartbeats-per-second-max`); 0: no scaling.
    pub per_second_max: u64,
}

/// The worker interval the scale is reckoned from: the worker's default (`raftsched worker
/// --heartbeat-interval-ms`), two beats a second.
pub const WORKER_HEARTBEAT_INTERVAL_MS_REFERENCE: u64 = 500;

impl HeartbeatPolicy {
    /// 1 up to `per_second_max / 2` workers, then the registry's heartbeats at the reference
    /// interval over `per_second_max`, rounded up.
    pub fn scale(&self, n_workers: usize) -> u64 {
        if self.per_second_max == 0 {
            return 1;
        }
        let beats_per_s = n_workers as u64 * (1000 / WORKER_HEARTBEAT_INTERVAL_MS_REFERENCE);
        beats_per_s.div_ceil(self.per_second_max).max(1)
    }

    /// What a worker is told: (least interval, 0 when unscaled: its own stands; timeout), in ms.
    pub fn terms(&self, n_workers: usize) -> (u64, u64) {
        let scale = self.scale(n_workers);
        let interval_ms = if scale == 1 { 0 } else { WORKER_HEARTBEAT_INTERVAL_MS_REFERENCE * scale };
        (interval_ms, self.timeout_ms.saturating_mul(scale))
    }
}

/// Worker id -> (epoch, when the leader received its last acknowledged beat, wall-clock ms).
pub(crate) type BeatTimes = HashMap<String, (u64, u64)>;

/// The later of the state's `last_heartbeat_ms` (beats logged by an older build's leader, or the
/// registration) and the leader's in-memory beat of the same registration.
pub(crate) fn last_heartbeat_ms(node: &raftsched_state::Worker, beats: &BeatTimes) -> u64 {
    let beat = beats.get(&node.id).filter(|(epoch, _)| *epoch == node.epoch).map_or(0, |(_, at)| *at);
    node.last_heartbeat_ms.max(beat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn terms_grow_with_the_fleet_only_when_capped_and_never_shrink_as_it_grows() {
        let fixed = HeartbeatPolicy { timeout_ms: 3_000, per_second_max: 0 };
        assert_eq!(fixed.terms(10_000), (0, 3_000));
        let capped = HeartbeatPolicy { timeout_ms: 3_000, per_second_max: 2_000 };
        assert_eq!(capped.terms(0), (0, 3_000));
        assert_eq!(capped.terms(1_000), (0, 3_000));
        assert_eq!(capped.terms(1_001), (1_000, 6_000));
        assert_eq!(capped.terms(10_000), (5_000, 30_000));
        let mut last = 0;
        for n in 0..=raftsched_state::limits::WORKERS_MAX {
            let (interval_ms, timeout_ms) = capped.terms(n);
            assert!(timeout_ms >= last, "the timeout shrank at {n} workers");
            // The fleet stays under the cap at the interval it is told (the reference one if none).
            let interval_ms = if interval_ms == 0 { WORKER_HEARTBEAT_INTERVAL_MS_REFERENCE } else { interval_ms };
            assert!(n as u64 * 1000 / interval_ms <= 2_000, "{n} workers beat too often");
            last = timeout_ms;
        }
    }

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
