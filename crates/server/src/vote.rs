//! The voter's side of an election, pure: whether to grant a pre-vote (`answer_pre_vote`) from
//! what the voter knows of itself (`VoterView`), and when it last heard from a leader
//! (`LeaderContact`). The driver that asks for votes is `election.rs`; the Raft service answers
//! with this.

use std::sync::atomic::{AtomicU64, Ordering};

use openraft::ServerState;
use raftsched_store::NodeId;
use tokio::sync::watch;

/// When this replica last heard from a live leader (or granted a vote), in `Quorum::now_ms`
/// milliseconds. Touched by the Raft service on every accepted AppendEntries, InstallSnapshot and
/// granted vote.
#[derive(Default)]
pub(crate) struct LeaderContact {
    at_ms: AtomicU64,
    /// The term of the last candidate this replica refused for a shorter log.
    outrun: watch::Sender<u64>,
}

impl LeaderContact {
    pub(crate) fn touch(&self, now_ms: u64) {
        self.at_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub(crate) fn outrun(&self, term: u64) {
        self.outrun.send_replace(term);
    }

    /// Hears of each candidate refused for a shorter log (its term).
    pub(crate) fn outruns(&self) -> watch::Receiver<u64> {
        self.outrun.subscribe()
    }

    pub(crate) fn last_ms(&self) -> u64 {
        self.at_ms.load(Ordering::Relaxed)
    }
}

/// A pre-vote request as the voter sees it.
#[derive(Clone, Debug)]
pub(crate) struct PreVoteAsk {
    pub candidate: NodeId,
    /// (term, index) of the candidate's last log entry.
    pub last_log: Option<(u64, u64)>,
    /// The candidate's clock minus this replica's, if the request carried a reading.
    pub clock_offset_ms: Option<i64>,
}

/// What the voter knows of itself.
#[derive(Clone, Debug)]
pub(crate) struct VoterView {
    pub now_ms: u64,
    pub state: ServerState,
    pub last_log: Option<(u64, u64)>,
    pub last_contact_ms: u64,
    pub leader: Option<NodeId>,
    /// Whether this replica, leading, has a quorum.
    pub has_quorum: bool,
    /// This replica's own skew from the cluster, when known.
    pub own_skew_ms: Option<i64>,
}

/// Whether to grant a pre-vote: `Err` says why not.
pub(crate) fn answer_pre_vote(ask: &PreVoteAsk, me: &VoterView, min_ms: u64, skew_max_ms: u64) -> Result<(), String> {
    if ask.last_log < me.last_log {
        return Err(format!("its log ends at {:?}, this replica's at {:?}", ask.last_log, me.last_log));
    }
    if me.state == ServerState::Leader && me.has_quorum {
        return Err("this replica leads with a quorum".to_string());
    }
    let silent_ms = me.now_ms.saturating_sub(me.last_contact_ms);
    if me.state != ServerState::Leader && me.leader.is_some_and(|l| l != ask.candidate) && silent_ms < min_ms {
        return Err(format!("leader {:?} was heard from {silent_ms} ms ago", me.leader.unwrap_or(0)));
    }
    if let Some(skew) = ask.clock_offset_ms.and_then(|o| crate::clock::Clocks::peer_skew_of(me.own_skew_ms, o)) {
        if skew.unsigned_abs() > skew_max_ms {
            return Err(format!("its clock is {skew} ms off the cluster's, over clock_skew_ms_max {skew_max_ms}"));
        }
    }
    Ok(())
}
