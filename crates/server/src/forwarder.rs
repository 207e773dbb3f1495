//! Batching of forwarded writes on a follower: the mirror of `proposer.rs`.
//!
//! Two thirds of the writes a trio serves arrive at a follower, which hands each to the leader.
//! One `Raft.Forward` call per write made the leader handle one RPC per write on top of the Raft
//! work. The forwarder takes every write queued while earlier forwards are in flight and sends
//! them to the leader in one call; the leader proposes them all at once (its proposer puts them in
//! one or a few entries) and answers each. Nothing waits on a timer: a lone write goes out at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use raftsched_api::RaftBytes;
use raftsched_batch::{Batcher, InFlight};
use raftsched_format::{ActiveVersion, ForwardOutcome};
use raftsched_state::{Op, Response};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tonic::{Code, Status};

use crate::limits;
use crate::peers::Peers;

/// Writes waiting for a forward; over it, callers wait (the in-flight budget bounds them).
const FORWARDS_QUEUED_MAX: usize = 8192;
/// Forward calls sent and not yet answered; writes queued meanwhile share the next call. At 16,
/// a dispatch run at concurrency 64 still made one Forward call per write (the cap was never
/// reached); plain submits measured the same at 4 and 16 (`scripts/bench-submit.sh 10 16 64`).
const FORWARD_CALLS_IN_FLIGHT_MAX: usize = 4;

type Reply = Result<Response, Status>;

/// The writes of one caller, kept together in one call and answered in order.
struct Pending {
    addr: String,
    ops: Vec<Op>,
    reply: oneshot::Sender<Vec<Reply>>,
}

#[derive(Clone)]
pub(crate) struct Forwarder {
    tx: mpsc::Sender<Pending>,
}

impl Forwarder {
    /// Forwards go out in the `active` format.
    pub(crate) fn start(peers: Arc<Peers>, active: ActiveVersion) -> Forwarder {
        let len_max = limits::FORWARD_BATCH_LEN_MAX;
        let (tx, batcher) = raftsched_batch::channel(FORWARDS_QUEUED_MAX, len_max);
        let batcher = batcher.weighing(len_max, |p: &Pending| p.ops.len());
        tokio::spawn(run(peers, active, batcher));
        Forwarder { tx }
    }

    /// Has the replica at `addr` (the leader, as far as this replica knows) apply `ops`, in one
    /// call with whatever else is queued, answered in order.
    pub(crate) async fn forward(&self, addr: &str, ops: Vec<Op>) -> Vec<Reply> {
        let n = ops.len();
        let stopped = || vec![Err(Status::unavailable("the forwarder has stopped")); n];
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Pending { addr: addr.to_string(), ops, reply }).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

async fn run(peers: Arc<Peers>, active: ActiveVersion, mut batcher: Batcher<Pending>) {
    let in_flight = InFlight::new(FORWARD_CALLS_IN_FLIGHT_MAX);
    loop {
        // Wait for a free slot first, so everything queued meanwhile joins the next call.
        let permit = in_flight.slot().await;
        let Some(batch) = batcher.next_batch().await else { return };
        let mut by_leader: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        for pending in batch {
            by_leader.entry(pending.addr.clone()).or_default().push(pending);
        }
        // Almost always one leader; during a leader change the queue may name two. The slot is
        // held by one of the calls, which is enough to bound them.
        let mut permit = Some(permit);
        for (addr, batch) in by_leader {
            tokio::spawn(send(peers.clone(), active.clone(), addr, batch, permit.take()));
        }
    }
}

async fn send(
    peers: Arc<Peers>,
    active: ActiveVersion,
    addr: String,
    batch: Vec<Pending>,
    _permit: Option<OwnedSemaphorePermit>,
) {
    let mut ops = Vec::new();
    let mut groups = Vec::with_capacity(batch.len());
    for p in batch {
        groups.push((p.ops.len(), p.reply));
        ops.extend(p.ops);
    }
    debug_assert!(!ops.is_empty() && ops.len() <= limits::FORWARD_BATCH_LEN_MAX);
    let replies: Vec<Reply> = match call(&peers, &active, &addr, &ops).await {
        Ok(outcomes) if outcomes.len() == ops.len() => outcomes
            .into_iter()
            .map(|outcome| match outcome {
                ForwardOutcome::Applied(response) => Ok(response),
                ForwardOutcome::Refused { code, message } => Err(Status::new(Code::from(code), message)),
                ForwardOutcome::NotLeader => Err(Status::unavailable(format!("{addr} is not the leader"))),
            })
            .collect(),
        Ok(outcomes) => {
            let why = format!("leader at {addr} answered {} results for {} writes", outcomes.len(), ops.len());
            vec![Err(Status::internal(why)); ops.len()]
        }
        Err(status) => vec![Err(Status::new(status.code(), status.message().to_string())); ops.len()],
    };
    let mut replies = replies.into_iter();
    for (n, reply) in groups {
        let _ = reply.send(replies.by_ref().take(n).collect());
    }
}

async fn call(peers: &Peers, active: &ActiveVersion, addr: &str, ops: &[Op]) -> Result<Vec<ForwardOutcome>, Status> {
    let data = raftsched_format::encode_forward(ops, active.get())
        .map_err(|e| Status::invalid_argument(format!("encode ops: {e}")))?;
    let mut client = peers.client(addr)?;
    let mut request = tonic::Request::new(RaftBytes { data });
    request.set_timeout(limits::FORWARD_TIMEOUT);
    let reply = tokio::time::timeout(limits::FORWARD_TIMEOUT, client.forward(request))
        .await
        .map_err(|_| Status::unavailable("forward timed out"))??;
    raftsched_format::decode_forward_reply(&reply.into_inner().data)
        .map_err(|e| Status::internal(format!("bad reply from leader: {e}")))
}
