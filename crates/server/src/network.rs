//! openraft's network: Raft RPCs to peers over tonic, each message a `raftsched_format` record in
//! the active format (format 0 while the cluster version is 0, so replicas of the previous build
//! read it).

use std::sync::Arc;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use raftsched_api::RaftBytes;
use raftsched_format::{ActiveVersion, ApiError, FormatError, ReplyKind};
use raftsched_store::{NodeId, TypeConfig};

use crate::clock::Clocks;
use crate::peers::Peers;
use crate::quorum::Quorum;

pub struct NetworkFactory {
    pub peers: Arc<Peers>,
    /// How soon openraft tries an unreachable (or timed-out) peer again; its own default is 500 ms.
    /// Half the heartbeat interval: a restarted or briefly slow replica must hear from the leader
    /// well before its election timer (`election.rs`) runs out, or it campaigns against a live
    /// leader.
    pub unreachable_retry_ms: u64,
    /// The format messages are sent in.
    pub active: ActiveVersion,
    /// Clock readings from replies (`clock.rs`).
    pub clocks: Arc<Clocks>,
    /// Who answered, for check-quorum (`quorum.rs`).
    pub quorum: Arc<Quorum>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            unreachable_retry_ms: self.unreachable_retry_ms,
            active: self.active.clone(),
            clocks: self.clocks.clone(),
            quorum: self.quorum.clone(),
        }
    }
}

pub struct Network {
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
    unreachable_retry_ms: u64,
    active: ActiveVersion,
    clocks: Arc<Clocks>,
    quorum: Arc<Quorum>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad reply from {addr}: {error}")]
struct BadReply {
    addr: String,
    error: FormatError,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Network {
    /// Sends one RPC: `which` picks the method. A transport failure is `Unreachable` (openraft backs
    /// off); the peer's own Raft error comes back as `RemoteError`.
    async fn call<Resp: ReplyKind, E: ApiError>(
        &self,
        which: Method,
        data: Result<Vec<u8>, FormatError>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E> {
        let data = data.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.peers.client(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(RaftBytes { data });
        request.set_timeout(option.hard_ttl());
        crate::clock::write_headers(request.metadata_mut(), self.clocks.published().skew_ms());
        let sent_ms = crate::clock::wall_ms();
        let call = async {
            match which {
                Method::AppendEntries => client.append_entries(request).await,
                Method::Vote => client.vote(request).await,
                Method::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(reply)) => {
                if let (Some(their_ms), _) = crate::clock::read_headers(reply.metadata()) {
                    self.clocks.replied(self.target, their_ms, sent_ms, crate::clock::wall_ms());
                }
                reply.into_inner()
            }
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Err(elapsed) => return Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
        };
        let result = raftsched_format::decode_reply::<Resp, E>(&reply.data)
            .map_err(|error| RPCError::Network(NetworkError::new(&BadReply { addr: self.addr.clone(), error })))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for Network {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(std::time::Duration::from_millis(self.unreachable_retry_ms)))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let data = raftsched_format::encode_append_entries(&rpc, self.active.get());
        let sent = tokio::time::Instant::now();
        let reply: RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> =
            self.call(Method::AppendEntries, data, &option).await;
        // Any answer in this leader's term keeps the follower in touch (check-quorum).
        if matches!(&reply, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.quorum.answered(self.target, sent);
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let data = raftsched_format::encode_install_snapshot(&rpc, self.active.get());
        let (sent, vote) = (tokio::time::Instant::now(), rpc.vote);
        let reply: RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> =
            self.call(Method::InstallSnapshot, data, &option).await;
        if matches!(&reply, Ok(r) if r.vote <= vote) {
            self.quorum.answered(self.target, sent);
        }
        reply
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let data = raftsched_format::encode_vote_request(&rpc, self.active.get());
        self.call(Method::Vote, data, &option).await
    }
}
