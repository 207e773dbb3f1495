//! One replica's write and read paths.
//!
//! Writes: the leader stamps the time and proposes; a follower forwards the op to the leader and
//! returns its answer. Every op is safe to retry (submits carry an idempotency key decided in
//! `apply`, cancel is idempotent), so after an ambiguous failure (a leader that died mid-call) the
//! replica simply finds the new leader and sends it again.
//!
//! Reads: linearizable by read index. The leader confirms with a quorum that it still leads and
//! names its commit index; this replica waits until it has applied that far, then reads locally.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, ServerState};
use raftsched_api::MemberStatus;
use raftsched_state::{Op, Rejection, Response, StateMachine, TaskState};
use raftsched_store::{NodeId, Raft, SmHandle};
use tonic::Status;

use crate::limits;
use crate::peers::Peers;

pub struct Replica {
    pub(crate) id: NodeId,
    /// The heartbeat interval and timeout workers are held to (`liveness::HeartbeatPolicy`).
    pub(crate) worker_heartbeats: crate::liveness::HeartbeatPolicy,
    /// Finished tasks kept (0: all); proposed by the leader in `PurgeFinished`.
    pub(crate) retain_finished: u64,
    pub(crate) addr: String,
    pub(crate) raft: Raft,
    pub(crate) sm: SmHandle,
    pub(crate) peers: Arc<Peers>,
    /// What this replica admits at once (`admission.rs`).
    admission: crate::admission::Admission,
    /// The write path: batching on the leader, forwarding from a follower.
    writes: Writes,
    /// The read path: shared read-index rounds and the leader's read floor.
    reads: Reads,
    /// Workers' last acknowledged heartbeats, while this replica leads (`liveness.rs`).
    pub(crate) liveness: crate::liveness::Liveness,
    pub(crate) counters: Counters,
    pub(crate) sync_stats: Arc<raftsched_store::SyncStats>,
    pub(crate) rpc_stats: Arc<crate::rpc_stats::RpcStats>,
    /// The commit index as the store last heard it from openraft.
    pub(crate) committed_index: Arc<std::sync::atomic::AtomicU64>,
    /// (snapshot index, when this replica took or installed it, or started with it), kept by a
    /// watcher of the Raft metrics; for `raftsched_snapshot_age_seconds`.
    pub(crate) snapshot_seen: std::sync::Mutex<(u64, std::time::Instant)>,
    /// When a live leader last spoke to this replica; the election driver reads it.
    pub(crate) leader_contact: crate::vote::LeaderContact,
    pub(crate) timing: crate::config::RaftTiming,
    /// Clock readings of the other replicas, and this replica's skew (`clock.rs`).
    pub(crate) clocks: Arc<crate::clock::Clocks>,
    /// Whether a quorum is in touch (`quorum.rs`).
    pub(crate) quorum: Arc<crate::quorum::Quorum>,
    /// The last readiness probe's answer (`health.rs`).
    pub(crate) readiness: tokio::sync::watch::Sender<Readiness>,
    /// The format this replica writes and sends now (the cluster version, clamped to this build's).
    pub(crate) active: raftsched_format::ActiveVersion,
    /// Who may call what, and the refusals counted so far.
    pub(crate) auth: Arc<crate::auth::Auth>,
}

/// Where the leader is, as far as this replica knows.
enum Leader {
    Me,
    Other(NodeId, String),
    Unknown,
}

pub(crate) fn now_ms() -> u64 {
    // Before 1970 only on a broken clock; 0 then is harmless (it is a timestamp, not an ordering).
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn unavailable_after(what: &str, deadline: Duration) -> Status {
    Status::unavailable(format!("{what}: no answer within request_timeout_ms {}", deadline.as_millis()))
}

/// Counters the request paths bump.
#[derive(Default)]
pub struct Counters {
    /// Client writes proposed on this replica while it led.
    pub proposals_total: AtomicU64,
    /// Client writes this replica forwarded to the leader.
    pub forwarded_total: AtomicU64,
    /// Client requests served, any RPC.
    pub requests_total: AtomicU64,
    /// Worker heartbeats this replica answered as leader, without a log entry (`liveness.rs`).
    pub heartbeats_total: AtomicU64,
    /// Times the leader this replica knows of changed (to another or to none).
    pub leader_changes_total: AtomicU64,
}

/// Whether this replica is ready to serve (`health.rs` probes; `/readyz` answers it).
pub type Readiness = Result<(), String>;

/// The write path's parts: the leader's batching proposer, a follower's forwarder, and the
/// pending-task bound the leader admits (`ReplicaConfig::tasks_pending_max`).
pub(crate) struct Writes {
    pub(crate) proposer: crate::proposer::Proposer,
    pub(crate) forwarder: crate::forwarder::Forwarder,
    pub(crate) tasks_pending_max: usize,
}

/// The read path's parts: read-index rounds shared by concurrent reads (confirmed locally while
/// leading, asked of the leader otherwise; heartbeats' at most one per `HEARTBEAT_ROUND_GAP_MS`),
/// and the read floor: (term, last log index) when a read first found this replica leading in that
/// term, no read index of that term below it (`local_read_index`).
struct Reads {
    local_rounds: crate::read_index::ReadIndexRounds,
    remote_rounds: crate::read_index::ReadIndexRounds,
    beat_rounds: crate::read_index::ReadIndexRounds,
    leader_read_floor: std::sync::Mutex<(u64, u64)>,
}

impl Reads {
    fn new() -> Reads {
        Reads {
            local_rounds: Default::default(),
            remote_rounds: Default::default(),
            beat_rounds: crate::read_index::ReadIndexRounds::with_gap(Duration::from_millis(
                limits::HEARTBEAT_ROUND_GAP_MS,
            )),
            leader_read_floor: std::sync::Mutex::new((0, 0)),
        }
    }
}

/// What a replica is made of apart from its settings (from `config`) and the role parts
/// `Replica::new` builds.
pub(crate) struct Parts<'a> {
    pub(crate) config: &'a crate::ReplicaConfig,
    pub(crate) addr: String,
    pub(crate) raft: Raft,
    pub(crate) sm: SmHandle,
    pub(crate) peers: Arc<Peers>,
    pub(crate) writes: Writes,
    pub(crate) sync_stats: Arc<raftsched_store::SyncStats>,
    pub(crate) committed_index: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) clocks: Arc<crate::clock::Clocks>,
    pub(crate) quorum: Arc<crate::quorum::Quorum>,
    pub(crate) active: raftsched_format::ActiveVersion,
    pub(crate) auth: Arc<crate::auth::Auth>,
}

impl Replica {
    pub(crate) fn new(p: Parts) -> Replica {
        let config = p.config;
        Replica {
            id: config.id,
            worker_heartbeats: crate::liveness::HeartbeatPolicy {
                timeout_ms: config.worker_heartbeat_timeout_ms,
                per_second_max: config.worker_heartbeats_per_second_max,
            },
            retain_finished: config.retain_finished,
            addr: p.addr,
            raft: p.raft,
            sm: p.sm,
            peers: p.peers,
            admission: crate::admission::Admission::new(config.id),
            writes: p.writes,
            reads: Reads::new(),
            liveness: Default::default(),
            counters: Default::default(),
            sync_stats: p.sync_stats,
            rpc_stats: Default::default(),
            committed_index: p.committed_index,
            snapshot_seen: std::sync::Mutex::new((0, std::time::Instant::now())),
            leader_contact: Default::default(),
            timing: config.timing.clone(),
            clocks: p.clocks,
            quorum: p.quorum,
            readiness: tokio::sync::watch::Sender::new(Err("starting".to_string())),
            active: p.active,
            auth: p.auth,
        }
    }

    /// A read index for a follower's read (`Raft.ReadIndex`): this replica's, confirmed with a
    /// quorum, shared with the reads under way.
    pub(crate) async fn read_index_for_peer(&self) -> Result<u64, Status> {
        self.reads.local_rounds.get(|| self.local_read_index()).await
    }

    fn leader(&self) -> Leader {
        // Borrowed, not cloned: this runs on every request.
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        match metrics.current_leader {
            Some(id) if id == self.id && metrics.state == ServerState::Leader => Leader::Me,
            Some(id) if id == self.id => Leader::Unknown,
            Some(id) => match metrics.membership_config.membership().get_node(&id) {
                Some(node) => Leader::Other(id, node.addr.clone()),
                None => Leader::Unknown,
            },
            None => Leader::Unknown,
        }
    }

    /// `body` as a reply that names the leader's address (metadata `LEADER_HINT_KEY`) when this
    /// replica knows a leader other than itself: clients send their next writes there, saving the
    /// forward hop (about 0.1 ms of CPU per write over the trio on the benchmark machine).
    pub(crate) fn hinted<T>(&self, body: T) -> tonic::Response<T> {
        let mut response = tonic::Response::new(body);
        if let Leader::Other(_, addr) = self.leader() {
            // An address that is not valid metadata is simply not hinted.
            if let Ok(value) = addr.parse() {
                response.metadata_mut().insert(raftsched_api::LEADER_HINT_KEY, value);
            }
        }
        response
    }

    fn known_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Backs off for `backoff`, or less: until this replica hears of a leader other than `seen`.
    /// After a failover the new leader is used the moment it is known, not after the backoff.
    async fn wait_leader_change(&self, seen: Option<NodeId>, backoff: Duration) {
        // A timeout (or a stopping Raft) ends the wait just the same; the caller looks again.
        let _ = self.raft.wait(Some(backoff)).metrics(|m| m.current_leader != seen, "a leader change").await;
    }

    /// UNAVAILABLE naming the missing quorum, when this replica knows there is none: it leads but
    /// no majority answered it within the election timeout, or it finds no leader and its last
    /// pre-vote round reached no majority (and no leader spoke to it since).
    pub(crate) fn no_quorum(&self) -> Option<Status> {
        let (why, since_ms) = self.quorum.lost()?;
        if self.leader_contact.last_ms() > since_ms {
            return None;
        }
        Some(Status::unavailable(why))
    }

    /// A live leader spoke to this replica (or it granted a vote): the election driver waits.
    pub(crate) fn touch_contact(&self) {
        self.leader_contact.touch(self.quorum.now_ms());
    }

    /// This replica's clock verdict now: as leader over the voters' readings, otherwise from the
    /// leader's reading and estimate.
    pub fn clock_verdict(&self) -> crate::clock::Verdict {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let leader = if m.state == ServerState::Leader { Some(self.id) } else { m.current_leader };
        self.clocks.verdict(self.id, leader, &voters)
    }

    /// What this replica knows of itself when it answers a pre-vote.
    /// (term, index) of this replica's last log entry, as Raft compares logs.
    pub(crate) fn last_log(&self) -> Option<(u64, u64)> {
        self.raft.data_metrics().borrow().last_log.map(|l| (l.leader_id.term, l.index))
    }

    pub(crate) fn voter_view(&self) -> crate::vote::VoterView {
        let (state, leader) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.state, m.current_leader)
        };
        crate::vote::VoterView {
            now_ms: self.quorum.now_ms(),
            state,
            last_log: self.last_log(),
            last_contact_ms: self.leader_contact.last_ms(),
            leader,
            has_quorum: self.quorum.lost().is_none(),
            own_skew_ms: self.clocks.published().skew_ms(),
        }
    }

    /// Takes one in-flight slot, or RESOURCE_EXHAUSTED when all are busy.
    pub(crate) fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.counters.requests_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.admission.request()
    }

    /// The heartbeat terms (least interval, timeout; ms) for the registry as applied now, when
    /// this replica leads: what a worker is told, read before its request is answered. `None` on
    /// a follower: only the leader, whose expiry scans hold workers to them, tells terms
    /// (`HeartbeatPolicy`, why).
    pub(crate) fn heartbeat_terms(&self) -> Option<(u64, u64)> {
        matches!(self.leader(), Leader::Me).then(|| self.worker_heartbeats.terms(self.sm.read(|sm| sm.worker_count())))
    }

    /// Takes one heartbeat slot, or RESOURCE_EXHAUSTED when all are busy.
    pub(crate) fn admit_heartbeat(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.admission.heartbeat()
    }

    /// Takes one long-poll slot, or RESOURCE_EXHAUSTED when all are busy.
    pub(crate) fn admit_long_poll(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.admission.long_poll()
    }

    /// Applies `op` through Raft, wherever the leader is (`write_many` of one).
    pub async fn write(&self, op: Op) -> Result<Response, Status> {
        self.write_many(vec![op]).await.pop().expect("one answer per op")
    }

    /// Applies `ops` through Raft, wherever the leader is, as one group: one entry on the leader,
    /// one forward call from a follower (a write is batched once on its way to the log), each
    /// answered in order. What did not reach a leader is tried again through leader changes until
    /// `REQUEST_TIMEOUT`, then answered UNAVAILABLE (the client may retry elsewhere: ops are
    /// idempotent).
    pub async fn write_many(&self, ops: Vec<Op>) -> Vec<Result<Response, Status>> {
        let started = Instant::now();
        let mut backoff_ms = limits::LEADER_WAIT_BACKOFF_MS_MIN;
        let mut last_error = String::from("no leader elected yet");
        let mut answers: Vec<Option<Result<Response, Status>>> = vec![None; ops.len()];
        let mut left: Vec<usize> = (0..ops.len()).collect();
        while !left.is_empty() && started.elapsed() < limits::REQUEST_TIMEOUT {
            if let Some(status) = self.no_quorum() {
                left.drain(..).for_each(|i| answers[i] = Some(Err(status.clone())));
                break;
            }
            let seen = self.known_leader();
            let group: Vec<Op> = left.iter().map(|i| ops[*i].clone()).collect();
            let tried = self.write_once(group, &mut last_error).await;
            left = left
                .into_iter()
                .zip(tried)
                .filter_map(|(i, answer)| match answer {
                    Some(answer) => {
                        answers[i] = Some(answer);
                        None
                    }
                    None => Some(i),
                })
                .collect();
            if left.is_empty() {
                break;
            }
            self.wait_leader_change(seen, Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(limits::LEADER_WAIT_BACKOFF_MS_MAX);
        }
        let timed_out = || Err(unavailable_after(&last_error, limits::REQUEST_TIMEOUT));
        answers.into_iter().map(|a| a.unwrap_or_else(timed_out)).collect()
    }

    /// One try of `write_many`: the group proposed here (leading) or forwarded to the leader.
    /// Each answer, or `None` for an op to try again (no leader reached); `last_error` says why.
    async fn write_once(&self, group: Vec<Op>, last_error: &mut String) -> Vec<Option<Result<Response, Status>>> {
        match self.leader() {
            Leader::Me => {
                let answers: Vec<_> = (self.propose_many(group).await.into_iter())
                    .map(|answer| match answer {
                        Ok(response) => Some(Ok(response)),
                        Err(Some(status)) => Some(Err(status)),
                        Err(None) => None,
                    })
                    .collect();
                if answers.iter().any(Option::is_none) {
                    *last_error = "lost leadership while proposing".to_string();
                }
                answers
            }
            Leader::Other(id, addr) => {
                let forwarded = self.forward(&addr, group).await;
                if let Some(Err(status)) = forwarded.iter().find(|r| r.as_ref().is_err_and(is_retryable)) {
                    *last_error = format!("forward to leader {id} at {addr}: {}", status.message());
                }
                // The leader's own refusal (bad input, conflict) is the answer.
                (forwarded.into_iter())
                    .map(|r| r.map_or_else(|s| (!is_retryable(&s)).then_some(Err(s)), |x| Some(Ok(x))))
                    .collect()
            }
            Leader::Unknown => vec![None; group.len()],
        }
    }

    /// Proposes client ops on this replica, which believes it leads, as one group (batched with
    /// the other groups proposed at the same moment); heartbeats are answered without the log,
    /// submits over `tasks_pending_max` refused at once. Each answer: `Err(None)`: it does not
    /// lead any more (retry elsewhere); `Err(Some(status))`: a final error.
    pub(crate) async fn propose_many(&self, ops: Vec<Op>) -> Vec<Result<Response, Option<Status>>> {
        let mut answers: Vec<Option<Result<Response, Option<Status>>>> = vec![None; ops.len()];
        let (mut group, mut in_group, mut beats) = (Vec::new(), Vec::new(), Vec::new());
        for (i, op) in ops.into_iter().enumerate() {
            if let Op::Heartbeat { worker_id, instance } = op {
                beats.push((i, worker_id, instance));
                continue;
            }
            self.counters.proposals_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Op::Submit { key, spec } = &op {
                if let Err(refused) = self.admit_pending(key, spec.run_at_ms) {
                    answers[i] = Some(Ok(Response::Rejected(refused)));
                    continue;
                }
            }
            in_group.push(i);
            group.push(op);
        }
        let beaten = futures::future::join_all(beats.iter().map(|(_, w, instance)| self.beat(w, *instance)));
        let proposed = async {
            match group.is_empty() {
                true => Vec::new(),
                false => self.writes.proposer.propose(group).await,
            }
        };
        let (beaten, proposed) = tokio::join!(beaten, proposed);
        for ((i, _, _), answer) in beats.iter().zip(beaten) {
            answers[*i] = Some(answer);
        }
        for (i, answer) in in_group.into_iter().zip(proposed) {
            answers[i] = Some(answer);
        }
        answers.into_iter().map(|a| a.expect("every op answered")).collect()
    }

    /// Answers a worker's heartbeat on the leader without a log entry (`liveness.rs`): after a
    /// read-index round that started after it arrived, at that index's applied state.
    /// `Err(None)`: this replica does not lead (retry elsewhere).
    async fn beat(&self, worker_id: &str, instance: u64) -> Result<Response, Option<Status>> {
        self.counters.heartbeats_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (received, received_wall_ms) = (tokio::time::Instant::now(), now_ms());
        let index = self.reads.beat_rounds.get(|| self.local_read_index()).await.map_err(|_| None)?;
        self.wait_applied(index).await.map_err(Some)?;
        let answer = self.sm.read(|sm| sm.heartbeat_answer(worker_id, instance));
        if let Response::HeartbeatOk { epoch } = answer {
            self.liveness.record(worker_id, crate::liveness::Beat { epoch, received, received_wall_ms });
        }
        Ok(answer)
    }

    /// The leader's in-memory heartbeat times (`liveness.rs`): its own while it leads, asked of
    /// the leader otherwise; none when there is no leader or it does not answer (an older build's
    /// leader logs every heartbeat, so the state has them).
    pub(crate) async fn beat_times(&self) -> crate::liveness::BeatTimes {
        let beats = match self.leader() {
            Leader::Me => self.liveness.to_api(),
            Leader::Other(_, addr) => self.remote_beats(&addr).await.unwrap_or_default(),
            Leader::Unknown => Vec::new(),
        };
        beats.into_iter().map(|b| (b.id, (b.epoch, b.received_ms))).collect()
    }

    async fn remote_beats(&self, addr: &str) -> Result<Vec<raftsched_api::WorkerBeat>, Status> {
        let mut client = self.peers.client(addr)?;
        let mut request = tonic::Request::new(raftsched_api::HeartbeatsRequest {});
        request.set_timeout(limits::STATUS_TIMEOUT);
        let reply = tokio::time::timeout(limits::STATUS_TIMEOUT, client.heartbeats(request))
            .await
            .map_err(|_| Status::unavailable("heartbeats timed out"))??;
        Ok(reply.into_inner().beats)
    }

    /// Waits until this replica applied `index` (at once when it has), within `REQUEST_TIMEOUT`.
    pub(crate) async fn wait_applied(&self, index: u64) -> Result<(), Status> {
        self.wait_applied_within(index, limits::REQUEST_TIMEOUT).await
    }

    /// Waits until the state machine has applied `index`, at most `wait`. On the state machine's
    /// own applied watch, not openraft's metrics: that is the state reads then look at, and it
    /// costs no copy of the metrics and no timer when it is already there (the common case).
    async fn wait_applied_within(&self, index: u64, wait: Duration) -> Result<(), Status> {
        let mut applied = self.sm.subscribe();
        if *applied.borrow_and_update() >= index {
            return Ok(());
        }
        let caught_up = tokio::time::timeout(wait, applied.wait_for(|a| *a >= index)).await;
        if matches!(caught_up, Ok(Ok(_))) {
            return Ok(());
        }
        Err(Status::unavailable(format!("replica {} did not catch up to index {index}", self.id)))
    }

    /// The operator's bound on pending tasks, checked before a submit is proposed: a new key that
    /// would be pending while `tasks_pending_max` are is refused as `apply` refuses at its hard
    /// bound (the same rejection, so the same RESOURCE_EXHAUSTED). A known key passes (its retry answers with its task), and so
    /// does a task for later (`run_at_ms`: bounded by `tasks_scheduled_max`). Submits in flight
    /// are not counted, so the bound may be passed by one batch; `apply`'s is exact.
    fn admit_pending(&self, key: &str, run_at_ms: Option<u64>) -> Result<(), Rejection> {
        if run_at_ms.is_some_and(|at| at > self.clocks.cluster_now_ms()) {
            return Ok(());
        }
        let limit = self.writes.tasks_pending_max;
        let (known, pending) = self.sm.read(|sm| (sm.get_by_key(key).is_some(), sm.count(TaskState::Pending) as usize));
        if known || pending < limit {
            return Ok(());
        }
        Err(Rejection::TooManyPending { count: pending, limit })
    }

    /// Proposes `op` as an entry of its own (the leader loop's decisions: an `Assign`'s token is
    /// its entry's index, so it must not share the entry).
    pub(crate) async fn propose_alone(&self, op: Op) -> Result<Response, Option<Status>> {
        crate::proposer::write(&self.raft, self.id, &self.clocks, op).await
    }

    /// Hands `ops` to the leader at `addr` as one group, in one call with the other writes this
    /// replica forwards at the same moment.
    async fn forward(&self, addr: &str, ops: Vec<Op>) -> Vec<Result<Response, Status>> {
        self.counters.forwarded_total.fetch_add(ops.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.writes.forwarder.forward(addr, ops).await
    }

    /// Waits until this replica's state reflects every write acknowledged before the call began.
    pub async fn read_barrier(&self) -> Result<(), Status> {
        let started = Instant::now();
        let mut backoff_ms = limits::LEADER_WAIT_BACKOFF_MS_MIN;
        let mut last_error = String::from("no leader elected yet");
        while started.elapsed() < limits::REQUEST_TIMEOUT {
            if let Some(status) = self.no_quorum() {
                return Err(status);
            }
            let seen = self.known_leader();
            let read_index = match self.leader() {
                Leader::Me => match self.reads.local_rounds.get(|| self.local_read_index()).await {
                    Ok(index) => Some(index),
                    Err(e) => {
                        last_error = e.message().to_string();
                        None
                    }
                },
                Leader::Other(id, addr) => match self.reads.remote_rounds.get(|| self.remote_read_index(&addr)).await {
                    Ok(index) => Some(index),
                    Err(e) => {
                        last_error = format!("read index from leader {id} at {addr}: {}", e.message());
                        None
                    }
                },
                Leader::Unknown => None,
            };
            if let Some(index) = read_index {
                return self
                    .wait_applied_within(index, limits::REQUEST_TIMEOUT.saturating_sub(started.elapsed()))
                    .await;
            }
            self.wait_leader_change(seen, Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(limits::LEADER_WAIT_BACKOFF_MS_MAX);
        }
        Err(unavailable_after(&last_error, limits::REQUEST_TIMEOUT))
    }

    /// On the leader: confirms leadership with a quorum and returns the index to read at.
    ///
    /// Never below the leader's last log index as of the first read of its term. openraft 0.9
    /// restores a replica that led before a restart as leader at once, without a new no-op entry,
    /// and gives its persisted commit index as the read index; that index is saved lazily and may
    /// lag entries the leader had already committed, and acknowledged, before the restart. A read
    /// there missed an acknowledged submit (harness `--nemesis all --seed 2115`, a kill-all). Every
    /// committed entry is in the leader's log, so waiting until its log as of then is applied reads
    /// them all; in a term won by election the no-op is in that log already, so this costs nothing.
    pub(crate) async fn local_read_index(&self) -> Result<u64, Status> {
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map_or(0, |l| l.index).max(self.read_floor())),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                Err(Status::unavailable("not the leader"))
            }
            Err(RaftError::APIError(e)) => Err(Status::unavailable(format!("leadership not confirmed: {e}"))),
            Err(RaftError::Fatal(e)) => Err(Status::unavailable(format!("replica {} is stopping: {e}", self.id))),
        }
    }

    /// The read floor of the current term (see `local_read_index`), set on its first read.
    fn read_floor(&self) -> u64 {
        let (term, last_log_index) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_term, m.last_log_index.unwrap_or(0))
        };
        let mut floor = self.reads.leader_read_floor.lock().unwrap_or_else(|p| p.into_inner());
        if floor.0 != term {
            *floor = (term, last_log_index);
        }
        floor.1
    }

    async fn remote_read_index(&self, addr: &str) -> Result<u64, Status> {
        let mut client = self.peers.client(addr)?;
        let mut request = tonic::Request::new(raftsched_api::ReadIndexRequest {});
        request.set_timeout(limits::FORWARD_TIMEOUT);
        let reply = tokio::time::timeout(limits::FORWARD_TIMEOUT, client.read_index(request))
            .await
            .map_err(|_| Status::unavailable("read index timed out"))??;
        Ok(reply.into_inner().index)
    }

    /// Reads the applied state; `stale` skips the read barrier.
    pub async fn read<R>(&self, stale: bool, f: impl FnOnce(&StateMachine) -> R) -> Result<R, Status> {
        if !stale && !crate::fault::stale_reads() {
            self.read_barrier().await?;
        }
        Ok(self.sm.read(f))
    }

    /// Waits until `f` finds what it looks for in the applied state, or `wait` passes (then `None`).
    pub async fn wait_for<T>(&self, wait: Duration, f: impl Fn(&StateMachine) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut applied = self.sm.subscribe();
        loop {
            applied.borrow_and_update();
            if let Some(found) = self.sm.read(&f) {
                return Some(found);
            }
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return None },
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    /// This replica's own view, for cluster status.
    pub fn own_status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        MemberStatus {
            id: self.id,
            addr: self.addr.clone(),
            role: role.to_string(),
            role_enum: raftsched_api::role_enum(role),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            reachable: true,
            error: String::new(),
            current_leader: m.current_leader.unwrap_or(0),
            format_min: raftsched_format::FORMAT_VERSION_MIN,
            format_max: raftsched_format::FORMAT_VERSION_MAX,
            build_version: env!("CARGO_PKG_VERSION").to_string(),
            build_commit: crate::BUILD_COMMIT.to_string(),
            clock_skew_ms: self.clocks.published().skew_ms().unwrap_or(0),
            clock_skew_known: self.clocks.published().skew_ms().is_some(),
            no_quorum: m.state == ServerState::Leader && self.quorum.lost().is_some(),
        }
    }

    /// The status replica `id` at `addr` reports, asked with `STATUS_TIMEOUT`; unreachable if it
    /// does not answer.
    pub async fn member_status(&self, id: NodeId, addr: &str) -> MemberStatus {
        let unreachable = |error: String| MemberStatus {
            id,
            addr: addr.to_string(),
            role: "unknown".to_string(),
            role_enum: raftsched_api::Role::Unknown as i32,
            reachable: false,
            error,
            ..Default::default()
        };
        let mut client = match self.peers.client(addr) {
            Ok(c) => c,
            Err(e) => return unreachable(e.message().to_string()),
        };
        let mut request = tonic::Request::new(raftsched_api::NodeStatusRequest {});
        request.set_timeout(limits::STATUS_TIMEOUT);
        match tokio::time::timeout(limits::STATUS_TIMEOUT, client.node_status(request)).await {
            Ok(Ok(reply)) => {
                // A member of a build before `role_enum` leaves it 0: fill it from the string.
                let mut status = reply.into_inner();
                status.role_enum = raftsched_api::role_enum(&status.role);
                status
            }
            Ok(Err(status)) => unreachable(status.message().to_string()),
            Err(_) => unreachable("timed out".to_string()),
        }
    }

    /// Every member's status: this replica's own, and each other member's, asked concurrently with
    /// `STATUS_TIMEOUT`; a member that does not answer is listed as unreachable.
    pub async fn cluster_status(&self) -> Vec<MemberStatus> {
        let members: Vec<(NodeId, BasicNode)> = {
            let m = self.raft.metrics().borrow().clone();
            m.membership_config.membership().nodes().map(|(id, n)| (*id, n.clone())).collect()
        };
        let asks = members.into_iter().map(|(id, node)| async move {
            if id == self.id {
                return self.own_status();
            }
            self.member_status(id, &node.addr).await
        });
        futures::future::join_all(asks).await
    }
}

/// Whether a failed forward may be retried (possibly through another leader).
fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Unknown
    )
}

/// Whether `op` may come from a client (directly or forwarded by a follower): batches and the
/// leader's own decisions never do, and the proposer's batch would refuse every op beside them.
pub(crate) fn is_client_op(op: &Op) -> bool {
    !matches!(op, Op::Batch { .. } | Op::BatchDispatch { .. } | Op::Assign { .. } | Op::SetClusterVersion { .. })
}
