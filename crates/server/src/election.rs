//! When a follower starts an election: this replica's own election timer, not openraft's.
//!
//! Why not openraft 0.9's timer: it draws a replica's election timeout once per process
//! (`EngineConfig::new`), so two followers whose draws happen to lie close together time out
//! together after *every* failed election and split the vote again and again (measured: no leader
//! for over a minute with 150-300 ms timeouts). It also waits `leader_lease + election_timeout`
//! after the last heartbeat, where `leader_lease` is `election_timeout_max`: 1.5-2 s with the old
//! defaults before anyone even asked for a vote.
//!
//! This driver (openraft's own is off: `Config::enable_elect = false`) draws afresh for every
//! wait, and orders the first attempt after a leader falls silent by rank, so the survivors of a
//! dead leader do not campaign at the same moment:
//! - after hearing from a leader: `election_timeout_max` (the voters' lease, during which openraft
//!   refuses any vote anyway) + rank x step + a random part of one step, where the rank is this
//!   replica's place among the voters other than the silent leader, and the step is half of
//!   `election_timeout_max - election_timeout_min`;
//! - after campaigning itself without hearing of a winner: a fresh draw from
//!   `[election_timeout_min, election_timeout_max)`, as plain Raft does;
//! - at once, above the candidate's term, when this replica refused a candidate for a shorter log
//!   and has not heard from a leader for `election_timeout_min` either: the refused candidate
//!   cannot win, and in a trio the only other voter is that candidate, which voted for itself in
//!   its term (so a campaign at the same term would split the vote and cost a whole retry).
//!
//! Safety does not depend on any of this: openraft still decides every vote (terms, log
//! up-to-dateness, the lease); the driver only decides when to ask.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use raftsched_store::NodeId;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::RaftTiming;
use crate::replica::Replica;

/// When this replica last heard from a live leader (or granted a vote), as milliseconds since
/// `base`. Touched by the Raft service on every accepted AppendEntries, InstallSnapshot and
/// granted vote; read by the driver.
pub(crate) struct LeaderContact {
    base: Instant,
    at_ms: AtomicU64,
    /// The term of the last candidate this replica refused for a shorter log.
    outrun: watch::Sender<u64>,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact { base: Instant::now(), at_ms: AtomicU64::new(0), outrun: watch::Sender::new(0) }
    }
}

impl LeaderContact {
    pub(crate) fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.at_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// A candidate of `term` was refused because this replica's log is longer: it cannot win, and
    /// the other voter of a trio may have voted for it already. Campaigning above its term at once
    /// (if the leader is silent here too) ends the election a whole retry sooner.
    pub(crate) fn outrun(&self, term: u64) {
        self.outrun.send_replace(term);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.at_ms.load(Ordering::Relaxed))
    }
}

/// Half the spread of the election timeout: the distance between two ranks, and the range of the
/// random part within one.
fn step_ms(timing: &RaftTiming) -> u64 {
    debug_assert!(timing.election_timeout_ms_min < timing.election_timeout_ms_max, "validated by openraft's Config");
    ((timing.election_timeout_ms_max - timing.election_timeout_ms_min) / 2).max(1)
}

/// The silence after a leader's last contact at which the replica of `rank` campaigns, for a
/// random `jitter_ms` below one step.
fn after_leader(timing: &RaftTiming, rank: u64, jitter_ms: u64) -> Duration {
    Duration::from_millis(timing.election_timeout_ms_max + rank * step_ms(timing) + jitter_ms)
}

/// The silence after its own campaign at which a replica campaigns again.
fn after_campaign(timing: &RaftTiming) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(timing.election_timeout_ms_min..timing.election_timeout_ms_max))
}

/// Campaigns until this replica's term is above `term` (each campaign raises it by one), at most
/// three times.
async fn campaign_above(replica: &Replica, term: u64) {
    let mut metrics = replica.raft.metrics();
    for _ in 0..3 {
        if metrics.borrow_and_update().current_term > term {
            return;
        }
        tracing::info!(id = replica.id, term, "refused a candidate with a shorter log: campaigning above its term");
        if replica.raft.trigger().elect().await.is_err() {
            return;
        }
        // The campaign shows in the metrics once openraft has handled it.
        let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
    }
}

/// This replica's place among the voters that may replace `leader`, by id; `None` if it is not
/// a voter.
fn rank(voters: &[NodeId], me: NodeId, leader: Option<NodeId>) -> Option<u64> {
    if !voters.contains(&me) {
        return None;
    }
    Some(voters.iter().filter(|v| Some(**v) != leader && **v < me).count() as u64)
}

pub(crate) async fn run(replica: Arc<Replica>, timing: RaftTiming, mut stop: watch::Receiver<bool>) {
    let contact = &replica.leader_contact;
    let draw_jitter = || rand::thread_rng().gen_range(0..step_ms(&timing));
    let mut jitter_ms = draw_jitter();
    // When this replica last campaigned, and the silence after which it campaigns again; `None`
    // once a leader (or a granted vote) was heard from since.
    let mut campaigned: Option<(Instant, Duration)> = None;
    let mut campaigns_in_a_row = 0u64;
    let heartbeat = Duration::from_millis(timing.heartbeat_interval_ms);
    let stall = heartbeat / 2;
    let mut not_before = Instant::now();
    let mut outrun = contact.outrun.subscribe();
    outrun.borrow_and_update();
    loop {
        let (state, rank, leader) = {
            let metrics = replica.raft.metrics();
            let m = metrics.borrow();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (m.state, rank(&voters, replica.id, m.current_leader), m.current_leader)
        };
        let last_contact = contact.last();
        if matches!(campaigned, Some((at, _)) if last_contact >= at) {
            campaigned = None;
            campaigns_in_a_row = 0;
            jitter_ms = draw_jitter();
        }
        let Some(rank) = rank.filter(|_| !matches!(state, ServerState::Leader | ServerState::Shutdown)) else {
            // Leading, stopping or not a voter: nothing to decide. Counting this as contact means
            // a leader that steps down waits a full lease before campaigning.
            contact.touch();
            campaigned = None;
            outrun.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(timing.election_timeout_ms_max)) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        let deadline = match campaigned {
            Some((at, wait)) => at + wait,
            None => last_contact + after_leader(&timing, rank, jitter_ms),
        }
        .max(not_before);
        if Instant::now() < deadline {
            // Then look again: a contact may have come in meanwhile.
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stop.changed() => return,
                changed = outrun.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let term = *outrun.borrow_and_update();
                    // Only against a silent leader: a live one keeps this replica's contact fresh,
                    // and a stale candidate must not make it campaign against that leader.
                    if contact.last() + Duration::from_millis(timing.election_timeout_ms_min) <= Instant::now() {
                        campaign_above(&replica, term).await;
                        campaigns_in_a_row += 1;
                        campaigned = Some((Instant::now(), after_campaign(&timing)));
                    }
                    continue;
                }
            }
            let overslept = Instant::now().saturating_duration_since(deadline);
            if overslept > stall {
                // This process did not run for a while (a loaded box, a pause): the leader's
                // messages may be waiting unread. Give them a heartbeat's time to arrive before
                // taking the silence for a dead leader.
                tracing::info!(
                    id = replica.id,
                    overslept_ms = overslept.as_millis() as u64,
                    "stalled: election decision deferred"
                );
                not_before = Instant::now() + heartbeat;
            }
            continue;
        }
        campaigns_in_a_row += 1;
        tracing::info!(id = replica.id, ?leader, rank, campaigns_in_a_row, "no leader heard from: campaigning");
        if let Err(e) = replica.raft.trigger().elect().await {
            tracing::info!(error = %e, "raft stopped: no more elections");
            return;
        }
        campaigned = Some((Instant::now(), after_campaign(&timing)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_skip_the_silent_leader_and_non_voters() {
        assert_eq!(rank(&[1, 2, 3], 2, Some(1)), Some(0));
        assert_eq!(rank(&[1, 2, 3], 3, Some(1)), Some(1));
        assert_eq!(rank(&[1, 2, 3], 3, Some(2)), Some(1));
        assert_eq!(rank(&[1, 2, 3], 1, None), Some(0));
        assert_eq!(rank(&[1, 2, 3], 3, None), Some(2));
        assert_eq!(rank(&[1, 2, 3], 4, Some(1)), None);
    }

    #[test]
    fn waits_follow_the_lease_and_the_rank() {
        let timing = RaftTiming { election_timeout_ms_min: 150, election_timeout_ms_max: 250, ..Default::default() };
        assert_eq!(step_ms(&timing), 50);
        assert_eq!(after_leader(&timing, 0, 0).as_millis(), 250);
        assert_eq!(after_leader(&timing, 0, 49).as_millis(), 299);
        assert_eq!(after_leader(&timing, 1, 0).as_millis(), 300);
        for _ in 0..1000 {
            let retry = after_campaign(&timing).as_millis();
            assert!((150..250).contains(&retry), "{retry}");
        }
    }
}
