//! Scenario tests of the election driver's decisions, time stepped by hand (etcd raft's style):
//! a `Scenario` holds what the shell would see, each step moves time and asks the decider.

use super::*;
use crate::vote::{answer_pre_vote, PreVoteAsk, VoterView};

const TIMING: RaftTiming = RaftTiming {
    heartbeat_interval_ms: 100,
    election_timeout_ms_min: 200,
    election_timeout_ms_max: 300,
    snapshot_every_entries: 10_000,
    snapshot_logs_kept: 1_000,
};

struct Scenario {
    decider: Decider,
    view: View,
}

impl Scenario {
    /// Replica `me` of a trio following leader 1, which last spoke at 0.
    fn follower(me: NodeId, seed: u64) -> Scenario {
        let view = View {
            now_ms: 0,
            state: ServerState::Follower,
            me,
            voters: vec![1, 2, 3],
            leader: Some(1),
            last_contact_ms: 0,
            quorum_since_ms: None,
        };
        Scenario { decider: Decider::new(&TIMING, seed), view }
    }

    fn at(&mut self, now_ms: u64) -> Action {
        self.view.now_ms = now_ms;
        self.decider.decide(&self.view)
    }

    fn heard_leader(&mut self, at_ms: u64) {
        self.view.last_contact_ms = at_ms;
    }

    /// Steps from `from` to `to` every `tick` ms, hearing the leader every `heartbeat` ms (0:
    /// never); returns the first time the decider asked for a pre-vote.
    fn run(&mut self, from: u64, to: u64, tick: u64, heartbeat: u64) -> Option<u64> {
        let mut t = from;
        while t <= to {
            if heartbeat > 0 && (t - from).is_multiple_of(heartbeat) {
                self.heard_leader(t);
            }
            if self.at(t) == Action::PreVote {
                return Some(t);
            }
            t += tick;
        }
        None
    }
}

#[test]
fn a_follower_that_hears_its_leader_never_asks() {
    for seed in 0..20 {
        let mut s = Scenario::follower(2, seed);
        assert_eq!(s.run(0, 60_000, 10, 100), None, "seed {seed}");
    }
}

#[test]
fn a_silent_leader_is_replaced_in_rank_order() {
    for seed in 0..20 {
        let mut second = Scenario::follower(2, seed);
        let mut third = Scenario::follower(3, seed + 100);
        let a = second.run(0, 2_000, 5, 0).expect("rank 0 asks");
        let b = third.run(0, 2_000, 5, 0).expect("rank 1 asks");
        // Rank 0: lease (300) + a random part of one step (50); rank 1 one step later.
        assert!((300..355).contains(&a), "seed {seed}: {a}");
        assert!((350..405).contains(&b), "seed {seed}: {b}");
    }
}

#[test]
fn a_refused_pre_vote_waits_a_fresh_draw_and_a_granted_one_campaigns() {
    let mut s = Scenario::follower(2, 7);
    let asked = s.run(0, 2_000, 5, 0).unwrap();
    let refused = s.decider.pre_voted(&s.view, asked, false);
    let Action::Wait { until_ms, .. } = refused else { panic!("{refused:?}") };
    assert!((asked + 200..asked + 300).contains(&until_ms), "{until_ms}");
    assert!(matches!(s.at(until_ms - 1), Action::Wait { .. }));
    assert_eq!(s.at(until_ms), Action::PreVote);
    assert_eq!(s.decider.pre_voted(&s.view, until_ms, true), Action::Campaign);
    assert_eq!(s.decider.asked_in_a_row(), 2);
}

#[test]
fn a_leader_heard_during_the_round_wins_over_the_grants() {
    let mut s = Scenario::follower(2, 3);
    let asked = s.run(0, 2_000, 5, 0).unwrap();
    s.heard_leader(asked + 1);
    s.view.now_ms = asked + 2;
    assert!(matches!(s.decider.pre_voted(&s.view, asked, true), Action::Wait { .. }));
    // And hearing from it resets the count and the wait.
    assert!(matches!(s.at(asked + 100), Action::Wait { .. }));
    assert_eq!(s.decider.asked_in_a_row(), 0);
}

#[test]
fn an_overslept_driver_looks_again_before_asking() {
    let mut s = Scenario::follower(2, 11);
    let Action::Wait { until_ms, .. } = s.at(0) else { panic!() };
    // The process did not run for 2 s (SIGSTOP, a loaded box): it defers by a heartbeat.
    let late = until_ms + 2_000;
    assert_eq!(s.at(late), Action::Wait { until_ms: late + 100, overslept_ms: Some(2_000) });
    // What had waited unread arrives meanwhile: no election.
    s.heard_leader(late + 50);
    assert!(matches!(s.at(late + 100), Action::Wait { overslept_ms: None, .. }));
    assert_eq!(s.run(late + 100, late + 10_000, 10, 100), None);
}

#[test]
fn an_overslept_driver_still_asks_when_nothing_arrived() {
    let mut s = Scenario::follower(2, 11);
    let Action::Wait { until_ms, .. } = s.at(0) else { panic!() };
    let late = until_ms + 2_000;
    assert!(matches!(s.at(late), Action::Wait { overslept_ms: Some(_), .. }));
    assert_eq!(s.at(late + 100), Action::PreVote);
}

#[test]
fn outrun_asks_at_once_only_against_a_silent_leader() {
    let mut s = Scenario::follower(3, 5);
    s.heard_leader(1_000);
    s.decider.outrun();
    assert!(matches!(s.at(1_100), Action::Wait { .. }), "the leader spoke 100 ms ago");
    s.decider.outrun();
    assert_eq!(s.at(1_200), Action::PreVote);
}

#[test]
fn a_leader_loses_its_quorum_one_window_after_the_last_answer() {
    let mut s = Scenario::follower(1, 1);
    s.view.state = ServerState::Leader;
    s.view.leader = Some(1);
    s.view.quorum_since_ms = None;
    assert_eq!(s.at(1_000), Action::Lead { until_ms: 1_100, has_quorum: true });
    s.view.quorum_since_ms = Some(1_200);
    assert_eq!(s.at(1_500), Action::Lead { until_ms: 1_600, has_quorum: true });
    assert_eq!(s.at(1_501), Action::Lead { until_ms: 1_601, has_quorum: false });
    s.view.quorum_since_ms = Some(1_550);
    assert_eq!(s.at(1_600), Action::Lead { until_ms: 1_700, has_quorum: true });
}

#[test]
fn a_leader_that_steps_down_waits_a_whole_lease() {
    let mut s = Scenario::follower(1, 1);
    s.view.state = ServerState::Leader;
    s.view.leader = Some(1);
    s.at(5_000);
    s.view.state = ServerState::Follower;
    s.view.leader = Some(2);
    let asked = s.run(5_010, 10_000, 5, 0).unwrap();
    assert!(asked >= 5_010 + 300, "{asked}");
}

#[test]
fn learners_and_removed_replicas_never_ask() {
    let mut s = Scenario::follower(4, 1);
    assert_eq!(s.run(0, 10_000, 50, 0), None);
}

#[test]
fn ranks_skip_the_silent_leader_and_non_voters() {
    assert_eq!(rank(&[1, 2, 3], 2, Some(1)), Some(0));
    assert_eq!(rank(&[1, 2, 3], 3, Some(1)), Some(1));
    assert_eq!(rank(&[1, 2, 3], 3, Some(2)), Some(1));
    assert_eq!(rank(&[1, 2, 3], 1, None), Some(0));
    assert_eq!(rank(&[1, 2, 3], 3, None), Some(2));
    assert_eq!(rank(&[1, 2, 3], 4, Some(1)), None);
}

fn voter() -> VoterView {
    VoterView {
        now_ms: 10_000,
        state: ServerState::Follower,
        last_log: Some((3, 40)),
        last_contact_ms: 0,
        leader: Some(1),
        has_quorum: false,
        own_skew_ms: Some(0),
    }
}

fn ask() -> PreVoteAsk {
    PreVoteAsk { candidate: 2, last_log: Some((3, 40)), clock_offset_ms: Some(3) }
}

#[test]
fn pre_votes_go_to_an_up_to_date_candidate_when_the_leader_is_silent() {
    assert_eq!(answer_pre_vote(&ask(), &voter(), 200, 500), Ok(()));
    let longer = PreVoteAsk { last_log: Some((4, 1)), ..ask() };
    assert_eq!(answer_pre_vote(&longer, &voter(), 200, 500), Ok(()));
}

#[test]
fn pre_votes_are_refused_for_a_shorter_log() {
    let shorter = PreVoteAsk { last_log: Some((3, 39)), ..ask() };
    assert!(answer_pre_vote(&shorter, &voter(), 200, 500).unwrap_err().contains("log"));
    let empty = PreVoteAsk { last_log: None, ..ask() };
    assert!(answer_pre_vote(&empty, &voter(), 200, 500).is_err());
}

#[test]
fn leader_stickiness_refuses_while_the_leader_is_heard() {
    let heard = VoterView { last_contact_ms: 9_850, ..voter() };
    assert!(answer_pre_vote(&ask(), &heard, 200, 500).unwrap_err().contains("heard from"));
    let long_ago = VoterView { last_contact_ms: 9_800, ..voter() };
    assert_eq!(answer_pre_vote(&ask(), &long_ago, 200, 500), Ok(()));
    let leading = VoterView { state: ServerState::Leader, leader: Some(3), has_quorum: true, ..voter() };
    assert!(answer_pre_vote(&ask(), &leading, 200, 500).unwrap_err().contains("leads"));
    let lost = VoterView { has_quorum: false, ..leading };
    assert_eq!(answer_pre_vote(&ask(), &lost, 200, 500), Ok(()));
}

#[test]
fn a_candidate_with_a_wrong_clock_gets_no_pre_vote() {
    let ahead = PreVoteAsk { clock_offset_ms: Some(86_400_000), ..ask() };
    assert!(answer_pre_vote(&ahead, &voter(), 200, 500).unwrap_err().contains("clock"));
    // This voter is itself 400 ms behind: a candidate 600 ms ahead of it is 200 ms ahead.
    let me_behind = VoterView { own_skew_ms: Some(-400), ..voter() };
    let six = PreVoteAsk { clock_offset_ms: Some(600), ..ask() };
    assert_eq!(answer_pre_vote(&six, &me_behind, 200, 500), Ok(()));
    // Without knowing its own skew, a voter does not judge.
    let unknown = VoterView { own_skew_ms: None, ..voter() };
    assert_eq!(answer_pre_vote(&ahead, &unknown, 200, 500), Ok(()));
}
