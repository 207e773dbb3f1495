//! The replica-to-replica gRPC service: Raft RPCs, forwarded writes, read index, node status.
//!
//! Input from the network is decoded with bincode; anything that does not decode is answered
//! INVALID_ARGUMENT and never reaches openraft.

use std::sync::Arc;

use raftsched_api::raft_server::Raft as RaftRpc;
use raftsched_api::{MemberStatus, NodeStatusRequest, RaftBytes, ReadIndexRequest, ReadIndexResponse};
use raftsched_state::Op;
use serde::{de::DeserializeOwned, Serialize};
use tonic::{Request, Response, Status};

use crate::forwarder::Forwarded;
use crate::limits;
use crate::replica::Replica;

pub struct RaftService {
    pub replica: Arc<Replica>,
}

fn decode<T: DeserializeOwned>(req: Request<RaftBytes>, what: &str) -> Result<T, Status> {
    bincode::deserialize(&req.into_inner().data).map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftBytes>, Status> {
    let data = bincode::serialize(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(Response::new(RaftBytes { data }))
}

impl RaftService {
    /// A leader's message counts as contact (for `election.rs`) on arrival, before openraft handles
    /// it: a follower whose disk is slow to append must not campaign against a live leader. A
    /// message from an older term does not count.
    fn touch_if_current(&self, vote: &openraft::Vote<raftsched_store::NodeId>) {
        let current = self.replica.raft.metrics().borrow().vote;
        if vote >= &current {
            self.replica.leader_contact.touch();
        }
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let rpc: openraft::raft::AppendEntriesRequest<raftsched_store::TypeConfig> =
            decode(req, "append-entries request")?;
        self.touch_if_current(&rpc.vote);
        encode(&self.replica.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let rpc: openraft::raft::VoteRequest<raftsched_store::NodeId> = decode(req, "vote request")?;
        let (candidate_term, candidate_log) = (rpc.vote.leader_id().term, rpc.last_log_id);
        let reply = self.replica.raft.vote(rpc).await;
        match &reply {
            // Raft resets its election timer on granting a vote: the candidate gets its chance.
            Ok(r) if r.vote_granted => self.replica.leader_contact.touch(),
            // Refused for a shorter log: this replica is the better candidate (`election.rs`).
            Ok(r) if r.last_log_id > candidate_log => self.replica.leader_contact.outrun(candidate_term),
            _ => {}
        }
        encode(&reply)
    }

    async fn install_snapshot(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let rpc: openraft::raft::InstallSnapshotRequest<raftsched_store::TypeConfig> =
            decode(req, "install-snapshot request")?;
        self.touch_if_current(&rpc.vote);
        encode(&self.replica.raft.install_snapshot(rpc).await)
    }

    /// A follower's client writes (`forwarder.rs`), answered one by one in order. Each is proposed
    /// here only if this replica leads; otherwise it is answered `NotLeader` and the follower looks
    /// for the leader again (no forwarding chains). All are proposed at once, so the proposer puts
    /// them in one or a few entries.
    /// Not counted against `in_flight_requests_max`: the follower that forwards them already holds
    /// a slot for each client request, so forwards are bounded by the followers' budgets.
    async fn forward(&self, req: Request<RaftBytes>) -> Result<Response<RaftBytes>, Status> {
        let ops: Vec<Op> = decode(req, "forwarded ops")?;
        limits::check_batch_len("forwarded ops", ops.len(), limits::FORWARD_BATCH_LEN_MAX, "forward_batch_len_max")?;
        let outcomes = futures::future::join_all(ops.into_iter().map(|op| async {
            match self.replica.propose(op).await {
                Ok(response) => Forwarded::Applied(response),
                Err(Some(status)) => {
                    Forwarded::Refused { code: status.code() as i32, message: status.message().to_string() }
                }
                Err(None) => Forwarded::NotLeader,
            }
        }))
        .await;
        encode(&outcomes)
    }

    async fn read_index(&self, _req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        let index = self.replica.local_rounds.get(|| self.replica.local_read_index()).await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }

    async fn node_status(&self, _req: Request<NodeStatusRequest>) -> Result<Response<MemberStatus>, Status> {
        Ok(Response::new(self.replica.own_status()))
    }
}
