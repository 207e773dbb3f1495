//! Batching of client writes on the leader.
//!
//! openraft 0.9 appends and fsyncs each proposed entry on its own before the next, so one entry per
//! client write caps the leader at one write per fsync. The proposer takes every client op queued
//! while earlier batches are in flight and proposes them as one `Op::BatchDispatch` entry: one
//! append, one fsync, one replication round for all of them, and the assignments they make
//! possible. Nothing waits on a timer: a lone write goes out at
//! once, and batches grow only with load.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use raftsched_state::{Command, Op, Response};
use raftsched_store::{NodeId, Raft};
use std::time::Duration;

use raftsched_batch::{Batcher, InFlight};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;

use crate::clock::Clocks;
use crate::limits;

/// Client ops waiting for a batch; over it, callers wait (the in-flight budget bounds them).
const PROPOSALS_QUEUED_MAX: usize = 8192;
/// Batches proposed and not yet answered. More than one, so the next batch forms and is appended
/// while the previous one replicates.
const BATCHES_IN_FLIGHT_MAX: usize = 4;
/// Longest the proposer holds the next batch back waiting for the previous one's log flush (a
/// flush takes 0.3-3 ms here); a bound, so a stuck disk or a lost wake-up cannot stall writes.
const PACE_WAIT_MS_MAX: u64 = 10;

type Reply = Result<Response, Option<Status>>;

/// A group of ops from one caller (one client write, or the writes a follower forwarded in one
/// call): it stays whole, in one entry, answered in order.
struct Pending {
    ops: Vec<Op>,
    reply: oneshot::Sender<Vec<Reply>>,
}

#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// `log_flushes` counts this replica's completed log flushes (the store's flush thread).
    pub(crate) fn start(raft: Raft, id: NodeId, clocks: Arc<Clocks>, log_flushes: watch::Receiver<u64>) -> Proposer {
        let batch_len_max = raftsched_state::limits::BATCH_LEN_MAX.min(256);
        let (tx, batcher) = raftsched_batch::channel(PROPOSALS_QUEUED_MAX, batch_len_max);
        let batcher = batcher.weighing(batch_len_max, |p: &Pending| p.ops.len());
        tokio::spawn(run(raft, id, clocks, batcher, log_flushes));
        Proposer { tx }
    }

    /// Proposes `ops` in one entry (with whatever else is queued), answered in order. A group
    /// over the batch bound is the caller's to split (`limits::FORWARD_BATCH_LEN_MAX` is below it).
    pub(crate) async fn propose(&self, ops: Vec<Op>) -> Vec<Reply> {
        let n = ops.len();
        let stopped = || vec![Err(Some(Status::unavailable("the proposer has stopped"))); n];
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Pending { ops, reply }).await.is_err() {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }
}

async fn run(
    raft: Raft,
    id: NodeId,
    clocks: Arc<Clocks>,
    mut batcher: Batcher<Pending>,
    mut log_flushes: watch::Receiver<u64>,
) {
    let in_flight = InFlight::new(BATCHES_IN_FLIGHT_MAX);
    loop {
        // Wait for a free slot first, so everything queued meanwhile joins the next batch.
        let permit = in_flight.slot().await;
        let Some(batch) = batcher.next_batch().await else { return };
        let flushes_before = *log_flushes.borrow_and_update();
        let (raft, clocks) = (raft.clone(), clocks.clone());
        let mut proposed = tokio::spawn(async move {
            propose_batch(&raft, id, &clocks, batch).await;
            drop(permit);
        });
        // Pacing: openraft 0.9 appends one entry at a time and waits for its flush. A batch
        // proposed while the previous one is still being flushed becomes an entry of its own with
        // a flush of its own; waiting for that flush (or the batch's answer, or at most
        // PACE_WAIT_MS_MAX) lets everything arriving meanwhile share the next entry instead.
        tokio::select! {
            _ = log_flushes.wait_for(|n| *n > flushes_before) => {}
            _ = &mut proposed => {}
            _ = tokio::time::sleep(Duration::from_millis(PACE_WAIT_MS_MAX)) => {}
        }
    }
}

/// Proposes the batch as one `BatchDispatch` entry (even a lone op): apply runs the ops, then
/// assigns pending tasks to free slots in the same entry, so a submit or a report that frees a
/// slot needs no separate `Assign` round.
async fn propose_batch(raft: &Raft, id: NodeId, clocks: &Clocks, batch: Vec<Pending>) {
    let mut ops = Vec::new();
    let mut groups = Vec::with_capacity(batch.len());
    for p in batch {
        groups.push((p.ops.len(), p.reply));
        ops.extend(p.ops);
    }
    let n_ops = ops.len();
    let answer = match write(raft, id, clocks, Op::BatchDispatch { ops }).await {
        Ok(Response::Batch(responses)) if responses.len() == n_ops => Ok(responses),
        Ok(other) => Err(Some(Status::internal(format!("unexpected answer to a batch: {other:?}")))),
        Err(e) => Err(e),
    };
    match answer {
        Ok(responses) => {
            let mut responses = responses.into_iter();
            for (n, reply) in groups {
                let _ = reply.send(responses.by_ref().take(n).map(Ok).collect());
            }
        }
        Err(e) => {
            for (n, reply) in groups {
                let _ = reply.send(vec![Err(e.clone()); n]);
            }
        }
    }
}

/// Proposes `op` as one entry and waits for its answer, at most `REQUEST_TIMEOUT`: an isolated
/// leader (openraft 0.9 does not step down on its own) would keep the write pending forever. Every
/// op is safe to retry, so giving up is only ambiguous. The entry's time is the cluster's
/// (`Clocks::cluster_now_ms`), not this leader's own clock, which may be wrong.
pub(crate) async fn write(raft: &Raft, id: NodeId, clocks: &Clocks, op: Op) -> Reply {
    let cmd = Command { now_ms: clocks.cluster_now_ms(), op };
    let Ok(written) = tokio::time::timeout(limits::REQUEST_TIMEOUT, raft.client_write(cmd)).await else {
        return Err(Some(Status::unavailable(format!(
            "replica {id} could not commit within request_timeout_ms {}",
            limits::REQUEST_TIMEOUT.as_millis()
        ))));
    };
    match written {
        Ok(reply) => Ok(reply.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(None),
        Err(RaftError::APIError(e)) => Err(Some(Status::internal(format!("write failed: {e}")))),
        Err(RaftError::Fatal(e)) => Err(Some(Status::unavailable(format!("replica {id} is stopping: {e}")))),
    }
}
