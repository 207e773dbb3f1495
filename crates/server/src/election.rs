//! When this replica asks for votes, and whether it grants a pre-vote: the election driver.
//! openraft's own timer is off (`Config::enable_elect = false`); the decisions are pure
//! functions of time, what was heard and a seeded RNG (`Decider`, and `vote::answer_pre_vote` on the voter's side), driven by
//! the thin async shell `run`, and tested by stepping time by hand (the tests below).
//!
//! Why not openraft 0.9's timer: it draws a replica's election timeout once per process, so two
//! followers whose draws lie close together split the vote after every failed election; it waits
//! `leader_lease + election_timeout` after the last heartbeat; and it has neither pre-vote nor
//! check-quorum.
//!
//! The rules:
//! - **When to ask.** After hearing from a leader: `election_timeout_max` (the voters' lease,
//!   during which openraft refuses any vote anyway) + rank x step + a random part of one step,
//!   where the rank is this replica's place among the voters other than the silent leader and the
//!   step is half of `election_timeout_max - election_timeout_min`, so the survivors of a dead
//!   leader do not ask at the same moment. After asking without hearing of a winner: a fresh draw
//!   from `[election_timeout_min, election_timeout_max)`.
//! - **Pre-vote first** (Raft thesis 9.6). A replica asks the other voters whether they would vote
//!   for it (`Raft.PreVote`, which changes no state) and campaigns for a real term only when a
//!   majority (itself included) says yes. A replica cut off from the others therefore never raises
//!   its term, and cannot depose a healthy leader when it comes back.
//! - **Leader stickiness.** A voter refuses a pre-vote while it heard from a live leader within
//!   `election_timeout_ms_min`, and a leader refuses while it has a quorum; a candidate whose log
//!   is behind the voter's, or whose clock is beyond `clock_skew_ms_max` of the cluster's, is
//!   refused too.
//! - **Check-quorum.** A leader that has not heard from a majority for `election_timeout_ms_max`
//!   has lost its quorum (`quorum.rs`): it answers clients at once with the reason.
//! - **An overslept process looks first.** If the driver wakes more than half a heartbeat after it
//!   meant to (its process or machine did not run), the leader's messages may be waiting unread:
//!   it waits one more heartbeat before taking the silence for a dead leader.
//! - **Outrun.** A voter that refused a real candidate for a shorter log, while no leader spoke to
//!   it for `election_timeout_ms_min`, asks at once: the refused candidate cannot win.
//!
//! Safety does not depend on any of this: openraft decides every real vote (terms, logs, the
//! lease); the driver only decides when to ask.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use raftsched_store::NodeId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::config::RaftTiming;
use crate::replica::Replica;

/// What the driver sees when it decides.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub now_ms: u64,
    pub state: ServerState,
    pub me: NodeId,
    pub voters: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub last_contact_ms: u64,
    /// For a leader: from when a majority was in touch (`quorum::quorum_since_ms`).
    pub quorum_since_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Decide again at `until_ms` (or when something happens). `overslept_ms`: the driver woke
    /// that much later than it meant to, and defers its decision.
    Wait { until_ms: u64, overslept_ms: Option<u64> },
    /// Leading: decide again at `until_ms`; `has_quorum` says whether a majority is in touch.
    Lead { until_ms: u64, has_quorum: bool },
    /// Ask the other voters for a pre-vote; answer with `Decider::pre_voted`.
    PreVote,
    /// A majority would vote for this replica: start a real election.
    Campaign,
}

/// The election driver's decisions: every input is in `View`, every output an `Action`.
pub(crate) struct Decider {
    min_ms: u64,
    max_ms: u64,
    heartbeat_ms: u64,
    rng: StdRng,
    jitter_ms: u64,
    /// When this replica last asked, and how long it waits before asking again; `None` once a
    /// leader was heard from since.
    asked: Option<(u64, u64)>,
    asked_in_a_row: u64,
    /// The time the driver last meant to wake at.
    meant_ms: Option<u64>,
    not_before_ms: u64,
    /// Since when this replica leads, or since it stopped leading or voting (which counts as
    /// contact: a leader that steps down waits a whole lease before asking).
    quiet_since_ms: u64,
    leading: bool,
    outrun: bool,
}

impl Decider {
    pub fn new(timing: &RaftTiming, seed: u64) -> Decider {
        assert!(timing.election_timeout_ms_min < timing.election_timeout_ms_max, "validated by openraft's Config");
        let mut rng = StdRng::seed_from_u64(seed);
        let step = step_ms(timing.election_timeout_ms_min, timing.election_timeout_ms_max);
        Decider {
            min_ms: timing.election_timeout_ms_min,
            max_ms: timing.election_timeout_ms_max,
            heartbeat_ms: timing.heartbeat_interval_ms,
            jitter_ms: rng.gen_range(0..step),
            rng,
            asked: None,
            asked_in_a_row: 0,
            meant_ms: None,
            not_before_ms: 0,
            quiet_since_ms: 0,
            leading: false,
            outrun: false,
        }
    }

    fn step(&self) -> u64 {
        step_ms(self.min_ms, self.max_ms)
    }

    /// How many times in a row this replica asked without hearing of a leader.
    pub fn asked_in_a_row(&self) -> u64 {
        self.asked_in_a_row
    }

    pub fn decide(&mut self, v: &View) -> Action {
        let rank = rank(&v.voters, v.me, v.leader);
        match (v.state, rank) {
            (ServerState::Leader, Some(_)) => return self.lead(v),
            (ServerState::Leader | ServerState::Shutdown, _) | (_, None) => {
                self.quiet(v.now_ms);
                return self.wait(v.now_ms + self.max_ms);
            }
            _ => {}
        }
        if self.leading {
            self.quiet(v.now_ms);
        }
        let rank = rank.expect("matched above");
        let contact = v.last_contact_ms.max(self.quiet_since_ms);
        if matches!(self.asked, Some((at, _)) if contact >= at) {
            self.asked = None;
            self.asked_in_a_row = 0;
            self.jitter_ms = self.rng.gen_range(0..self.step());
        }
        let silent_ms = v.now_ms.saturating_sub(contact);
        if std::mem::take(&mut self.outrun) && silent_ms >= self.min_ms {
            return Action::PreVote;
        }
        let deadline = match self.asked {
            Some((at, wait)) => at + wait,
            None => contact + self.max_ms + rank * self.step() + self.jitter_ms,
        }
        .max(self.not_before_ms);
        if v.now_ms < deadline {
            return self.wait(deadline);
        }
        if let Some(meant) = self.meant_ms.take() {
            let overslept = v.now_ms.saturating_sub(meant);
            if overslept > self.heartbeat_ms / 2 {
                self.not_before_ms = v.now_ms + self.heartbeat_ms;
                self.meant_ms = Some(self.not_before_ms);
                return Action::Wait { until_ms: self.not_before_ms, overslept_ms: Some(overslept) };
            }
        }
        Action::PreVote
    }

    /// The answer to a pre-vote round begun at `began_ms`: campaign if a majority granted it and
    /// no leader spoke up meanwhile; otherwise wait a fresh draw.
    pub fn pre_voted(&mut self, v: &View, began_ms: u64, granted: bool) -> Action {
        self.asked_in_a_row += 1;
        let wait = self.rng.gen_range(self.min_ms..self.max_ms);
        self.asked = Some((began_ms, wait));
        let leader_spoke = v.last_contact_ms >= began_ms;
        if granted && !leader_spoke && v.state != ServerState::Leader {
            return Action::Campaign;
        }
        self.wait(began_ms + wait)
    }

    /// A real candidate was refused for a shorter log: ask at once if the leader is silent.
    pub fn outrun(&mut self) {
        self.outrun = true;
    }

    fn lead(&mut self, v: &View) -> Action {
        if !self.leading {
            self.leading = true;
            self.quiet_since_ms = v.now_ms;
        }
        self.asked = None;
        self.asked_in_a_row = 0;
        self.meant_ms = None;
        let window = self.max_ms;
        let has_quorum = crate::quorum::leader_has_quorum(v.now_ms, self.quiet_since_ms, v.quorum_since_ms, window);
        Action::Lead { until_ms: v.now_ms + self.heartbeat_ms, has_quorum }
    }

    fn quiet(&mut self, now_ms: u64) {
        self.leading = false;
        self.quiet_since_ms = now_ms;
        self.asked = None;
        self.meant_ms = None;
        self.outrun = false;
    }

    fn wait(&mut self, until_ms: u64) -> Action {
        self.meant_ms = Some(until_ms);
        Action::Wait { until_ms, overslept_ms: None }
    }
}

fn step_ms(min_ms: u64, max_ms: u64) -> u64 {
    ((max_ms - min_ms) / 2).max(1)
}

/// This replica's place among the voters that may replace `leader`, by id; `None` if it is not
/// a voter.
fn rank(voters: &[NodeId], me: NodeId, leader: Option<NodeId>) -> Option<u64> {
    if !voters.contains(&me) {
        return None;
    }
    Some(voters.iter().filter(|v| Some(**v) != leader && **v < me).count() as u64)
}

/// The driver: feeds `Decider` what openraft and the Raft service saw, and carries out its actions.
pub(crate) async fn run(replica: Arc<Replica>, timing: RaftTiming, mut stop: watch::Receiver<bool>) {
    let mut decider = Decider::new(&timing, rand::thread_rng().gen());
    let mut outrun = replica.leader_contact.outruns();
    outrun.borrow_and_update();
    let mut had_quorum = true;
    loop {
        let v = view(&replica);
        replica.clocks.publish(replica.clock_verdict());
        let action = decider.decide(&v);
        let action = match action {
            Action::PreVote => {
                let began = v.now_ms;
                let granted = pre_vote_round(&replica, &v, &timing).await;
                decider.pre_voted(&view(&replica), began, granted)
            }
            other => other,
        };
        match action {
            Action::Wait { until_ms, overslept_ms } => {
                if let Some(ms) = overslept_ms {
                    tracing::info!(id = replica.id, overslept_ms = ms, "stalled: election decision deferred");
                }
                if v.leader.is_some() && v.now_ms.saturating_sub(v.last_contact_ms) < timing.election_timeout_ms_max {
                    replica.quorum.set_lost(None);
                }
                let at = until_ms.saturating_sub(replica.quorum.now_ms());
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(at)) => {}
                    _ = stop.changed() => return,
                    changed = outrun.changed() => {
                        if changed.is_err() { return }
                        outrun.borrow_and_update();
                        decider.outrun();
                    }
                }
            }
            Action::Lead { until_ms, has_quorum } => {
                lead_quorum(&replica, &v, had_quorum, has_quorum);
                had_quorum = has_quorum;
                let at = until_ms.saturating_sub(replica.quorum.now_ms());
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(at)) => {}
                    _ = stop.changed() => return,
                }
            }
            Action::Campaign => {
                let in_a_row = decider.asked_in_a_row();
                tracing::info!(id = replica.id, leader = ?v.leader, in_a_row, "a majority would vote for it: campaigning");
                let term = replica.raft.metrics().borrow().current_term;
                if let Err(e) = replica.raft.trigger().elect().await {
                    tracing::info!(error = %e, "raft stopped: no more elections");
                    return;
                }
                // `elect` only queues the campaign: a Raft core that lags (a slow snapshot, a loaded
                // box) runs it later. Deciding again before it shows would queue a second one and
                // burn a term (seen in a loaded soak); so wait until the term moves, at most a lease.
                let lease = Duration::from_millis(timing.election_timeout_ms_max);
                let _ = replica.raft.wait(Some(lease)).metrics(|m| m.current_term > term, "campaign started").await;
            }
            // Answered above (`pre_voted` never asks again): decide afresh.
            Action::PreVote => continue,
        }
        if !matches!(action, Action::Lead { .. }) {
            had_quorum = true;
        }
    }
}

/// Check-quorum's effect: a leader without a quorum refuses requests with the reason until a
/// majority answers again.
fn lead_quorum(replica: &Replica, v: &View, had_quorum: bool, has_quorum: bool) {
    if has_quorum {
        if !had_quorum {
            tracing::info!(id = replica.id, "leader: a quorum answers again");
        }
        if replica.quorum.lost().is_some() {
            replica.quorum.set_lost(None);
        }
        return;
    }
    if !had_quorum {
        return;
    }
    let why = format!(
        "no quorum: replica {} leads but no majority of the {} voters answered it within election_timeout_ms_max",
        replica.id,
        v.voters.len()
    );
    tracing::warn!(id = replica.id, "{why}");
    replica.quorum.set_lost(Some(why));
}

fn view(replica: &Replica) -> View {
    let metrics = replica.raft.metrics();
    let m = metrics.borrow();
    let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
    let now_ms = replica.quorum.now_ms();
    let others = replica.quorum.answers(voters.iter().copied().filter(|v| *v != replica.id));
    View {
        now_ms,
        state: m.state,
        me: replica.id,
        leader: m.current_leader,
        last_contact_ms: replica.leader_contact.last_ms(),
        quorum_since_ms: crate::quorum::quorum_since_ms(&others, voters.len(), now_ms),
        voters,
    }
}

/// Asks every other voter for a pre-vote, at most `election_timeout_ms_min` long; true when a
/// majority (this replica included) grants it. Also records whether a majority was reachable at
/// all, for the errors clients get.
async fn pre_vote_round(replica: &Replica, v: &View, timing: &RaftTiming) -> bool {
    let term = replica.raft.metrics().borrow().current_term;
    let last_log = replica.last_log();
    let majority = v.voters.len() / 2 + 1;
    let request = raftsched_api::PreVoteRequest {
        candidate: replica.id,
        term,
        has_log: last_log.is_some(),
        last_log_term: last_log.map_or(0, |l| l.0),
        last_log_index: last_log.map_or(0, |l| l.1),
    };
    let deadline = Duration::from_millis(timing.election_timeout_ms_min);
    let mut asks: FuturesUnordered<_> = v
        .voters
        .iter()
        .filter(|id| **id != replica.id)
        .filter_map(|id| crate::membership::member_addr(replica, *id).map(|addr| (*id, addr)))
        .map(|(id, addr)| ask_pre_vote(replica, id, addr, request, deadline))
        .collect();
    let (mut granted, mut reached) = (1, 1);
    while let Some(answer) = asks.next().await {
        match answer {
            PreVoteAnswer::Granted => (granted, reached) = (granted + 1, reached + 1),
            PreVoteAnswer::Refused(why) => {
                reached += 1;
                tracing::debug!(id = replica.id, why, "pre-vote refused");
            }
            PreVoteAnswer::Unreachable => {}
        }
        if granted >= majority {
            break;
        }
    }
    drop(asks);
    if granted < majority && reached < majority {
        replica.quorum.set_lost(Some(format!(
            "no leader and no quorum: replica {} reaches {reached} of {} voters (a majority is {majority})",
            replica.id,
            v.voters.len()
        )));
    } else {
        replica.quorum.set_lost(None);
    }
    granted >= majority
}

enum PreVoteAnswer {
    Granted,
    Refused(String),
    Unreachable,
}

async fn ask_pre_vote(
    replica: &Replica,
    id: NodeId,
    addr: String,
    request: raftsched_api::PreVoteRequest,
    deadline: Duration,
) -> PreVoteAnswer {
    let Ok(mut client) = replica.peers.client(&addr) else { return PreVoteAnswer::Unreachable };
    let mut request = tonic::Request::new(request);
    request.set_timeout(deadline);
    crate::clock::write_headers(request.metadata_mut(), replica.clocks.published().skew_ms());
    let sent_ms = crate::clock::wall_ms();
    match tokio::time::timeout(deadline, client.pre_vote(request)).await {
        Ok(Ok(reply)) => {
            if let (Some(their_ms), _) = crate::clock::read_headers(reply.metadata()) {
                replica.clocks.replied(id, their_ms, sent_ms, crate::clock::wall_ms());
            }
            let reply = reply.into_inner();
            if reply.granted {
                PreVoteAnswer::Granted
            } else {
                PreVoteAnswer::Refused(reply.reason)
            }
        }
        // A build before pre-vote: its replica votes as plain Raft does, so count it as a yes.
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => PreVoteAnswer::Granted,
        _ => PreVoteAnswer::Unreachable,
    }
}

#[cfg(test)]
mod tests;
