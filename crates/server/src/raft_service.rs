//! The replica-to-replica gRPC service: Raft RPCs, forwarded writes, read index, node status.
//!
//! Every message is a `raftsched_format` record, checked (size, checksum, version, structure)
//! before anything acts on it: what does not decode is answered INVALID_ARGUMENT with the reason
//! and never reaches openraft. Replies go out in the format the request came in, so a replica of
//! the previous build (format 0) understands them.
//!
//! Who is calling: `auth.rs` has checked the caller's credentials before the body was read. Here
//! the message must agree with them: the sender a message names (a candidate, a leader) must be
//! the replica whose proof it carries, and a vote, a forwarded write, a read-index or a status
//! request must come from a member of this replica's current configuration, so that a removed
//! replica cannot disrupt elections. AppendEntries and InstallSnapshot are not checked against
//! the membership: a follower that has not yet seen the entry adding a replica must still accept
//! that replica once it leads (Raft processes RPCs "without consulting the configuration"); a
//! non-member cannot lead anyway, since no member votes for it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::InstallSnapshotResponse;
use openraft::{Snapshot, SnapshotSegmentId};
use raftsched_api::raft_server::Raft as RaftRpc;
use raftsched_api::{
    HeartbeatsRequest, HeartbeatsResponse, MemberStatus, NodeStatusRequest, PreVoteRequest, PreVoteResponse, RaftBytes,
    ReadIndexRequest, ReadIndexResponse,
};
use raftsched_format::{ApiError, FormatError, ForwardOutcome, Meta, RaftReply, ReplyKind, Version};
use raftsched_store::{NodeId, TypeConfig};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::auth::{refused, PeerId, Refusal, Service};
use crate::limits;
use crate::replica::Replica;
use crate::vote::PreVoteAsk;

pub struct RaftService {
    replica: Arc<Replica>,
    /// The snapshot being received from the leader, chunk by chunk.
    incoming: Mutex<Option<Incoming>>,
}

struct Incoming {
    meta: Meta,
    data: Vec<u8>,
}

fn malformed(e: FormatError) -> Status {
    Status::invalid_argument(format!("malformed message: {e}"))
}

fn reply<T: ReplyKind, E: ApiError>(r: &RaftReply<T, E>, version: Version) -> Result<Response<RaftBytes>, Status> {
    let data =
        raftsched_format::encode_reply(r, version).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(with_clock(Response::new(RaftBytes { data })))
}

/// A reply carrying this replica's clock reading (`clock.rs`).
fn with_clock<T>(mut response: Response<T>) -> Response<T> {
    crate::clock::write_headers(response.metadata_mut(), None);
    response
}

type SnapshotReply = RaftReply<InstallSnapshotResponse<NodeId>, InstallSnapshotError>;

/// What one snapshot chunk amounted to.
enum Chunk {
    /// Not the chunk that was expected next: the leader starts over.
    Mismatch(SnapshotMismatch),
    More,
    /// The last chunk: the whole snapshot, checked.
    Complete(Snapshot<TypeConfig>),
}

impl RaftService {
    pub fn new(replica: Arc<Replica>) -> RaftService {
        RaftService { replica, incoming: Mutex::new(None) }
    }

    /// Checks that a message naming `claimed` as its sender may be acted on: see the module doc.
    /// `proven` is the replica the call's credentials name (none without a cluster secret).
    fn admit<T>(&self, req: &Request<T>, claimed: Option<NodeId>, members_only: bool) -> Result<(), Status> {
        let proven = req.extensions().get::<PeerId>().map(|p| p.0);
        let refuse = |reason, status| {
            let caller = req.remote_addr().map(|a| a.ip());
            Err(self.replica.auth.refusals.refuse(Service::Raft, caller, refused(reason, status)))
        };
        if let (Some(proven), Some(claimed)) = (proven, claimed) {
            if proven != claimed {
                let message =
                    format!("the message names replica {claimed} as its sender; the call comes from replica {proven}");
                return refuse(Refusal::SenderMismatch, Status::permission_denied(message));
            }
        }
        let Some(sender) = claimed.or(proven) else { return Ok(()) };
        if !members_only {
            return Ok(());
        }
        let membership = self.replica.raft.metrics().borrow().membership_config.clone();
        let mut members = membership.membership().nodes().map(|(id, _)| *id).peekable();
        // Not yet a member of anything (a joining replica): whoever holds the credentials.
        if members.peek().is_none() || members.any(|id| id == sender) {
            return Ok(());
        }
        let message = format!("replica {sender} is not a member of this cluster's current configuration");
        refuse(Refusal::NotMember, Status::permission_denied(message))
    }

    /// A leader's message counts as contact (for `election.rs`) on arrival, before openraft handles
    /// it: a follower whose disk is slow to append must not campaign against a live leader. A
    /// message from an older term does not count.
    fn touch_if_current(&self, vote: &openraft::Vote<NodeId>) {
        let current = self.replica.raft.metrics().borrow().vote;
        if vote >= &current {
            self.replica.touch_contact();
        }
    }

    /// Keeps the sender's clock reading, if the request carried one.
    fn read_clock<T>(&self, req: &Request<T>, sender: Option<NodeId>) -> Option<i64> {
        let (their_ms, their_skew_ms) = crate::clock::read_headers(req.metadata());
        let (sender, their_ms) = (sender?, their_ms?);
        let now_ms = crate::clock::wall_ms();
        self.replica.clocks.heard(sender, their_ms, their_skew_ms, now_ms);
        Some(their_ms as i64 - now_ms as i64)
    }

    /// Adds one chunk to the snapshot being received; returns the whole snapshot after the last
    /// chunk, checked (decoded, invariants held) before openraft is given it. Reassembled here, not
    /// by openraft, so that a chunk at a wild offset or a body that does not decode is refused as
    /// bad input instead of growing a buffer without bound or stopping Raft with a storage error.
    async fn receive_chunk(&self, req: raftsched_format::InstallSnapshot) -> Result<Chunk, Status> {
        let mut incoming = self.incoming.lock().await;
        let id = req.meta.snapshot_id.clone();
        let expected = match incoming.as_ref() {
            Some(i) if i.meta.snapshot_id == id => i.data.len() as u64,
            _ => 0,
        };
        if req.offset > expected {
            let mismatch = SnapshotMismatch {
                expect: SnapshotSegmentId { id: id.clone(), offset: expected },
                got: SnapshotSegmentId { id, offset: req.offset },
            };
            return Ok(Chunk::Mismatch(mismatch));
        }
        let mut current = match incoming.take() {
            Some(i) if i.meta.snapshot_id == id => i,
            _ => Incoming { meta: req.meta.clone(), data: Vec::new() },
        };
        // A resent chunk replaces what followed its offset.
        current.data.truncate(req.offset as usize);
        if current.data.len() + req.data.len() > limits::SNAPSHOT_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "snapshot over snapshot_bytes_max {} bytes",
                limits::SNAPSHOT_BYTES_MAX
            )));
        }
        current.data.extend_from_slice(&req.data);
        if !req.done {
            *incoming = Some(current);
            return Ok(Chunk::More);
        }
        drop(incoming);
        let Incoming { meta, data } = current;
        let checked = tokio::task::spawn_blocking(move || {
            raftsched_store::check_snapshot(&meta, &data)
                .map(|()| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        checked.map(Chunk::Complete).map_err(|e| Status::invalid_argument(format!("snapshot refused: {e}")))
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let (version, rpc) = raftsched_format::decode_append_entries(&req.get_ref().data).map_err(malformed)?;
        self.admit(&req, rpc.vote.leader_id().voted_for(), false)?;
        self.read_clock(&req, rpc.vote.leader_id().voted_for());
        self.touch_if_current(&rpc.vote);
        reply(&self.replica.raft.append_entries(rpc).await, version)
    }

    async fn vote(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let (version, rpc) = raftsched_format::decode_vote_request(&req.get_ref().data).map_err(malformed)?;
        self.admit(&req, rpc.vote.leader_id().voted_for(), true)?;
        self.read_clock(&req, rpc.vote.leader_id().voted_for());
        let (candidate_term, candidate_log) = (rpc.vote.leader_id().term, rpc.last_log_id);
        let answer = self.replica.raft.vote(rpc).await;
        match &answer {
            // Raft resets its election timer on granting a vote: the candidate gets its chance.
            Ok(r) if r.vote_granted => self.replica.touch_contact(),
            // Refused for a shorter log: this replica is the better candidate (`election.rs`).
            Ok(r) if r.last_log_id > candidate_log => self.replica.leader_contact.outrun(candidate_term),
            _ => {}
        }
        reply(&answer, version)
    }

    async fn install_snapshot(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let (version, rpc) = raftsched_format::decode_install_snapshot(&req.get_ref().data).map_err(malformed)?;
        self.admit(&req, rpc.vote.leader_id().voted_for(), false)?;
        self.read_clock(&req, rpc.vote.leader_id().voted_for());
        self.touch_if_current(&rpc.vote);
        let my_vote = self.replica.raft.metrics().borrow().vote;
        let vote = rpc.vote;
        if vote < my_vote {
            return reply::<_, InstallSnapshotError>(&Ok(InstallSnapshotResponse { vote: my_vote }), version);
        }
        let answer: SnapshotReply = match self.receive_chunk(rpc).await? {
            Chunk::Mismatch(m) => Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))),
            Chunk::More => Ok(InstallSnapshotResponse { vote: my_vote }),
            Chunk::Complete(snapshot) => match self.replica.raft.install_full_snapshot(vote, snapshot).await {
                Ok(r) => Ok(InstallSnapshotResponse { vote: r.vote }),
                Err(fatal) => Err(RaftError::Fatal(fatal)),
            },
        };
        reply(&answer, version)
    }

    /// A follower's client writes (`forwarder.rs`), answered one by one in order. Each is proposed
    /// here only if this replica leads; otherwise it is answered `NotLeader` and the follower looks
    /// for the leader again (no forwarding chains). All are proposed as one group, so they share one
    /// entry.
    /// Not counted against `in_flight_requests_max`: the follower that forwards them already holds
    /// a slot for each client request, so forwards are bounded by the followers' budgets.
    async fn forward(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        self.admit(&req, None, true)?;
        let (version, ops) = raftsched_format::decode_forward(&req.into_inner().data).map_err(malformed)?;
        limits::check_batch_len("forwarded ops", ops.len(), limits::FORWARD_BATCH_LEN_MAX, "forward_batch_len_max")?;
        if let Some(op) = ops.iter().find(|op| !crate::replica::is_client_op(op)) {
            return Err(Status::invalid_argument(format!("{} is not a client write", op.name())));
        }
        // One group: the follower's batch stays one entry here (batched once on its way to the log).
        let outcomes: Vec<ForwardOutcome> = (self.replica.propose_many(ops).await.into_iter())
            .map(|answer| match answer {
                Ok(response) => ForwardOutcome::Applied(response),
                Err(Some(status)) => {
                    ForwardOutcome::Refused { code: status.code() as i32, message: status.message().to_string() }
                }
                Err(None) => ForwardOutcome::NotLeader,
            })
            .collect();
        let data = raftsched_format::encode_forward_reply(&outcomes, version)
            .map_err(|e| Status::internal(format!("encode reply: {e}")))?;
        Ok(Response::new(RaftBytes { data }))
    }

    async fn read_index(&self, req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        self.admit(&req, None, true)?;
        let index = self.replica.read_index_for_peer().await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }

    async fn heartbeats(&self, req: Request<HeartbeatsRequest>) -> Result<Response<HeartbeatsResponse>, Status> {
        self.admit(&req, None, true)?;
        Ok(Response::new(HeartbeatsResponse { beats: self.replica.liveness.to_api() }))
    }

    async fn node_status(&self, req: Request<NodeStatusRequest>) -> Result<Response<MemberStatus>, Status> {
        self.admit(&req, None, true)?;
        Ok(Response::new(self.replica.own_status()))
    }

    /// Whether this replica would vote for the candidate in its next term (`election.rs`).
    /// Changes no state: no term, no vote, no contact.
    async fn pre_vote(&self, req: Request<PreVoteRequest>) -> Result<Response<PreVoteResponse>, Status> {
        let candidate = req.get_ref().candidate;
        self.admit(&req, Some(candidate), true)?;
        let clock_offset_ms = self.read_clock(&req, Some(candidate));
        let r = req.into_inner();
        let ask = PreVoteAsk {
            candidate,
            last_log: r.has_log.then_some((r.last_log_term, r.last_log_index)),
            clock_offset_ms,
        };
        let me = self.replica.voter_view();
        let timing = &self.replica.timing;
        let answer =
            crate::vote::answer_pre_vote(&ask, &me, timing.election_timeout_ms_min, self.replica.clocks.bound_ms);
        if let Err(why) = &answer {
            tracing::debug!(id = self.replica.id, candidate, why, "pre-vote refused");
        }
        let term = self.replica.raft.metrics().borrow().current_term;
        Ok(with_clock(Response::new(PreVoteResponse {
            granted: answer.is_ok(),
            term,
            reason: answer.err().unwrap_or_default(),
        })))
    }
}
