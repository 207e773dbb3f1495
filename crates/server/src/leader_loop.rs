//! The leader's scheduling loop: worker expiry, schedule timers (`timers.rs`) and dispatch.
//!
//! It runs on every replica but acts only while that replica leads, and stops acting the moment
//! it does not (each proposal goes through `Replica::propose_alone`, which refuses on a non-leader).
//! Every command it proposes is conditional on the state it was decided from (`ExpireWorker`
//! names the heartbeat it saw, `Assign` the attempt count and worker epoch), so a decision made by
//! a leader that was already deposed is refused by `apply` rather than applied twice.
//!
//! Time-dependent decisions (expiries, fires, releases, dispatch with its retry backoffs) are made
//! only while this leader's wall clock is within `clock_skew_ms_max` of the median of the voters'
//! clocks, as read in its own term (`ClockGate`, `clock.rs`); a leader beyond it for
//! `STEP_ASIDE_AFTER_MS` hands leadership to a voter that is within it.
//!
//! Liveness timers use this replica's monotonic clock only, started afresh when it becomes leader:
//! a worker is expired after `heartbeat_timeout` of silence *observed by this leader* (the beats it
//! acknowledged, `liveness.rs`, or logged ones an older build's leader applied), so a new leader
//! never expires everyone at once and never compares another replica's wall clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use raftsched_state::{Op, Response, WorkerState};
use raftsched_store::NodeId;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Verdict;
use crate::limits;
use crate::replica::Replica;

/// A leader whose clock is out of bounds this long hands leadership on (a few heartbeats of
/// readings, so one odd reading does not move leadership).
pub const STEP_ASIDE_AFTER_MS: u64 = 500;
/// Between two attempts to hand leadership on.
const STEP_ASIDE_RETRY_MS: u64 = 2_000;

/// What the leader's clock allows now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimeGate {
    /// Within bounds (or among builds that send no clock readings, which trust their own).
    Decide,
    /// No time-dependent decision now, for this reason.
    Hold(String),
    /// Out of bounds for long enough: hand leadership on.
    StepAside(i64),
}

/// Decides what the leader's clock allows, from its verdict over readings in its own term.
#[derive(Default)]
pub(crate) struct ClockGate {
    out_since_ms: Option<u64>,
}

impl ClockGate {
    /// `led_ms`: how long this replica has led; `readers`: voters other than it that ever sent a
    /// clock reading.
    pub fn gate(
        &mut self,
        now_ms: u64,
        led_ms: u64,
        verdict: Verdict,
        n_voters: usize,
        readers: usize,
        heartbeat_ms: u64,
    ) -> TimeGate {
        if readers + 1 < n_voters / 2 + 1 {
            self.out_since_ms = None;
            return TimeGate::Decide;
        }
        if led_ms < 2 * heartbeat_ms {
            return TimeGate::Hold("reading the followers' clocks".into());
        }
        match verdict {
            Verdict::InBounds(_) => {
                self.out_since_ms = None;
                TimeGate::Decide
            }
            Verdict::Unknown => TimeGate::Hold("too few fresh clock readings to tell the cluster's time".into()),
            Verdict::OutOfBounds(skew) => {
                let since = *self.out_since_ms.get_or_insert(now_ms);
                if now_ms - since >= STEP_ASIDE_AFTER_MS {
                    TimeGate::StepAside(skew)
                } else {
                    TimeGate::Hold(format!("this leader's clock is {skew} ms off the cluster's"))
                }
            }
        }
    }
}

/// The voter to hand leadership to: the one nearest the cluster's time among those within
/// `bound_ms`, given this leader's skew and the voters' clock offsets from it.
pub(crate) fn step_aside_target(own_skew_ms: i64, offsets: &[(NodeId, i64)], bound_ms: u64) -> Option<NodeId> {
    offsets
        .iter()
        .map(|(id, o)| (*id, (own_skew_ms + o).unsigned_abs()))
        .filter(|(_, skew)| *skew <= bound_ms)
        .min_by_key(|(id, skew)| (*skew, *id))
        .map(|(id, _)| id)
}

pub async fn run(replica: Arc<Replica>, mut stop: watch::Receiver<bool>) {
    let mut metrics = replica.raft.metrics();
    loop {
        // Wait to lead.
        let term = loop {
            let (state, term) = {
                let m = metrics.borrow_and_update();
                (m.state, m.current_term)
            };
            if state == ServerState::Leader {
                break term;
            }
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        };
        tracing::info!(id = replica.id, term, "leading: scheduling loop starts");
        lead(&replica, term, &mut stop).await;
        if *stop.borrow() {
            return;
        }
        tracing::info!(id = replica.id, term, "no longer leading: scheduling loop stops");
    }
}

/// Waits until this leader has applied up to a read index taken now, so that its first decisions
/// (expiries above all) read a state with every entry an earlier leader had applied: the heartbeat
/// terms that leader told were read from such a state (`liveness::HeartbeatPolicy`). False when
/// it stops leading (or is stopped) first.
async fn caught_up_as_leader(replica: &Replica, term: u64, stop: &mut watch::Receiver<bool>) -> bool {
    while still_leading(replica, term) {
        if let Ok(index) = replica.local_read_index().await {
            if replica.wait_applied(index).await.is_ok() {
                return true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(replica.timing.heartbeat_interval_ms)) => {}
            _ = stop.changed() => return false,
        }
    }
    false
}

fn still_leading(replica: &Replica, term: u64) -> bool {
    let metrics = replica.raft.metrics();
    let m = metrics.borrow();
    m.state == ServerState::Leader && m.current_term == term
}

async fn lead(replica: &Replica, term: u64, stop: &mut watch::Receiver<bool>) {
    if !caught_up_as_leader(replica, term, stop).await {
        return;
    }
    let mut silence = Silence::new();
    let mut applied = replica.sm.subscribe();
    let led_at = Instant::now();
    let mut clock = ClockGate::default();
    let mut held: Option<String> = None;
    let mut next_step_aside = led_at;
    while still_leading(replica, term) {
        applied.borrow_and_update();
        if !may_decide_time(replica, &mut clock, led_at, &mut held, &mut next_step_aside).await {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(replica.timing.heartbeat_interval_ms)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        if silence.expire_due(replica).await.is_err() || crate::timers::fire_due(replica).await.is_err() {
            return;
        }
        let keep = replica.retain_finished;
        if keep > 0 && replica.sm.read(|sm| sm.purge_due(keep)) {
            match replica.propose_alone(Op::PurgeFinished { keep }).await {
                Ok(Response::Purged { n_purged }) => tracing::debug!(n_purged, "finished tasks purged"),
                Ok(response) => tracing::warn!(?response, "purge not applied"),
                Err(_) => return,
            }
        }
        let cluster_now = replica.clocks.cluster_now_ms();
        let plan = replica.sm.read(|sm| sm.plan_assignments(cluster_now, limits::DISPATCH_BATCH_LEN_MAX));
        if !plan.is_empty() {
            match replica.propose_alone(Op::Assign { items: plan }).await {
                Ok(Response::Assigned { n_assigned, .. }) if n_assigned > 0 => continue,
                Ok(response) => tracing::debug!(?response, "no assignment applied"),
                Err(_) => return,
            }
        }
        // Sleep until something changes, a timer falls due, or the next expiry scan (at the first
        // worker's deadline, so an expiry is decided then rather than up to a tick later).
        // (At least 5 ms: an expiry the state machine refused must not turn this into a busy loop.)
        let timers = crate::timers::sleep_for(replica);
        let nap = silence.next_scan.saturating_duration_since(Instant::now()).min(timers).max(Duration::from_millis(5));
        tokio::select! {
            r = applied.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(nap) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How long each live worker has been silent, as this leader saw it in its term: from the later
/// of its last heartbeat this leader acknowledged (`liveness.rs`), the last change of its
/// registration's heartbeat sequence in the state (beats logged by an older build's leader), and
/// the start of the term (timers start afresh, so a new leader never expires everyone at once).
struct Silence {
    /// The timeout at the last scan: the policy's for the registry then (it only grows).
    timeout: Duration,
    /// Worker id -> ((epoch, heartbeat_seq) last seen, when this leader last heard from it).
    seen: HashMap<String, ((u64, u64), Instant)>,
    /// When to look again: the first worker's deadline, and at least every `LEADER_TICK_MS` (a
    /// new registration is timed from the scan that first sees it: later, never sooner).
    next_scan: Instant,
}

impl Silence {
    fn new() -> Self {
        Silence { timeout: Duration::ZERO, seen: HashMap::new(), next_scan: Instant::now() }
    }

    /// Proposes the expiry of every live worker silent for `timeout`, each conditional on the
    /// registration and heartbeat sequence it was decided from. `Err`: this replica stopped leading.
    async fn expire_due(&mut self, replica: &Replica) -> Result<(), ()> {
        let now = Instant::now();
        if now < self.next_scan {
            return Ok(());
        }
        let (live, n_workers): (HashMap<String, (u64, u64)>, usize) = replica.sm.read(|sm| {
            let live = sm
                .workers()
                .filter(|n| n.state != WorkerState::Down)
                .map(|n| (n.id.clone(), (n.epoch, n.heartbeat_seq)))
                .collect();
            (live, sm.worker_count())
        });
        self.timeout = Duration::from_millis(replica.worker_heartbeats.terms(n_workers).1);
        let mut due = Vec::new();
        replica.liveness.with(|beats| {
            beats.retain(|id, _| live.contains_key(id));
            self.seen.retain(|id, _| live.contains_key(id));
            for (worker_id, seq) in &live {
                let entry = self.seen.entry(worker_id.clone()).or_insert((*seq, now));
                if entry.0 != *seq {
                    *entry = (*seq, now);
                }
                if let Some(beat) = beats.get(worker_id).filter(|b| b.epoch == seq.0) {
                    entry.1 = entry.1.max(beat.received);
                }
                if now.duration_since(entry.1) >= self.timeout {
                    due.push((worker_id.clone(), *seq));
                }
            }
        });
        for (worker_id, (epoch, heartbeat_seq)) in due {
            tracing::warn!(%worker_id, "no heartbeat for {} ms: declaring the worker down", self.timeout.as_millis());
            match replica.propose_alone(Op::ExpireWorker { worker_id, epoch, heartbeat_seq }).await {
                Ok(response) => tracing::info!(?response, "expiry applied"),
                Err(_) => return Err(()),
            }
        }
        let first_deadline = self.seen.values().map(|(_, at)| *at + self.timeout).min();
        let tick = Instant::now() + Duration::from_millis(limits::LEADER_TICK_MS);
        self.next_scan = first_deadline.map_or(tick, |d| d.min(tick));
        Ok(())
    }
}

/// Whether this leader may make time-dependent decisions now (`ClockGate`); logs why not once,
/// and hands leadership on when its clock stays out of bounds.
async fn may_decide_time(
    replica: &Replica,
    gate: &mut ClockGate,
    led_at: Instant,
    held: &mut Option<String>,
    next_step_aside: &mut Instant,
) -> bool {
    let voters: Vec<NodeId> = replica.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    let verdict = replica.clocks.leader_verdict_since(replica.id, &voters, led_at);
    let readers = replica.clocks.readers(replica.id, &voters);
    let now_ms = replica.quorum.now_ms();
    let led_ms = led_at.elapsed().as_millis() as u64;
    let decision = gate.gate(now_ms, led_ms, verdict, voters.len(), readers, replica.timing.heartbeat_interval_ms);
    let why = match decision {
        TimeGate::Decide => {
            if held.take().is_some() {
                tracing::info!(id = replica.id, "leader: deciding time-dependent work again");
            }
            return true;
        }
        TimeGate::Hold(why) => why,
        TimeGate::StepAside(skew) => {
            if Instant::now() >= *next_step_aside {
                *next_step_aside = Instant::now() + Duration::from_millis(STEP_ASIDE_RETRY_MS);
                step_aside(replica, skew, &voters).await;
            }
            format!(
                "this leader's clock is {skew} ms off the cluster's, over clock_skew_ms_max {}",
                replica.clocks.bound_ms
            )
        }
    };
    if held.as_deref() != Some(why.as_str()) {
        tracing::warn!(id = replica.id, why, "leader: no fires, releases, expiries or dispatch");
        *held = Some(why);
    }
    false
}

/// Hands leadership to the voter nearest the cluster's time, if one is within bounds.
async fn step_aside(replica: &Replica, skew_ms: i64, voters: &[NodeId]) {
    let offsets = replica.clocks.offsets(voters.iter().copied().filter(|v| *v != replica.id));
    let Some(to) = step_aside_target(skew_ms, &offsets, replica.clocks.bound_ms) else {
        tracing::warn!(
            id = replica.id,
            skew_ms,
            "clock out of bounds and no voter within clock_skew_ms_max to lead instead"
        );
        return;
    };
    tracing::warn!(id = replica.id, skew_ms, to, "clock out of bounds: handing leadership to replica {to}");
    if let Err(e) = replica.transfer_leader(to).await {
        tracing::warn!(id = replica.id, to, error = %e.message(), "leadership hand-off failed; trying again later");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_in_bounds_decides_after_reading_its_followers() {
        let mut gate = ClockGate::default();
        assert!(matches!(gate.gate(0, 50, Verdict::InBounds(3), 3, 2, 100), TimeGate::Hold(_)));
        assert_eq!(gate.gate(200, 200, Verdict::InBounds(3), 3, 2, 100), TimeGate::Decide);
        assert!(matches!(gate.gate(300, 300, Verdict::Unknown, 3, 2, 100), TimeGate::Hold(_)));
    }

    #[test]
    fn a_leader_out_of_bounds_holds_then_steps_aside() {
        let day = 86_400_000;
        let mut gate = ClockGate::default();
        assert!(matches!(gate.gate(1_000, 1_000, Verdict::OutOfBounds(day), 3, 2, 100), TimeGate::Hold(_)));
        assert!(matches!(gate.gate(1_499, 1_499, Verdict::OutOfBounds(day), 3, 2, 100), TimeGate::Hold(_)));
        assert_eq!(gate.gate(1_500, 1_500, Verdict::OutOfBounds(day), 3, 2, 100), TimeGate::StepAside(day));
        // Back in bounds (an operator fixed the clock): decides again, and the count starts over.
        assert_eq!(gate.gate(1_600, 1_600, Verdict::InBounds(0), 3, 2, 100), TimeGate::Decide);
        assert!(matches!(gate.gate(1_700, 1_700, Verdict::OutOfBounds(day), 3, 2, 100), TimeGate::Hold(_)));
    }

    #[test]
    fn among_builds_without_clock_readings_a_leader_trusts_its_own() {
        let mut gate = ClockGate::default();
        assert_eq!(gate.gate(0, 0, Verdict::Unknown, 3, 0, 100), TimeGate::Decide);
        assert_eq!(
            gate.gate(0, 0, Verdict::Unknown, 1, 0, 100),
            TimeGate::Hold("reading the followers' clocks".into())
        );
    }

    #[test]
    fn leadership_goes_to_the_voter_nearest_the_cluster_time() {
        let day = 86_400_000;
        // This leader is a day ahead; replica 2 reads a day behind it (on time), 3 a bit less.
        assert_eq!(step_aside_target(day, &[(2, -day), (3, -day + 40)], 500), Some(2));
        assert_eq!(step_aside_target(day, &[(2, -day + 900), (3, -day + 40)], 500), Some(3));
        assert_eq!(step_aside_target(day, &[(2, 0), (3, 5)], 500), None);
    }
}
